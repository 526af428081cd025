"""The routes around inference: liveness, readiness, schema, model list, metrics, hot reload.

None of them takes a concurrency permit, so probes answer at once while predict is busy.
"""

from __future__ import annotations

import logging

from trestle._types import Receive, Scope, Send
from trestle.errors import ModelNotReady
from trestle.http import errors
from trestle.http.exchange import JSON, new_request_id
from trestle.http.responses import send_body
from trestle.http.serialization import dumps_json
from trestle.metrics import METRICS_CONTENT_TYPE, ServerMetrics, model_metrics, trestle_metrics
from trestle.runtime import ModelRuntime

logger = logging.getLogger("trestle.http")

TRESTLE_METRICS_PATH = "/metrics/trestle"


class HealthRoutes:
    """Handlers with the ASGI signature, for ``ModelApp``'s routing table."""

    def __init__(self, runtime: ModelRuntime, metrics: ServerMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        name = runtime.settings.config.model_name or "model"
        listing = {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "trestle"}]}
        self._model_list = dumps_json(listing)

    async def liveness(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, b"true", JSON, new_request_id())

    async def loaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        health = self.runtime.health
        if health.ready:
            await send_body(send, 200, b"{}", JSON, new_request_id())
        else:
            await errors.send_error(send, errors.not_ready(health), new_request_id())

    async def readiness(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        if await runtime.healthy():
            await send_body(send, 200, b"{}", JSON, new_request_id())
        elif runtime.health.ready:
            await errors.send_error(send, errors.UNHEALTHY, new_request_id())
        else:
            await errors.send_error(send, errors.not_ready(runtime.health), new_request_id())

    async def schema(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = new_request_id()
        if not self.runtime.health.ready:
            await errors.send_error(send, errors.SCHEMA_NOT_READY, rid)
            return
        schema = self.runtime.schema_json()
        if schema is None:
            await errors.send_error(send, errors.NO_SCHEMA, rid)
            return
        await send_body(send, 200, dumps_json(schema), JSON, rid)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._model_list, JSON, new_request_id())

    async def model_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/metrics``: the model's own Prometheus metrics only, as on Truss."""
        await send_body(send, 200, model_metrics(), METRICS_CONTENT_TYPE, new_request_id())

    async def trestle_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/metrics/trestle``: the server's metrics (requests, streams, cancellations, process)."""
        await send_body(send, 200, trestle_metrics(self.metrics), METRICS_CONTENT_TYPE, new_request_id())

    async def hot_reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = new_request_id()
        try:
            await self.runtime.hot_reload()
        except ModelNotReady as exc:
            await errors.send_error(send, errors.from_exception(exc), rid)
            return
        except Exception as exc:
            logger.exception("Hot reload failed")
            await errors.send_error(send, errors.hot_reload_failed(exc), rid)
            return
        logger.info("Hot reload complete")
        await send_body(send, 200, b'{"msg":"Hot reload complete"}', JSON, rid)
