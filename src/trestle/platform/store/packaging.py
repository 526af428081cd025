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

from trestle.config import files as truss_files
from trestle.errors import ConfigError
from trestle.platform.errors import InvalidRequest, TooLarge

MAX_TRUSS_BYTES = 8 << 30
"""The most a truss archive may unpack to (a small archive of zeros unpacks to any size)."""
MAX_TRUSS_FILES = 50_000
MAX_PATH_DEPTH = 32


def iter_files(truss_dir: Path) -> Iterator[str]:
    """Relative POSIX paths of the files that belong to the truss, sorted, ignores applied."""
    yield from sorted(truss_files.walk(truss_dir, truss_files.ignore_spec(truss_dir)))


def source_files(truss_dir: Path) -> dict[str, Path]:
    """``{path in the truss: local file}`` (``config.truss_files.source_files``), its errors as 400s."""
    try:
        return truss_files.source_files(truss_dir)
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None


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


def unpack(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_TRUSS_BYTES,
    max_files: int = MAX_TRUSS_FILES,
    max_depth: int = MAX_PATH_DEPTH,
) -> None:
    """Extract a truss archive into ``dest``; only regular files with safe relative paths are accepted, and
    at most ``max_files`` files, ``max_depth`` path components and ``max_bytes`` in all (a 413 naming the
    limit, checked from each entry's header before its content is written)."""
    dest.mkdir(parents=True, exist_ok=True)
    total = files = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidRequest(f"unsupported entry in truss archive: {member.name!r}")
                rel = safe_relpath(member.name)
                files += 1
                total += member.size
                if files > max_files:
                    raise TooLarge(f"truss has more than {max_files} files (the limit)")
                if rel.count("/") >= max_depth:
                    raise TooLarge(f"path {rel[:200]!r} is deeper than {max_depth} directories (the limit)")
                if total > max_bytes:
                    raise TooLarge(f"truss unpacks to more than {max_bytes} bytes (the limit)")
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
