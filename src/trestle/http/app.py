"""The ASGI application that serves one model with Truss's routes.

Not a framework app: routing is a dict lookup plus a parse of ``/v1/models/...``, bodies are
read once, JSON goes through orjson and each unary response is one ``http.response.start``
plus one body message. Model code that asks for a ``fastapi.Request`` gets a real starlette
Request, built only then.

Every inference request owns a :class:`Cancellation`. Once its body is read, one small task
waits on ASGI ``receive()``; the ``http.disconnect`` message fires the cancellation, which
cancels this request's task (async model code gets ``CancelledError``), sets the thread-safe
event (sync code, ``request.state.watch_disconnect()``), and stops sync-generator pumps. The
same path serves the streaming read time-out, the per-request time-out and shutdown.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from trestle._types import Message, Receive, Scope, Send
from trestle.contract import parse_json_input, validate_python_input
from trestle.errors import (
    MethodNotImplemented,
    ModelNotReady,
    PayloadTooLarge,
    RequestTimeout,
    StreamAborted,
    UserCodeError,
)
from trestle.http import errors
from trestle.http.serialization import dumps_json, dumps_msgpack, loads_json, loads_msgpack
from trestle.http.websocket import serve_websocket
from trestle.logs import request_id
from trestle.metrics import ServerMetrics
from trestle.runtime.cancel import Cancellation, CancelReason, bind_task
from trestle.runtime.model import CallContext, ModelRuntime, Passthrough, Stream, log_user_error
from trestle.runtime.state import ModelState

logger = logging.getLogger("trestle.http")

ROUTE_METHODS = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
}
_JSON = b"application/json"
_OCTET = b"application/octet-stream"
_STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class _Headers:
    """The request headers the server looks at, found in one pass."""

    __slots__ = ("binary", "content_length", "accept", "user_agent", "request_id")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.binary = False
        self.content_length = -1
        self.accept = b""
        self.user_agent = b""
        self.request_id = b""
        for name, value in raw:
            if name == b"content-type":
                self.binary = value.split(b";", 1)[0].strip().lower() == _OCTET
            elif name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    pass
            elif name == b"accept":
                self.accept = value
            elif name == b"user-agent":
                self.user_agent = value
            elif name == b"x-baseten-request-id":
                self.request_id = value


class _Sent:
    """Whether the response has started (after that, errors can only cut the connection)."""

    __slots__ = ("started", "status", "t0")

    def __init__(self, t0: float) -> None:
        self.started = False
        self.status = 500
        self.t0 = t0


async def _send_body(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    rid: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-baseten-request-id", rid),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, err: errors.ErrorResponse, rid: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [*err.headers, (b"content-length", str(len(err.body)).encode()), (b"x-baseten-request-id", rid)],
        }
    )
    await send({"type": "http.response.body", "body": err.body})


_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _new_request_id() -> bytes:
    """Unique per request: a random per-process prefix and a counter (cheaper than 16 random bytes)."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}".encode()


class _Disconnected(Exception):
    """The client left while its body was being read."""


