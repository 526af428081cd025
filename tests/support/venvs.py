"""Throwaway virtual environments with Trestle installed, built with ``uv`` (its cache makes them fast).

Used to check what a user gets from a plain ``pip install`` (core dependencies only, no ``[dev]``),
or with a package pinned the way a truss pins it (``pydantic==1.10.*``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the interpreter
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def uv() -> str:
    candidate = Path(sys.executable).with_name("uv")
    found = str(candidate) if candidate.is_file() else shutil.which("uv")
    if found is None:
        raise RuntimeError("uv is a Trestle dependency but is not installed next to this interpreter")
    return found


def core_dependencies() -> list[str]:
    """``[project].dependencies`` of this checkout's pyproject.toml."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def build_venv(target: Path, *, replace: dict[str, str] | None = None, timeout: float = 600) -> str:
    """A venv on this interpreter with Trestle (editable) and its core dependencies; returns its python.

    ``replace`` maps a dependency's name to the requirement installed instead (``{"pydantic":
    "pydantic==1.10.*"}``); Trestle itself is then installed without dependency resolution.
    """
    python = target / "bin" / "python"
    run = [uv(), "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(target)], check=True, timeout=timeout)
    if not replace:
        subprocess.run([*run, "-e", str(REPO)], check=True, timeout=timeout, capture_output=True)
        return str(python)
    names = {name.lower() for name in replace}
    kept = [dep for dep in core_dependencies() if _name(dep) not in names]
    subprocess.run([*run, *kept, *replace.values()], check=True, timeout=timeout, capture_output=True)
    subprocess.run([*run, "--no-deps", "-e", str(REPO)], check=True, timeout=timeout, capture_output=True)
    return str(python)


def _name(requirement: str) -> str:
    for stop in "[<>=!~;( ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()


def index_reachable(host: str = "pypi.org", timeout: float = 3.0) -> bool:
    """Whether uv's default package index answers (builds on another Python fetch Trestle's dependencies)."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
