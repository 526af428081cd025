"""The Python interpreters installed on this host, for ``python_version`` (``py39`` ... ``py313``).

uv's own discovery does not see pyenv's versions unless pyenv activates them (its shims answer
"command not found" otherwise), and it would download a Python when none is found; the platform
looks itself, without downloading anything: the platform's own interpreter, then
``$PYENV_ROOT/versions/*/bin/python3.X`` (``~/.pyenv`` by default), then ``python3.X`` on ``PATH``;
each candidate is run once to check the version it really is. Blocking: call it in a thread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from trestle.platform.errors import InvalidRequest

_VERSION = re.compile(r"^(?:py)?3\.?(\d{1,2})$")
_MINORS = range(8, 16)
MINIMUM = (3, 10)
"""Trestle's own ``requires-python``: the model server runs in the deployment's interpreter."""


def parse_version(python_version: str) -> tuple[int, int]:
    """``py310`` (Truss's form) or ``3.10`` -> ``(3, 10)``."""
    match = _VERSION.match(python_version.strip().lower())
    if match is None:
        raise InvalidRequest(f"python_version {python_version!r} is not a version such as py311")
    return 3, int(match.group(1))


def platform_version() -> tuple[int, int]:
    return sys.version_info.major, sys.version_info.minor


def _version_of(executable: Path) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [str(executable), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 2 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def _candidates(version: tuple[int, int], environ: Mapping[str, str]) -> list[Path]:
    name = f"python{version[0]}.{version[1]}"
    found: list[Path] = []
    if platform_version() == version:
        found.append(Path(sys.executable))
    pyenv = Path(environ.get("PYENV_ROOT") or Path(environ.get("HOME", "~")).expanduser() / ".pyenv")
    for folder in sorted((pyenv / "versions").glob(f"{version[0]}.{version[1]}*"), reverse=True):
        if re.fullmatch(rf"{version[0]}\.{version[1]}(\.\d+)?", folder.name):
            found.append(folder / "bin" / name)
    on_path = shutil.which(name, path=environ.get("PATH"))
    if on_path:
        found.append(Path(on_path))
    return [path for path in found if path.is_file() and os.access(path, os.X_OK)]


def find(version: tuple[int, int], environ: Mapping[str, str] = os.environ) -> Path | None:
    """An interpreter of ``version`` on this host, or None."""
    for candidate in _candidates(version, environ):
        if candidate == Path(sys.executable) or _version_of(candidate) == version:
            return candidate
    return None


def installed(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The versions found (``["3.10", "3.11"]``), for the message when one is missing."""
    return [f"3.{minor}" for minor in _MINORS if find((3, minor), environ) is not None]


def require(python_version: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The interpreter for a truss's ``python_version``; a clear ``InvalidRequest`` when missing."""
    version = parse_version(python_version)
    if version < MINIMUM:
        raise InvalidRequest(
            f"python_version {python_version}: Trestle's model server runs on Python "
            f"{MINIMUM[0]}.{MINIMUM[1]} or newer on the local engine"
        )
    found = find(version, environ)
    if found is None:
        have = ", ".join(installed(environ)) or "none"
        raise InvalidRequest(
            f"python_version {python_version} needs Python {version[0]}.{version[1]}, which is not installed on "
            f"the platform's host (installed: {have}); install it (e.g. `pyenv install {version[0]}.{version[1]}`) "
            "or change python_version"
        )
    return found
