"""The inference routes: predict (and its aliases) and the five ``/v1`` methods.

Per request: read the body (size limit), look up the endpoint, parse the inputs, open a
:class:`Cancellation` and, if the request is still running 1 ms later, a disconnect watch; ask
the runtime for a result and write it. Every failure becomes a response in ``http/errors.py``;
after a stream has started, only the connection can be cut.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from trestle._types import Receive, Scope, Send
from trestle.asgi import DisconnectWatch, WatchStarter, read_body
from trestle.contract import parse_json_input, validate_python_input
from trestle.errors import ClientDisconnected, ModelNotReady, RequestTimeout, StreamAborted
from trestle.http import errors
from trestle.http.exchange import Exchange
from trestle.http.responses import send_passthrough, send_stream, send_value
from trestle.http.serialization import loads_json, loads_msgpack
from trestle.logs import request_id
from trestle.metrics import ServerMetrics
from trestle.runtime import (
    FATAL,
    Cancellation,
    CancelReason,
    Endpoint,
    ModelRuntime,
    Stream,
    Value,
    bind_task,
    log_user_error,
)

logger = logging.getLogger("trestle.http")

_BODY_SETTING = "runtime.max_request_body_bytes"


def parse_inputs(endpoint: Endpoint, body: bytes, binary: bool) -> Any:
    """The body as the endpoint's method takes it (predict's pydantic type applies to predict only)."""
    if endpoint.skip_parsing:
        return None
    input_type = endpoint.input_type
    if input_type is not None:
        if binary:
            return validate_python_input(input_type, loads_msgpack(body))
        return parse_json_input(input_type, body)
    return loads_msgpack(body) if binary else loads_json(body)


class Inference:
    """Serves inference requests for one runtime."""

    def __init__(self, runtime: ModelRuntime, metrics: ServerMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        settings = runtime.settings
        self.max_body = settings.max_body_bytes
        self.request_timeout = settings.request_timeout
        self.read_timeout = settings.streaming_read_timeout
        self.dev = settings.dev
        self.watches = WatchStarter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        ex = Exchange(scope, receive, send, time.perf_counter())
        request_id.set(ex.request_id)
        if ex.trace:  # a chain's hop: tie this request id to the chain's trace in the log
            logger.info("Chain request: %s", ex.trace)
        metrics = self.metrics
        in_flight = self.runtime.in_flight
        in_flight.count += 1
        try:
            await self._serve(ex, name)
        except ClientDisconnected:
            ex.status = 499
            logger.info("Client disconnected while reading request.")
        except StreamAborted:
            metrics.count_error(name, "stream_aborted")
            raise
        except FATAL:
            raise
        except BaseException as exc:
            if ex.started:
                log_user_error(exc, "Exception while generating streamed response")
                metrics.count_error(name, "stream_aborted")
                raise StreamAborted(str(exc)) from exc
            err = errors.from_exception(exc, dev=self.dev)
            ex.status = err.status
            metrics.count_error(name, type(exc).__name__)
            cancellation = ex.cancellation
            if cancellation is None or cancellation.reason is not CancelReason.DISCONNECT:
                await errors.send_error(send, err, ex.rid)
        finally:
            in_flight.leave()
            metrics.observe_request(name, ex.status, time.perf_counter() - ex.t0)

    async def _serve(self, ex: Exchange, name: str) -> None:
        runtime = self.runtime
        body = ex.body = await read_body(ex.receive, self.max_body, ex.content_length, _BODY_SETTING)
        endpoint = runtime.endpoint(name)
        inputs = parse_inputs(endpoint, body, ex.binary)
        task = asyncio.current_task()
        cancellation = ex.cancellation = Cancellation(task)
        bind_task(cancellation)
        active = runtime.in_flight.active
        active.add(cancellation)
        watch = DisconnectWatch(ex.receive, ex.disconnected)
        self.watches.add(watch)
        deadline = None
        if self.request_timeout is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.call_later(self.request_timeout, cancellation.cancel, CancelReason.DEADLINE)
        try:
            result = await runtime.invoke(endpoint, inputs, ex)
            if isinstance(result, Value):
                await send_value(ex, result.value)
            elif isinstance(result, Stream):
                gather = endpoint.is_predict and ex.wants_gathered
                await send_stream(ex, result, gather, self.read_timeout, self.metrics)
            else:
                await send_passthrough(ex, result)
        except asyncio.CancelledError:
            if cancellation.reason is None:
                raise
            self._cancelled(ex, task, cancellation.reason)
        finally:
            watch.stop()
            cancellation.finished = True
            cancellation.task = None  # no task <-> context-variable cycle left for the GC
            active.discard(cancellation)
            if deadline is not None:
                deadline.cancel()

    def _cancelled(self, ex: Exchange, task: asyncio.Task[Any] | None, reason: CancelReason) -> None:
        """Our cancellation fired: end quietly (client gone) or raise what the client should see."""
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()
        self.metrics.count_cancellation(reason.name.lower())
        if reason is CancelReason.DISCONNECT:
            logger.info("Client disconnected; the request was cancelled.")
            ex.status = 499
            return
        if reason is CancelReason.DEADLINE:
            raise RequestTimeout(
                f"Request timed out after {self.request_timeout} s (runtime.request_timeout_seconds)."
            ) from None
        if reason is CancelReason.READ_TIMEOUT:
            message = f"No chunk in {self.read_timeout} s (runtime.streaming_read_timeout); the stream was aborted."
            logger.error(message)
            if ex.started:
                raise StreamAborted("streaming read time-out") from None
            raise RequestTimeout(message) from None
        raise ModelNotReady("Model server is shutting down.") from None
