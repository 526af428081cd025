"""Run one model server process under uvicorn (httptools + uvloop).

Start-up: the listener opens at once (liveness 200, readiness 503) and the model loads in the
background. A failed load is logged once with its traceback, ``~/inference_server_crashed.txt``
is written (Truss's marker, which tooling watches), readiness says why for
``load_failure_linger`` seconds, then the process exits with status 1.

Shutdown on SIGTERM/SIGINT:
1. the model goes to STOPPING: readiness and new inference requests answer 503;
2. in-flight requests (streams included) get up to ``runtime.drain_timeout_seconds`` to finish
   (``ModelRuntime.drain`` waits on an event set when the last one leaves);
3. whatever is still running is cancelled (generators are closed, their ``finally`` runs);
4. uvicorn closes the listener and the connections and the process exits 0.
A second signal skips the wait and exits at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from trestle._types import ASGIApp
from trestle.asgi.connections import guarded_protocol
from trestle.asgi.server import Server
from trestle.contract import read_environment
from trestle.http.access_log import AccessLog
from trestle.http.app import ModelApp
from trestle.metrics import ServerMetrics
from trestle.runtime import ModelState
from trestle.runtime.watchdog import LoopWatchdog
from trestle.settings import ServerSettings

logger = logging.getLogger("trestle.server")

CRASH_MARKER = "inference_server_crashed.txt"


def crash_marker_path() -> Path:
    """Truss's marker of a failed load: ``~/inference_server_crashed.txt``."""
    return Path.home() / CRASH_MARKER


def _write_crash_marker(reason: str) -> None:
    path = crash_marker_path()
    try:
        path.write_text(reason + "\n")
    except OSError as exc:
        logger.warning("Could not write %s: %s", path, exc)


class _Uvicorn(Server):
    """Signals start the drain (``ModelServer.request_shutdown``) instead of uvicorn's own shutdown."""

    def __init__(self, config: uvicorn.Config, owner: ModelServer) -> None:
        super().__init__(config)
        self.owner = owner

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.owner.request_shutdown()


class ModelServer:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.app = ModelApp.build(settings, self.metrics)
        self.runtime = self.app.runtime
        self.app.on_startup.append(self._startup)
        self.app.on_shutdown.append(self._shutdown)
        self.exit_code = 0
        self._uvicorn: _Uvicorn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: LoopWatchdog | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watchdog = LoopWatchdog(self._loop, self.settings.truss_dir)
        self._watchdog.start()
        self._spawn(self._load())

    async def _load(self) -> None:
        await self.runtime.load()
        state = self.runtime.health.state
        if state is ModelState.FAILED:
            failure = self.runtime.health.failure or "model failed to load"
            await asyncio.get_running_loop().run_in_executor(None, _write_crash_marker, failure)
            await asyncio.sleep(self.settings.load_failure_linger)
            logger.error("Model failed to load; exiting with status 1.")
            self.exit_code = 1
            self._exit()
        elif state is ModelState.READY and self.runtime.watches_environment:
            self._spawn(self._watch_environment())

    async def _watch_environment(self) -> None:
        """Event-driven (not polled): re-run ``setup_environment`` when the environment file changes."""
        from watchfiles import awatch

        path = self.settings.environment_file
        if not path.parent.is_dir():
            return
        async for changes in awatch(path.parent, recursive=False):
            if any(changed == str(path) for _, changed in changes):
                environment = read_environment(path)
                if environment is not None:
                    await self.runtime.setup_environment(environment)

    async def _shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        for task in list(self._tasks):
            task.cancel()
        self.runtime.shutdown()

    def _exit(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def request_shutdown(self) -> None:
        """Signal handler: the first call drains, the second forces exit."""
        if self._draining or self._loop is None:
            if self._uvicorn is not None:
                self._uvicorn.force_exit = True
                self._uvicorn.should_exit = True
            return
        self._draining = True
        self._loop.call_soon_threadsafe(self._spawn, self._drain())

    async def _drain(self) -> None:
        await self.runtime.drain(self.settings.drain_timeout)
        self._exit()

    # --- running -------------------------------------------------------------------------
    def uvicorn_config(self) -> uvicorn.Config:
        transport = self.settings.config.runtime.transport
        ping_interval = getattr(transport, "ping_interval_seconds", None)
        ping_timeout = getattr(transport, "ping_timeout_seconds", None)
        app: ASGIApp = AccessLog(self.app) if self.settings.access_log else self.app
        return uvicorn.Config(
            app,
            host=self.settings.host,
            port=self.settings.port,
            http=guarded_protocol(self.settings.connection_limits),
            loop="uvloop",
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=5,
            ws_max_size=self.settings.ws_max_bytes,
            ws_ping_interval=ping_interval if ping_interval is not None else 20.0,
            ws_ping_timeout=ping_timeout if ping_timeout is not None else 20.0,
            server_header=False,
            proxy_headers=False,
        )

    def run(self) -> int:
        self._uvicorn = _Uvicorn(self.uvicorn_config(), self)
        self._uvicorn.run()
        if not self._uvicorn.started:
            return 1
        if self.runtime.health.state is ModelState.FAILED:
            self.exit_code = 1
        return self.exit_code
