"""Deployment environments built with the real uv: what the platform already has is not installed
again, another version goes into the deployment's venv only, and python_version picks the interpreter."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.venvs import index_reachable
from trestle.platform.engines import pythons
from trestle.platform.engines.builder import Builder

PLATFORM_INICONFIG = importlib.metadata.version("iniconfig")  # installed with pytest


def fake_wheel(root: Path, name: str, version: str, requires: str = "") -> Path:
    """A pure-python wheel of ``name`` whose module says which it is (``WHO``)."""
    dist = f"{name}-{version}.dist-info"
    depends = f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{name}/__init__.py": f"WHO = 'deployment {version}'\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    root.mkdir(parents=True, exist_ok=True)
    wheel = root / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", "\n".join([*record, f"{dist}/RECORD,,"]) + "\n")
    return wheel


def build(
    builder: Builder, requirements: list[str], truss: Path, python_version: str | None = None
) -> tuple[Path, str]:
    lines: list[str] = []
    result = asyncio.run(builder.build(requirements, truss, lines.append, python_version=python_version))
    return result.python, "\n".join(lines)


def run(python: Path, code: str) -> str:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_a_requirement_the_platform_satisfies_is_not_installed_again(tmp_path: Path) -> None:
    builder = Builder(tmp_path / "envs", tmp_path / "cache")
    python, log = build(builder, [f"iniconfig=={PLATFORM_INICONFIG}"], tmp_path)
    assert f"provided by the platform's environment (not installed again): iniconfig=={PLATFORM_INICONFIG}" in log
    assert "installing requirements" not in log
    assert not list((python.parent.parent / "lib").glob("python*/site-packages/iniconfig*"))
    assert run(python, "import importlib.metadata as m; print(m.version('iniconfig'))") == PLATFORM_INICONFIG


def test_another_version_goes_into_the_deployment_env_only(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    fake_wheel(wheels, "iniconfig", "0.0.1")
    builder = Builder(tmp_path / "envs", tmp_path / "cache")
    python, log = build(builder, [f"--find-links {wheels}", "iniconfig==0.0.1"], tmp_path)
    assert "installing requirements" in log
    assert run(python, "import iniconfig; print(iniconfig.WHO)") == "deployment 0.0.1"
    assert importlib.metadata.version("iniconfig") == PLATFORM_INICONFIG  # the platform's own is untouched


def test_a_new_package_uses_the_platform_s_copy_of_its_dependencies(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    fake_wheel(wheels, "needsini", "0.1", requires="iniconfig")
    builder = Builder(tmp_path / "envs", tmp_path / "cache")
    python, log = build(builder, [f"--find-links {wheels}", "needsini==0.1"], tmp_path)
    assert "dependencies from the platform's environment (not downloaded again): iniconfig" in log
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    assert list(site.glob("needsini*")) and not list(site.glob("iniconfig*"))
    assert run(python, "import needsini, iniconfig; print(needsini.WHO)") == "deployment 0.1"


def test_python_version_builds_on_that_interpreter(tmp_path: Path) -> None:
    if pythons.find((3, 10)) is None:
        pytest.skip("no Python 3.10 on this machine")
    if not index_reachable():
        pytest.skip("the package index is unreachable (a 3.10 environment installs Trestle's dependencies)")
    builder = Builder(tmp_path / "envs", tmp_path / "cache")
    python, log = build(builder, [], tmp_path, python_version="py310")
    assert "installing Trestle's dependencies" in log
    assert run(python, "import sys, trestle, uvicorn; print(*sys.version_info[:2])") == "3 10"