class ModelApp:
    """ASGI app for one :class:`ModelRuntime`."""

    def __init__(self, runtime: ModelRuntime, metrics: ServerMetrics | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.metrics = metrics or ServerMetrics()
        self.metrics.queued = lambda: runtime.limiter.waiting
        self.active: set[Cancellation] = set()
        self._watchers = _Watchers()
        self._max_body = self.settings.max_body_bytes
        self.on_startup: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.on_shutdown: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._get: dict[str, Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]] = {
            "/": self._liveness,
            "/ping": self._loaded,
            "/metrics": self._metrics,
            "/metrics/": self._metrics,
            "/v1/models": self._list_models,
        }
        self._post: dict[str, Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]] = {
            "/predict": self._predict,
            "/invocations": self._predict,
            "/hot-reload": self._hot_reload,
        }
        for path, name in ROUTE_METHODS.items():
            self._post[path] = self._route_handler(name)

    # --- dispatch ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            if method == "POST":
                handler = self._post.get(path)
                if (
                    handler is None
                    and path.startswith("/v1/models/")
                    and (path.endswith((":predict", ":predict_binary")))
                ):
                    handler = self._predict
            elif method in ("GET", "HEAD"):
                handler = self._get.get(path)
                if handler is None and path.startswith("/v1/models/"):
                    rest = path[11:]
                    if rest.endswith("/loaded"):
                        handler = self._loaded
                    elif rest.endswith("/schema"):
                        handler = self._schema
                    elif "/" not in rest:
                        handler = self._readiness
            else:
                handler = None
            if handler is None:
                await self._no_route(scope, send, path)
                return
            await handler(scope, receive, send)
        elif kind == "websocket":
            await serve_websocket(self.runtime, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _no_route(self, scope: Scope, send: Send, path: str) -> None:
        known = path in self._get or path in self._post or path.startswith("/v1/models/")
        err = errors.METHOD_NOT_ALLOWED if known else errors.NOT_FOUND
        await _send_error(send, err, _new_request_id())

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

    # --- health --------------------------------------------------------------------------
    async def _liveness(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_body(send, 200, b"true", _JSON, _new_request_id())

    def _not_ready(self) -> errors.ErrorResponse:
        health = self.runtime.health
        if health.state is ModelState.FAILED:
            return errors.render(503, f"Model failed to load: {health.failure}", errors.CODE_SERVER)
        if health.state is ModelState.STOPPING:
            return errors.render(503, "Model server is shutting down.", errors.CODE_SERVER)
        return errors.render(503, ModelNotReady().message, errors.CODE_SERVER)

    async def _loaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.runtime.health.ready:
            await _send_body(send, 200, b"{}", _JSON, _new_request_id())
        else:
            await _send_error(send, self._not_ready(), _new_request_id())

    async def _readiness(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.runtime.healthy():
            await _send_body(send, 200, b"{}", _JSON, _new_request_id())
        elif self.runtime.health.ready:
            await _send_error(send, errors.render(503, "Model is not healthy.", errors.CODE_SERVER), _new_request_id())
        else:
            await _send_error(send, self._not_ready(), _new_request_id())

    async def _schema(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _new_request_id()
        if not self.runtime.health.ready:
            err = errors.render(503, "Schema not available, please try again later.", errors.CODE_SERVER)
        elif self.runtime.schema is None:
            err = errors.render(404, "No schema found", errors.CODE_SERVER)
        else:
            await _send_body(send, 200, dumps_json(self.runtime.schema.to_json()), _JSON, rid)
            return
        await _send_error(send, err, rid)

    async def _list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self.settings.config.model_name or "model"
        body = {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "trestle"}]}
        await _send_body(send, 200, dumps_json(body), _JSON, _new_request_id())

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        await _send_body(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode(), _new_request_id())

    async def _hot_reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _new_request_id()
        try:
            await self.runtime.aux_pool.run(self.runtime.hot_reload)
        except ModelNotReady as exc:
            await _send_error(send, errors.from_exception(exc), rid)
            return
        except Exception as exc:
            logger.exception("Hot reload failed")
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            body = dumps_json({"error": f"{type(exc).__name__}: {exc}", "traceback": trace})
            await _send_body(send, 422, body, _JSON, rid)
            return
        logger.info("Hot reload complete")
        await _send_body(send, 200, b'{"msg":"Hot reload complete"}', _JSON, rid)

    # --- inference -----------------------------------------------------------------------
    async def _read_body(self, receive: Receive, headers: _Headers) -> bytes:
        limit = self._max_body
        if headers.content_length > limit:
            raise PayloadTooLarge(self._too_large(headers.content_length))
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(self._too_large(size, streamed=True))
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self, size: int, streamed: bool = False) -> str:
        limit = self.settings.max_body_bytes
        seen = "more than " if streamed else ""
        return (
            f"Request body is too large: {seen}{size} bytes, the limit is {limit} bytes "
            "(runtime.max_request_body_bytes)."
        )

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inference(scope, receive, send, "predict", None)

    def _route_handler(self, name: str) -> Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await self._inference(scope, receive, send, name, name)

        return handler

    def _parse_inputs(self, body: bytes, binary: bool, method: str | None) -> Any:
        desc = self.runtime.desc
        assert desc is not None
        if method is None:  # predict: the pydantic schema and "skip parsing" apply to predict only
            if desc.skip_input_parsing:
                return None
            schema = self.runtime.schema
            input_type = schema.input_type if schema is not None else None
            if input_type is not None:
                if binary:
                    return validate_python_input(input_type, loads_msgpack(body))
                return parse_json_input(input_type, body)
        return loads_msgpack(body) if binary else loads_json(body)

    async def _inference(self, scope: Scope, receive: Receive, send: Send, route: str, method: str | None) -> None:
        started_at = time.perf_counter()
        metrics = self.metrics
        headers = _Headers(scope["headers"])
        rid = headers.request_id or _new_request_id()
        request_id.set(rid.decode("latin-1"))
        sent = _Sent(started_at)
        metrics.in_flight += 1
        cancellation: Cancellation | None = None
        try:
            body = await self._read_body(receive, headers)
            runtime = self.runtime
            if runtime.health.state is not ModelState.READY:
                raise ModelNotReady()
            md = None
            if method is not None:
                md = runtime.desc.route(method) if runtime.desc is not None else None
                if md is None:
                    raise MethodNotImplemented(f"`{method}` must only be called if model has it.")
            inputs = self._parse_inputs(body, headers.binary, method)

            task = asyncio.current_task()
            cancellation = Cancellation(task)
            bind_task(cancellation)
            self.active.add(cancellation)
            watch = _Watch(receive, cancellation)
            self._watchers.add(watch)
            deadline = None
            timeout = self.settings.request_timeout
            if timeout is not None:
                deadline = asyncio.get_running_loop().call_later(timeout, cancellation.cancel, CancelReason.DEADLINE)
            ctx = CallContext(cancellation, rid.decode("latin-1"), _make_request, scope, body)
            try:
                if md is None:
                    result = await runtime.predict(inputs, ctx)
                else:
                    result = await runtime.route(md, inputs, ctx)
                await self._respond(scope, send, result, headers, rid, sent, cancellation, gather_allowed=md is None)
            except asyncio.CancelledError:
                reason = cancellation.reason
                if reason is None:
                    raise
                if task is not None and hasattr(task, "uncancel"):
                    task.uncancel()
                metrics.count_cancellation(reason.name.lower())
                if reason is CancelReason.DISCONNECT:
                    logger.info("Client disconnected; the request was cancelled.")
                    sent.status = 499
                    return
                if reason is CancelReason.DEADLINE:
                    raise RequestTimeout(
                        f"Request timed out after {timeout} s (runtime.request_timeout_seconds)."
                    ) from None
                if reason is CancelReason.READ_TIMEOUT:
                    logger.error(
                        "No chunk in %s s (runtime.streaming_read_timeout); the stream was aborted.",
                        self.settings.streaming_read_timeout,
                    )
                    raise StreamAborted("streaming read time-out") from None
                raise ModelNotReady("Model server is shutting down.") from None
            finally:
                watch.stop()
                cancellation.task = None  # no task <-> context-variable cycle left for the GC
                self.active.discard(cancellation)
                if deadline is not None:
                    deadline.cancel()
        except _Disconnected:
            sent.status = 499
            logger.info("Client disconnected while reading request.")
        except StreamAborted:
            metrics.count_error(route, "stream_aborted")
            raise
        except Exception as exc:
            if sent.started:
                logger.error("Stream failed after its first chunk; aborting the response.", exc_info=exc)
                metrics.count_error(route, "stream_aborted")
                raise StreamAborted(str(exc)) from exc
            err = errors.from_exception(exc, dev=self.settings.dev)
            sent.status = err.status
            metrics.count_error(route, type(exc).__name__)
            if cancellation is None or cancellation.reason is not CancelReason.DISCONNECT:
                await _send_error(send, err, rid)
        finally:
            metrics.in_flight -= 1
            metrics.observe_request(route, sent.status, time.perf_counter() - started_at)

    async def _respond(
        self,
        scope: Scope,
        send: Send,
        result: Any,
        headers: _Headers,
        rid: bytes,
        sent: _Sent,
        cancellation: Cancellation,
        gather_allowed: bool,
    ) -> None:
        if isinstance(result, Stream):
            gather = gather_allowed and headers.accept == _JSON and b"openai" not in headers.user_agent.lower()
            await self._stream(send, result, headers, rid, sent, cancellation, gather)
        elif isinstance(result, Passthrough):
            await self._passthrough(scope, send, result, rid, sent, cancellation)
        else:
            if headers.binary:
                body, ctype = (result if isinstance(result, bytes) else dumps_msgpack(result)), _OCTET
            else:
                body, ctype = dumps_json(result), _JSON
            sent.status = 200
            await _send_body(send, 200, body, ctype, rid)

    async def _stream(
        self,
        send: Send,
        stream: Stream,
        headers: _Headers,
        rid: bytes,
        sent: _Sent,
        cancellation: Cancellation,
        gather: bool,
    ) -> None:
        metrics = self.metrics
        iterator = stream.iterator
        try:
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first = None
            except Exception as exc:
                log_user_error(exc, "Exception while generating streamed response")
                raise UserCodeError() from exc
            if gather:
                parts = [] if first is None else [_as_bytes(first)]
                if first is not None:
                    async for chunk in iterator:
                        parts.append(_as_bytes(chunk))
                text = b"".join(parts).decode("utf-8")
                body, ctype = (dumps_msgpack(text), _OCTET) if headers.binary else (dumps_json(text), _JSON)
                sent.status = 200
                await _send_body(send, 200, body, ctype, rid)
                return
            sent.started = True
            sent.status = 200
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", _OCTET), (b"x-baseten-request-id", rid), *_STREAM_HEADERS],
                }
            )
            if first is None:
                await send({"type": "http.response.body", "body": b""})
                return
            metrics.ttfc.observe(time.perf_counter() - sent.t0)
            await send({"type": "http.response.body", "body": _as_bytes(first), "more_body": True})
            chunks = 1
            loop = asyncio.get_running_loop()
            watchdog = _ReadWatchdog(loop, self.settings.streaming_read_timeout, cancellation)
            try:
                while True:
                    watchdog.waiting_since = loop.time()
                    try:
                        chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    watchdog.waiting_since = None
                    await send({"type": "http.response.body", "body": _as_bytes(chunk), "more_body": True})
                    chunks += 1
            finally:
                watchdog.stop()
                metrics.stream_chunks += chunks
            await send({"type": "http.response.body", "body": b""})
        finally:
            await stream.close()

    async def _passthrough(
        self, scope: Scope, send: Send, result: Passthrough, rid: bytes, sent: _Sent, cancellation: Cancellation
    ) -> None:
        response = result.response
        response.headers["x-baseten-request-id"] = rid.decode("latin-1")
        if response.status_code >= 300:
            for name, value in errors.error_headers(errors.CODE_CLIENT):
                response.headers[name.decode()] = value.decode()
        if isinstance(response, StreamingResponse):
            response.headers.setdefault("cache-control", "no-cache")
            response.headers.setdefault("x-accel-buffering", "no")
        sent.status = response.status_code
        # Spec 2.4: starlette then streams without its own disconnect listener; ours cancels.
        inner_scope = {**scope, "asgi": {"version": "3.0", "spec_version": "2.4"}}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.started = True
            await send(message)

        try:
            await response(inner_scope, _receive_after_body(cancellation), tracking_send)
        finally:
            iterator = getattr(response, "body_iterator", None)
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and cancellation.cancelled:
                try:
                    await aclose()
                except Exception:
                    pass
            result.done()


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"A stream may only yield str or bytes, got {type(chunk).__name__}")


