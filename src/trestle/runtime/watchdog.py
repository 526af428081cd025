"""Noticing an event loop blocked by model code, and saying where.

An ``async def`` model method that calls something blocking (``time.sleep``, a synchronous HTTP client, a
long computation) stops the whole event loop: health checks, other requests and disconnect detection wait
with it, so a replica looks dead to its supervisor while the model is merely misbehaving. The loop cannot
answer while it is blocked, but a thread can see that it is: ``LoopWatchdog`` posts a heartbeat onto the
loop and, when one has not run for ``threshold`` seconds, logs a warning naming the model code the loop
is stuck in (the innermost frame under the truss directory, from ``sys._current_frames``), then how long
the block lasted once the loop is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path
from types import FrameType

logger = logging.getLogger("trestle.runtime")


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, user_dir: Path, threshold: float = 1.0) -> None:
        self.loop = loop
        self.user_dir = str(user_dir.resolve())
        self._user_prefix = self.user_dir.rstrip("/\\") + os.sep  # /truss/ (not /truss-other)
        self.threshold = threshold
        self.blocks = 0
        """How many times the loop was seen blocked (for tests and metrics)."""
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trestle-loop-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching; call from the loop's own thread."""
        self._loop_thread = threading.get_ident()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        self._beat = time.monotonic()

    def _run(self) -> None:
        interval = self.threshold / 4
        blocked_since: float | None = None
        while not self._stop.wait(interval):
            try:
                self.loop.call_soon_threadsafe(self._tick)
            except RuntimeError:  # the loop is closed
                return
            late = time.monotonic() - self._beat
            if late < self.threshold:
                if blocked_since is not None:
                    logger.warning("The event loop was blocked for %.1f s.", time.monotonic() - blocked_since)
                    blocked_since = None
                continue
            if blocked_since is None:
                blocked_since = self._beat
                self.blocks += 1
                logger.warning(
                    "The event loop has been blocked for %.1f s%s: an async def method is running blocking "
                    "code, so health checks and other requests wait. Make the method a plain def (it then runs "
                    "in a worker thread) or move the blocking call into `await asyncio.to_thread(...)`.",
                    late,
                    self._where(),
                )

    def _where(self) -> str:
        """`` in Model.predict (model/model.py:12)``: the innermost model frame on the loop's thread."""
        frame: FrameType | None = sys._current_frames().get(self._loop_thread or -1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(self._user_prefix):
                name = getattr(frame.f_code, "co_qualname", None)  # 3.11+
                if name is None:  # 3.10: the class from the frame's ``self``
                    owner = frame.f_locals.get("self")
                    name = (
                        f"{type(owner).__name__}.{frame.f_code.co_name}" if owner is not None else frame.f_code.co_name
                    )
                rel = Path(filename).relative_to(self.user_dir)
                return f" in {name} ({rel}:{frame.f_lineno})"
            frame = frame.f_back
        return ""
