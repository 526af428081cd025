"""``python_version`` on the local engine: the deployment's environment is built on that interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, last_json
from tests.support.trusses import make_truss
from tests.support.venvs import index_reachable
from trestle.platform.engines import pythons

VERSION_MODEL = """
import sys


class Model:
    def predict(self, model_input):
        return {"python": list(sys.version_info[:2]), "executable": sys.executable}
"""


def test_a_py310_deployment_runs_on_python_3_10(platform: Platform, tmp_path: Path) -> None:
    if pythons.find((3, 10)) is None:
        pytest.skip("no Python 3.10 on this machine")
    if not index_reachable():
        pytest.skip("the package index is unreachable (a 3.10 environment installs Trestle's dependencies)")
    truss = make_truss(tmp_path / "py310", "on-py310", VERSION_MODEL, "python_version: py310\n")
    dep = last_json(platform.cli("push", "--output", "json", cwd=truss, timeout=600))
    assert dep["warnings"] == []
    assert platform.http.post(dep["predict_url"], json={}).json()["python"] == [3, 10]


def test_a_python_older_than_trestle_supports_is_refused_at_push(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "py39", "on-py39", VERSION_MODEL, "python_version: py39\n")
    result = platform.run_cli("push", cwd=truss)
    assert result.returncode == 1
    assert "python_version py39: Trestle's model server runs on Python 3.10 or newer" in result.stderr
