"""The files of a local truss, as Truss gathers them before a push or a build.

``.truss_ignore`` (gitignore syntax, on top of a few defaults) filters what belongs to the truss; the
*contents* of each ``external_package_dirs`` entry (relative to the truss, or absolute) are merged
into the bundled packages directory (``packages/`` by default), and a file that two sources provide
is an error. The platform's packer, the live-patch watcher and the image build context all read a
truss through this one module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

from trestle.config.document import load_yaml
from trestle.errors import ConfigError

IGNORE_FILE = ".truss_ignore"
DEFAULT_IGNORES = (
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".git/",
    ".DS_Store",
    ".mypy_cache/",
    ".pytest_cache/",
    ".venv/",
)


def ignore_spec(truss_dir: Path) -> pathspec.GitIgnoreSpec:
    lines = list(DEFAULT_IGNORES)
    ignore_file = truss_dir / IGNORE_FILE
    if ignore_file.is_file():
        lines.extend(ignore_file.read_text().splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines)


def is_ignored(spec: pathspec.GitIgnoreSpec, relpath: str, *, is_dir: bool = False) -> bool:
    return spec.match_file(relpath + "/" if is_dir else relpath)


def walk(top: Path, spec: pathspec.GitIgnoreSpec, prefix: str = "") -> list[str]:
    """Files under ``top`` (POSIX paths relative to it) whose path, with ``prefix``, the ignore spec
    keeps; symlinked directories are not followed."""
    found: list[str] = []
    for root, dirs, files in os.walk(top):
        rel_root = Path(root).relative_to(top)
        kept = []
        for name in dirs:
            rel = (rel_root / name).as_posix()
            if not is_ignored(spec, prefix + rel, is_dir=True) and not (Path(root) / name).is_symlink():
                kept.append(name)
        dirs[:] = kept
        for name in files:
            rel = (rel_root / name).as_posix()
            if not is_ignored(spec, prefix + rel) and (Path(root) / name).is_file():
                found.append(rel)
    return found


def external_package_dirs(truss_dir: Path) -> list[tuple[Path, str]]:
    """``(directory, prefix in the truss)`` for each of the config's ``external_package_dirs``.

    Read leniently from the raw YAML: the watcher calls this on a truss that is being edited."""
    try:
        config = load_yaml((truss_dir / "config.yaml").read_text(), path="config.yaml")
    except (OSError, UnicodeDecodeError, ConfigError):
        return []
    if not isinstance(config, dict):
        return []
    dirs = config.get("external_package_dirs") or []
    bundled = str(config.get("bundled_packages_dir") or "packages").strip("/")
    if not isinstance(dirs, list):
        return []
    return [((truss_dir / str(entry)).resolve(), bundled + "/") for entry in dirs]


def source_files(truss_dir: Path) -> dict[str, Path]:
    """``{path in the truss: local file}``, sorted: the truss's own files and its external package
    dirs' contents. A ConfigError names a missing external dir or a file two sources provide."""
    spec = ignore_spec(truss_dir)
    files = {rel: truss_dir / rel for rel in walk(truss_dir, spec)}
    for directory, prefix in external_package_dirs(truss_dir):
        if not directory.is_dir():
            raise ConfigError(f"external package dir {directory} is not a directory", key="external_package_dirs")
        for rel in walk(directory, spec, prefix):
            mapped = prefix + rel
            source = directory / rel
            other = files.get(mapped)
            if other is not None and other.resolve() != source.resolve():
                raise ConfigError(
                    f"{mapped} comes from both {other} and {source}: "
                    "external package dirs are merged into the packages dir, so their files must not overlap",
                    key="external_package_dirs",
                )
            files[mapped] = source
    return dict(sorted(files.items()))
