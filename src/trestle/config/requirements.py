"""Reading Python requirements from ``requirements`` or ``requirements_file``."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trestle.errors import ConfigError

_INLINE_COMMENT = re.compile(r"(^|\s+)#.*$")


def requirement_lines(requirements: Sequence[str], requirements_file: str | None, truss_dir: Path) -> list[str]:
    """The requirement strings the model needs, in order.

    ``requirements_file`` is resolved against ``truss_dir``:
    - ``pyproject.toml``: its ``[project].dependencies``;
    - ``uv.lock``: the ``[project].dependencies`` of the ``pyproject.toml`` next to it (the
      lock's pins are not applied);
    - anything else: a pip requirements file, without comments and blank lines.
    """
    if not requirements_file:
        return [line.strip() for line in requirements if line.strip()]
    path = truss_dir / requirements_file
    name = Path(requirements_file).name
    if name == "uv.lock":
        pyproject = path.parent / "pyproject.toml"
        if not pyproject.is_file():
            raise ConfigError("a uv.lock requirements file needs a pyproject.toml next to it", path=str(pyproject))
        return _pyproject_dependencies(pyproject)
    if name == "pyproject.toml":
        return _pyproject_dependencies(path)
    return _pip_lines(path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("file not found (named by requirements_file in the config)", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read requirements file: {exc}", path=str(path)) from None


def _pip_lines(path: Path) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in _read(path).splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        line = _INLINE_COMMENT.sub("", line).strip()
        if line:
            lines.append(line)
    tail = _INLINE_COMMENT.sub("", pending).strip()
    if tail:
        lines.append(tail)
    return lines


def _pyproject_dependencies(path: Path) -> list[str]:
    data = _parse_toml(_read(path), path)
    project = data.get("project", {})
    dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(dependencies, list) or not all(isinstance(dep, str) for dep in dependencies):
        raise ConfigError("expected a list of strings", path=str(path), key="project.dependencies")
    return [dep.strip() for dep in dependencies if dep.strip()]


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the interpreter
    import tomli as tomllib  # the same parser, a dependency on Python 3.10 only


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from None
