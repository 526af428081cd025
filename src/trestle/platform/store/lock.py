"""One platform per data directory: an exclusive ``fcntl`` lock on ``<data>/platform.lock``, held for
the platform's lifetime, with the holder's pid and URL written in the file so that a second
``trestle platform start`` on the same directory can say which platform is running there (instead of
recovering, and restarting, the first one's replicas). The kernel drops the lock when the process
dies, so a killed platform never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from trestle.errors import PlatformError

LOCK_NAME = "platform.lock"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, url: str) -> None:
        """Take the lock or raise ``PlatformError`` (409) naming the platform that holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise PlatformError(
                f"another platform ({holder}) is running on the data dir {self.data_dir}: "
                "stop it first, or start this one with another --data-dir",
                status=409,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "url": url}).encode())
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            info = {}
        pid = info.get("pid", "unknown") if isinstance(info, dict) else "unknown"
        url = info.get("url", "at an unknown URL") if isinstance(info, dict) else "at an unknown URL"
        return f"pid {pid}, {url}"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
