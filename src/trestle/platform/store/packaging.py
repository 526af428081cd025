"""A truss directory as a deterministic, content-addressed tar.gz.

The same files give the same bytes (sorted names, zeroed times and owners), so the archive's sha256 is
its address: pushing an unchanged truss uploads nothing. ``.truss_ignore`` (gitignore syntax) filters
what is packed, hashed and watched, on top of a few defaults.

A truss's ``external_package_dirs`` (relative to the truss, or absolute) are gathered as Truss does: the
*contents* of each one are packed into the bundled packages directory (``packages/`` by default), so the
platform's copy of the truss is self-contained. ``source_files`` is that gathered view of a local truss;
``iter_files``/``manifest`` read a directory as it is (the platform's copy).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pathspec
import yaml

from trestle.platform.errors import InvalidRequest

IGNORE_FILE = ".truss_ignore"
DEFAULT_IGNORES = ("__pycache__/", "*.pyc", "*.pyo", ".git/", ".DS_Store", ".mypy_cache/", ".pytest_cache/")


def ignore_spec(truss_dir: Path) -> pathspec.GitIgnoreSpec:
    lines = list(DEFAULT_IGNORES)
    ignore_file = truss_dir / IGNORE_FILE
    if ignore_file.is_file():
        lines.extend(ignore_file.read_text().splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines)


def is_ignored(spec: pathspec.GitIgnoreSpec, relpath: str, *, is_dir: bool = False) -> bool:
    return spec.match_file(relpath + "/" if is_dir else relpath)


def iter_files(truss_dir: Path) -> Iterator[str]:
    """Relative POSIX paths of the files that belong to the truss, sorted, ignores applied."""
    yield from sorted(_walk(truss_dir, ignore_spec(truss_dir)))


def _walk(top: Path, spec: pathspec.GitIgnoreSpec, prefix: str = "") -> list[str]:
    """Files under ``top`` (relative to it) whose path, with ``prefix``, the ignore spec keeps."""
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
    """``(directory, prefix in the truss)`` for each of the config's ``external_package_dirs``."""
    try:
        config = yaml.safe_load((truss_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(config, dict):
        return []
    dirs = config.get("external_package_dirs") or []
    bundled = str(config.get("bundled_packages_dir") or "packages").strip("/")
    if not isinstance(dirs, list):
        return []
    return [((truss_dir / str(entry)).resolve(), bundled + "/") for entry in dirs]


def source_files(truss_dir: Path) -> dict[str, Path]:
    """``{path in the truss: local file}``: the truss's own files and its external package dirs' contents."""
    spec = ignore_spec(truss_dir)
    files = {rel: truss_dir / rel for rel in _walk(truss_dir, spec)}
    for directory, prefix in external_package_dirs(truss_dir):
        if not directory.is_dir():
            raise InvalidRequest(f"external package dir {directory} is not a directory")
        for rel in _walk(directory, spec, prefix):
            mapped = prefix + rel
            source = directory / rel
            other = files.get(mapped)
            if other is not None and other.resolve() != source.resolve():
                raise InvalidRequest(
                    f"{mapped} comes from both {other} and {source}: "
                    "external package dirs are merged into the packages dir, so their files must not overlap"
                )
            files[mapped] = source
    return dict(sorted(files.items()))


def manifest(truss_dir: Path) -> dict[str, str]:
    """``{relative path: sha256 of its content}`` for every file of the truss."""
    return {rel: hashlib.sha256((truss_dir / rel).read_bytes()).hexdigest() for rel in iter_files(truss_dir)}


def manifest_hash(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return digest.hexdigest()


def pack(truss_dir: Path) -> bytes:
    """The (gathered) truss as deterministic tar.gz bytes."""
    if not (truss_dir / "config.yaml").is_file():
        raise InvalidRequest(f"{truss_dir} is not a truss: it has no config.yaml")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in source_files(truss_dir).items():
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_relpath(name: str) -> str:
    """``name`` as a normalised relative path; a 400 for absolute paths or ``..`` escapes."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise InvalidRequest(f"unsafe path in truss: {name!r}")
    return path.as_posix()


def unpack(archive: Path, dest: Path) -> None:
    """Extract a truss archive into ``dest``; only regular files with safe relative paths are accepted."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidRequest(f"unsupported entry in truss archive: {member.name!r}")
                rel = safe_relpath(member.name)
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                target.chmod(0o755 if member.mode & 0o100 else 0o644)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise InvalidRequest(f"malformed truss archive: {exc}") from exc
    if not (dest / "config.yaml").is_file():
        raise InvalidRequest("malformed truss archive: it has no config.yaml")
