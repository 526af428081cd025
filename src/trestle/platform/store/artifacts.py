"""Content-addressed storage of uploaded truss archives (``<data>/artifacts/<sha256>.tar.gz``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from trestle.platform.errors import InvalidRequest, TooLarge
from trestle.platform.store.bulk import in_bulk

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_ARTIFACT_BYTES = 2 << 30
_WRITE_BLOCK = 1 << 20


def check_digest(value: str) -> str:
    if not _DIGEST.match(value):
        raise InvalidRequest(f"not a sha256 hex digest: {value!r}")
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
            raise InvalidRequest(f"no uploaded artifact {digest}; upload it first")
        return path

    async def put(self, digest: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store a stream under ``digest`` after checking that it hashes to it; False if already there.

        Hashing and writing run in a low-priority worker thread (``bulk.py``), a megabyte at a time, off
        the event loop; the loop only collects the chunks."""
        target = self.path(digest)
        if await asyncio.to_thread(target.is_file):
            async for _ in chunks:
                pass
            return False
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = await asyncio.to_thread(tempfile.mkstemp, dir=self.root, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:

                def write(blocks: list[bytes]) -> None:
                    for block in blocks:
                        hasher.update(block)
                        out.write(block)

                # The chunks as they arrived, handed to the thread about a megabyte at a time: joining
                # them into one buffer on the loop (realloc, copy, free, per megabyte) took a third of
                # the loop's time during a 1 GiB upload and showed as ms-long gaps in other requests.
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in chunks:
                    size += len(chunk)
                    if size > MAX_ARTIFACT_BYTES:
                        raise TooLarge("artifact too large")
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= _WRITE_BLOCK:
                        await in_bulk(write, pending)
                        pending, pending_size = [], 0
                await in_bulk(write, pending)
            if hasher.hexdigest() != digest:
                raise InvalidRequest(
                    f"upload does not match its address: got sha256 {hasher.hexdigest()}, expected {digest}"
                )
            await asyncio.to_thread(os.replace, tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return True


def signed_path(key: str, digest: str) -> str:
    """The control plane's URL path for an artifact that a cluster fetches without an API key:
    the path carries an HMAC of the digest under the platform's key, so only the platform's
    engines can name it (``.tar.gz``, the suffix Ray unpacks)."""
    check_digest(digest)
    return f"/v1/engine-artifacts/{digest}/{_signature(key, digest)}.tar.gz"


def check_signature(key: str, digest: str, signature: str) -> bool:
    return hmac.compare_digest(_signature(key, digest), signature)


SECRETS_PREFIX = "/v1/engine-artifacts/secrets/"


def signed_secrets_path(key: str, deployment_id: str) -> str:
    """The URL path a cluster replica fetches its deployment's declared secrets from at start (its host
    may not see the platform's secrets dir): signed like an artifact, over another message."""
    return f"{SECRETS_PREFIX}{deployment_id}/{_signature(key, 'secrets:' + deployment_id)}"


def check_secrets_signature(key: str, deployment_id: str, signature: str) -> bool:
    return hmac.compare_digest(_signature(key, "secrets:" + deployment_id), signature)


def _signature(key: str, digest: str) -> str:
    return hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()
