"""The ASGI application that serves one model with Truss's routes.

Not a framework app: routing is a dict lookup plus a parse of ``/v1/models/...``; the handlers
live in ``inference.py`` (predict and the ``/v1`` methods), ``health.py`` (probes, schema,
metrics, hot reload) and ``websocket.py``. Responses are written by ``responses.py`` and every
error response is built by ``errors.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from trestle._types import Receive, Scope, Send
from trestle.contract import ROUTE_METHODS
from trestle.http import errors
from trestle.http.exchange import STARLETTE, new_request_id
from trestle.http.health import TRESTLE_METRICS_PATH, HealthRoutes
from trestle.http.inference import Inference
from trestle.http.websocket import serve_websocket
from trestle.metrics import ServerMetrics
from trestle.runtime import ModelRuntime
from trestle.settings import ServerSettings

Handler = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]
Hook = Callable[[], Coroutine[Any, Any, None]]

# The /v1 routes and the model method each one calls.
ROUTES = {f"/v1/{name.replace('_', '/')}": name for name in ROUTE_METHODS}
PREDICT_PATHS = ("/predict", "/invocations")


class ModelApp:
    """ASGI app for one :class:`ModelRuntime`."""

    def __init__(self, runtime: ModelRuntime, metrics: ServerMetrics | None = None) -> None:
        self.runtime = runtime
        self.metrics = metrics or ServerMetrics()
        self.metrics.queued = lambda: runtime.queued
        self.metrics.in_flight = lambda: runtime.in_flight.count
        self.metrics.batches = lambda: runtime.batch_stats
        self.on_startup: list[Hook] = []
        self.on_shutdown: list[Hook] = []
        self._inference = inference = Inference(runtime, self.metrics)
        health = self._health = HealthRoutes(runtime, self.metrics)
        self._get: dict[str, Handler] = {
            "/": health.liveness,
            "/ping": health.loaded,
            "/metrics": health.model_metrics,
            "/metrics/": health.model_metrics,
            TRESTLE_METRICS_PATH: health.trestle_metrics,
            "/v1/models": health.list_models,
        }
        self._post: dict[str, Handler] = {"/hot-reload": health.hot_reload}
        for path in PREDICT_PATHS:
            self._post[path] = self._predict
        for path, name in ROUTES.items():
            self._post[path] = _route_handler(inference, name)

    @classmethod
    def build(cls, settings: ServerSettings, metrics: ServerMetrics | None = None) -> ModelApp:
        """The app and its runtime, with starlette's responses and ``HTTPException`` passed through."""
        return cls(ModelRuntime(settings, STARLETTE), metrics)

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inference(scope, receive, send, "predict")

    # --- dispatch ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            handler: Handler | None
            if method == "POST":
                handler = self._post.get(path)
                if (
                    handler is None
                    and path.startswith("/v1/models/")
                    and path.endswith((":predict", ":predict_binary"))
                ):
                    handler = self._predict
            elif method in ("GET", "HEAD"):
                handler = self._get.get(path)
                if handler is None and path.startswith("/v1/models/"):
                    rest = path[11:]
                    if rest.endswith("/loaded"):
                        handler = self._health.loaded
                    elif rest.endswith("/schema"):
                        handler = self._health.schema
                    elif "/" not in rest:
                        handler = self._health.readiness
            else:
                handler = None
            if handler is None:
                await self._no_route(send, path)
                return
            await handler(scope, receive, send)
        elif kind == "websocket":
            await serve_websocket(self.runtime, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _no_route(self, send: Send, path: str) -> None:
        known = path in self._get or path in self._post or path.startswith("/v1/models/")
        await errors.send_error(send, errors.METHOD_NOT_ALLOWED if known else errors.NOT_FOUND, new_request_id())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self.on_startup:
                    await hook()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    await hook()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _route_handler(inference: Inference, name: str) -> Handler:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        await inference(scope, receive, send, name)

    return handler


__all__ = ["ROUTES", "ModelApp"]
