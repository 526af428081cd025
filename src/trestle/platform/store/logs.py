"""Deployment logs: one append-only file per deployment (build output, replica output, platform
events), plus in-memory fan-out to followers of ``trestle logs --tail``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

_FOLLOW_QUEUE = 1000


class LogHub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, IO[str]] = {}
        self._followers: dict[str, set[asyncio.Queue[str]]] = {}

    def path(self, deployment_id: str) -> Path:
        return self.root / deployment_id / "deployment.log"

    def write(self, deployment_id: str, source: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        out = self._file(deployment_id)
        for line in text.rstrip("\n").split("\n"):
            record = f"{stamp} [{source}] {line}\n"
            out.write(record)
            for queue in self._followers.get(deployment_id, ()):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(record)
        out.flush()

    def _file(self, deployment_id: str) -> IO[str]:
        handle = self._files.get(deployment_id)
        if handle is None:
            path = self.path(deployment_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._files[deployment_id] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        return handle

    def tail(self, deployment_id: str, lines: int | None = None) -> list[str]:
        path = self.path(deployment_id)
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", errors="replace") as handle:
            if lines is None:
                return handle.readlines()
            return list(deque(handle, maxlen=lines))

    async def follow(self, deployment_id: str, lines: int | None = 100) -> AsyncIterator[str]:
        """The last ``lines`` lines, then every new line until the caller stops iterating."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_FOLLOW_QUEUE)
        self._followers.setdefault(deployment_id, set()).add(queue)
        try:
            for record in self.tail(deployment_id, lines):
                yield record
            while True:
                yield await queue.get()
        finally:
            self._followers.get(deployment_id, set()).discard(queue)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
