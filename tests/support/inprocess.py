"""Serve a truss in this process, behind httpx's ``ASGITransport``: no socket, no subprocess.

For data-plane tests where a socket or a signal is not the point. The app is ``ModelServer``'s,
with its lifespan run as uvicorn would (startup loads the model in the background; shutdown
stops the worker pools), so the code under test is the code ``trestle serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from trestle.config import load_config
from trestle.contract import evict_model_modules
from trestle.runtime import ModelRuntime, ModelState
from trestle.server import ModelServer
from trestle.settings import ServerSettings


@dataclass
class InProcess:
    client: httpx.AsyncClient
    server: ModelServer

    @property
    def runtime(self) -> ModelRuntime:
        return self.server.runtime


class _Lifespan:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        await self.outbox.put(message)

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(self.app({"type": "lifespan"}, self._receive, self._send))
        await self.inbox.put({"type": "lifespan.startup"})
        assert (await asyncio.wait_for(self.outbox.get(), 10))["type"] == "lifespan.startup.complete"

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        assert (await asyncio.wait_for(self.outbox.get(), 10))["type"] == "lifespan.shutdown.complete"
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def serve_in_process(truss_dir: Path, *, ready: bool = True, **overrides: Any) -> AsyncIterator[InProcess]:
    """The truss's server in this process; ``overrides`` are ``ServerSettings`` fields.

    With ``ready`` (the default) it waits until the model is READY (failing fast if it FAILED),
    otherwise only until the load has ended either way.
    """
    overrides.setdefault("load_retry_delay", 0.1)
    overrides.setdefault("load_failure_linger", 0.0)
    settings = ServerSettings.from_env(truss_dir, load_config(truss_dir).config, **overrides)
    server = ModelServer(settings)
    lifespan = _Lifespan(server.app)
    await lifespan.startup()
    try:
        deadline = time.monotonic() + 30
        while server.runtime.health.state in (ModelState.NOT_READY, ModelState.LOADING):
            assert time.monotonic() < deadline, "the model did not load within 30 s"
            await asyncio.sleep(0.01)
        if ready:
            assert server.runtime.health.state is ModelState.READY, server.runtime.health.failure
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model", timeout=30) as client:
            yield InProcess(client, server)
    finally:
        await lifespan.shutdown()
        # The truss's `model` package stays importable otherwise, and later tests in this process
        # that import another truss's `model` (or check that none is loaded) would see it.
        evict_model_modules(truss_dir, settings.config.model_module_dir)
