"""What a user gets from a plain install, and from a truss that pins its own versions.

Each test builds a throwaway venv with ``uv`` (cached wheels: seconds) and serves a truss with
that venv's ``python -m trestle serve``.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from packaging.requirements import Requirement

from tests.support.server import run_server, write_truss
from tests.support.venvs import build_venv, core_dependencies
from trestle.http.serialization import loads_msgpack


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Trestle with its core dependencies only: what `pip install .` gives a new user."""
    return build_venv(tmp_path_factory.mktemp("venvs") / "plain")


NUMPY_MODEL = """
import numpy as np


class Model:
    def predict(self, model_input):
        n = int(model_input.get("n", 3))
        return {
            "array": np.arange(n, dtype=np.int32),
            "matrix": np.ones((2, 2), dtype=np.float32),
            "mean": np.float64(np.arange(n).mean()),
            "count": np.int64(n),
            "flag": np.bool_(True),
        }
"""


def test_numpy_is_a_core_dependency() -> None:
    """Truss's server image always has numpy; Trestle's install must too (not only an extra)."""
    core = [Requirement(dep) for dep in core_dependencies()]
    assert any(req.name == "numpy" and req.marker is None for req in core)
    installed = [Requirement(dep) for dep in metadata.requires("trestle") or []]
    assert any(req.name == "numpy" and req.marker is None for req in installed)


def test_numpy_model_works_after_a_plain_install(plain_python: str, tmp_path: Path) -> None:
    truss = write_truss(tmp_path, NUMPY_MODEL, "requirements: []\n")
    with run_server(truss, python=plain_python) as server:
        r = httpx.post(server.url + "/predict", json={"n": 4})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "array": [0, 1, 2, 3],
            "matrix": [[1.0, 1.0], [1.0, 1.0]],
            "mean": 1.5,
            "count": 4,
            "flag": True,
        }

        r = httpx.post(
            server.url + "/predict",
            content=msgpack.packb({"n": 3}),
            headers={"content-type": "application/octet-stream", "accept": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        out = loads_msgpack(r.content)
        np.testing.assert_array_equal(out["array"], np.arange(3, dtype=np.int32))
        assert out["array"].dtype == np.int32
        assert out["matrix"].shape == (2, 2)
        assert out["count"] == np.int64(3) and isinstance(out["count"], np.int64)
        raw = msgpack.unpackb(r.content, raw=False, strict_map_key=False)
        assert raw["array"][b"nd"] is True and raw["array"][b"type"] == "<i4"  # msgpack-numpy's layout
