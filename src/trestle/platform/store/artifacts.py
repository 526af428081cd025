"""Content-addressed storage of uploaded truss archives (``<data>/artifacts/<sha256>.tar.gz``)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from trestle.errors import PlatformError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_ARTIFACT_BYTES = 2 << 30


def check_digest(value: str) -> str:
    if not _DIGEST.match(value):
        raise PlatformError(f"not a sha256 hex digest: {value!r}", status=400)
    return value


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / f"{check_digest(digest)}.tar.gz"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def require(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            raise PlatformError(f"no uploaded artifact {digest}; upload it first", status=400)
        return path

    async def put(self, digest: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store a stream under ``digest`` after checking that it hashes to it; False if already there."""
        target = self.path(digest)
        if target.is_file():
            async for _ in chunks:
                pass
            return False
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > MAX_ARTIFACT_BYTES:
                        raise PlatformError("artifact too large", status=413)
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise PlatformError(
                    f"upload does not match its address: got sha256 {hasher.hexdigest()}, expected {digest}",
                    status=400,
                )
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return True
