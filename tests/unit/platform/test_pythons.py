"""Finding the interpreter for a truss's python_version on this host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trestle.platform.engines import pythons
from trestle.platform.errors import InvalidRequest


@pytest.mark.parametrize(("text", "version"), [("py39", (3, 9)), ("py313", (3, 13)), ("3.10", (3, 10))])
def test_python_version_names(text: str, version: tuple[int, int]) -> None:
    assert pythons.parse_version(text) == version


def test_the_platform_s_own_version_is_its_own_interpreter() -> None:
    here = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert pythons.require(here) == Path(sys.executable)


def test_a_missing_version_names_what_is_installed(tmp_path: Path) -> None:
    environ = {"PYENV_ROOT": str(tmp_path / "pyenv"), "PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    here = f"3.{sys.version_info.minor}"
    with pytest.raises(InvalidRequest) as caught:
        pythons.require("py312" if here != "3.12" else "py311", environ)
    assert "which is not installed on the platform's host" in caught.value.message
    assert f"(installed: {here})" in caught.value.message


def test_a_version_older_than_trestle_supports_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="runs on Python 3.10 or newer"):
        pythons.require("py39")


def test_pyenv_versions_are_found(tmp_path: Path) -> None:
    found = pythons.find((3, 10))
    if found is None:
        pytest.skip("no Python 3.10 on this machine")
    version = subprocess.run(
        [str(found), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "(3, 10)"  # the interpreter found is a 3.10, whatever its file name