class _ReadWatchdog:
    """Fires the cancellation when the model takes longer than the read time-out for a chunk.

    One timer per stream, re-armed only when it fires; each chunk costs two assignments.
    """

    __slots__ = ("loop", "timeout", "cancellation", "waiting_since", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, cancellation: Cancellation) -> None:
        self.loop = loop
        self.timeout = timeout
        self.cancellation = cancellation
        self.waiting_since: float | None = None
        self.handle: asyncio.TimerHandle | None = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        since = self.waiting_since
        now = self.loop.time()
        if since is not None and now - since >= self.timeout:
            self.handle = None
            self.cancellation.cancel(CancelReason.READ_TIMEOUT)
            return
        next_at = (since if since is not None else now) + self.timeout
        self.handle = self.loop.call_at(next_at, self._check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Watch:
    """One request's disconnect watch: a task waiting on ASGI ``receive()`` for ``http.disconnect``."""

    __slots__ = ("receive", "cancellation", "task")

    def __init__(self, receive: Receive, cancellation: Cancellation) -> None:
        self.receive = receive
        self.cancellation = cancellation
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.cancellation.cancel(CancelReason.DISCONNECT)
                return

    def stop(self) -> None:
        self.cancellation.finished = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()


class _Watchers:
    """Starts disconnect watches in batches, for requests still running ``delay`` s after they began.

    A watch costs a task and a pending ``receive()``; most unary requests finish in well under a
    millisecond and never need one. One timer serves every request of that millisecond, so the
    per-request cost is a list append. Detection stays event-driven (``http.disconnect``); it
    starts at most ``delay`` late.
    """

    __slots__ = ("delay", "pending", "handle")

    def __init__(self, delay: float = 0.001) -> None:
        self.delay = delay
        self.pending: list[_Watch] = []
        self.handle: asyncio.TimerHandle | None = None

    def add(self, watch: _Watch) -> None:
        self.pending.append(watch)
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self.handle = None
        pending, self.pending = self.pending, []
        loop = asyncio.get_running_loop()
        for watch in pending:
            if not watch.cancellation.finished:
                watch.task = loop.create_task(watch.run())


def _receive_after_body(cancellation: Cancellation) -> Receive:
    """The ``receive`` model code sees once the body is consumed: it answers
    ``http.disconnect`` when (and only when) the request was cancelled."""

    async def receive() -> Message:
        if cancellation.reason is None:
            await cancellation.wait()
        return {"type": "http.disconnect"}

    return receive


def _make_request(ctx: CallContext) -> Request:
    """The starlette Request handed to model methods that annotate one."""
    scope, cancellation = ctx.scope, ctx.cancellation
    assert cancellation is not None
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state["watch_disconnect"] = cancellation.watch
    request = Request(scope, _receive_after_body(cancellation))
    request._body = ctx.body
    return request


__all__ = ["ModelApp"]
