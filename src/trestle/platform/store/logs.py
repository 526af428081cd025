"""Deployment logs: one append-only file per deployment (build output, replica output, platform
events), plus in-memory fan-out to followers of ``trestle logs --tail``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

_FOLLOW_QUEUE = 1000


class LogHub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, IO[str]] = {}
        self._followers: dict[str, set[asyncio.Queue[str | None]]] = {}
        self._closing = False

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

    def tail(self, deployment_id: str, lines: int | None = None, *, end: int | None = None) -> list[str]:
        """The last ``lines`` lines (every line with None) of the log's first ``end`` bytes (all of it
        with None). File work: callers on the loop run it in a thread."""
        if lines == 0:
            return []
        try:
            handle = open(self.path(deployment_id), "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            return []
        with handle:
            kept = deque(_upto(handle, end), maxlen=lines)
        return [raw.decode("utf-8", "replace") for raw in kept]

    async def follow(self, deployment_id: str, lines: int | None = 100) -> AsyncIterator[str]:
        """The last ``lines`` lines, then every new line until the caller stops iterating or the
        platform stops (``end_follows``). The history is the file as it was when the follower joined (read
        in a thread), the rest comes from the queue: no line twice, none lost."""
        if self._closing:
            return
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=_FOLLOW_QUEUE)
        self._followers.setdefault(deployment_id, set()).add(queue)
        try:
            joined_at = _size(self.path(deployment_id))  # writes are whole, flushed lines
            for line in await asyncio.to_thread(self.tail, deployment_id, lines, end=joined_at):
                yield line
            while (record := await queue.get()) is not None:
                yield record
        finally:
            self._followers.get(deployment_id, set()).discard(queue)

    def end_follows(self) -> None:
        """End every follower's stream (the platform is stopping: uvicorn's drain would wait for them)."""
        self._closing = True
        for queues in self._followers.values():
            for queue in queues:
                if queue.full():
                    queue.get_nowait()  # room for the end mark; a line that was already late is dropped
                queue.put_nowait(None)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _upto(handle: IO[bytes], end: int | None) -> Iterator[bytes]:
    """The handle's lines within its first ``end`` bytes (every line with None)."""
    left = end
    for raw in handle:
        if left is not None:
            if left <= 0:
                return
            left -= len(raw)
        yield raw
