"""The inference gateway: Baseten's routes (their shapes are in ``urls.py``), proxied to a
deployment's replicas (websockets included). The hot path is lean on purpose: the routing table is in
memory, the replicas are reached over keep-alive connections on asyncio protocols (``upstream.py``),
bodies stream through unbuffered, and a client that disconnects cancels the upstream request.

Why not a general HTTP client here: httpcore's pool polls every idle connection's socket on each
request and anyio adds checkpoints per read and write (~790 us of CPU per proxied request at 16
concurrent); aiohttp's client, used until 2026-12, cost ~170 us on this box for the request object,
header multidict, payload registry and timers a proxy does not need; ``upstream.py`` costs ~50 us.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from trestle.asgi.memory import after_oversized_message
from trestle.platform.control.routing import RouteTable
from trestle.platform.control.traffic import CLIENT_CLOSED, Traffic
from trestle.platform.edge.upstream import Broken, Refused, Silent, Upstream, UpstreamError
from trestle.platform.edge.urls import WAKE, UnknownRoute, parse_route
from trestle.platform.engines.base import Engine, NoReplica, Replica
from trestle.platform.store.states import DeploymentStatus

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"authorization",
    }
)
_WS_DROP = HOP_BY_HOP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-accept",
    b"sec-websocket-protocol",
}
RESPONSE_DROP = HOP_BY_HOP | {b"date"}
"""Not passed back from a replica: hop by hop, and ``Date`` (the platform's server writes its own)."""
UPSTREAM_DROP = HOP_BY_HOP | {b"content-length", b"expect"}
"""Not forwarded to a replica: hop by hop, and the framing the upstream client writes itself (the whole
body is sent at once, so no ``Expect: 100-continue``)."""
_JSON = [(b"content-type", b"application/json")]
MAX_BODY_BYTES = 100 << 20

S = DeploymentStatus


class GatewayError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, retry_after: int | None = None) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.retry_after = retry_after
        """Baseten's ``error_code``; None: the one for ``status`` (``ERROR_CODES``)."""
        super().__init__(message)


ERROR_CODES = {
    400: "client_error",
    401: "unauthorized",
    403: "unauthorized",
    404: "model_does_not_exist",
    409: "model_unavailable",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_baseten_error",
    502: "model_unavailable",
    503: "model_not_ready",
    504: "timeout",
}
"""Baseten's ``error_code`` for a gateway-made error of each status (its list: timeout, client_error,
model_unavailable, model_not_ready, model_does_not_exist, rate_limited, payload_too_large,
unauthorized, application_error, internal_baseten_error)."""


class Target:
    __slots__ = ("deployment_id", "path")

    def __init__(self, deployment_id: str, path: str) -> None:
        self.deployment_id = deployment_id
        self.path = path


class Gateway:
    def __init__(
        self,
        routes: RouteTable,
        engine: Engine,
        *,
        wake: Callable[[str], None],
        wait_seconds: float = 120.0,
        upstream_timeout: float = 600.0,
        ws_max_bytes: int = 16 << 20,
        traffic: Traffic | None = None,
    ) -> None:
        self.routes = routes
        self.traffic = traffic or Traffic()
        """Where each answered request is counted (the controller's, for the metric history)."""
        self.engine = engine
        self.wake = wake
        self.wait_seconds = wait_seconds
        self.upstream_timeout = upstream_timeout
        """Longest silence from a replica (before its answer starts, or between two chunks): then 504."""
        self.ws_max_bytes = ws_max_bytes
        self.upstream = Upstream(upstream_timeout)
        """Keep-alive connections to the replicas (idle ones expire before uvicorn closes them at 5 s)."""

    async def aclose(self) -> None:
        self.upstream.close()

    # routing ----------------------------------------------------------------------------------

    def resolve(self, model_ref: str, rest: str) -> Target:
        routes = self.routes.model(model_ref)
        if routes is None:
            raise GatewayError(404, f"no model with id or name {model_ref!r}")
        try:
            route = parse_route(rest)
        except UnknownRoute as exc:
            raise GatewayError(404, str(exc)) from None
        if route.deployment_id is not None:
            dep = route.deployment_id
            if dep not in routes.deployments:
                raise GatewayError(404, f"model {routes.name!r} has no deployment {dep!r}")
        else:
            assert route.environment is not None
            dep = self._environment(routes.name, routes.environments, route.environment, routes.development)
        return Target(dep, route.path)

    @staticmethod
    def _environment(name: str, envs: dict[str, str | None], env: str, development: str | None) -> str:
        if env == "development":
            if development is None:
                raise GatewayError(404, f"model {name!r} has no development deployment; run `trestle push --watch`")
            return development
        if env not in envs:
            raise GatewayError(404, f"model {name!r} has no environment {env!r}")
        dep = envs[env]
        if dep is None:
            raise GatewayError(
                404, f"environment {env!r} of model {name!r} has no deployment yet; use `trestle promote`"
            )
        return dep

    async def replica_for(self, deployment_id: str) -> Replica:
        status = self.routes.status.get(deployment_id)
        if status is S.INACTIVE:
            raise GatewayError(409, f"deployment {deployment_id} is INACTIVE; push or activate it to serve traffic")
        if status is S.BUILD_FAILED or status is S.DEPLOY_FAILED:
            raise GatewayError(
                503, f"deployment {deployment_id} is {status.value}; see `trestle logs`", "model_unavailable"
            )
        if status is S.SCALED_TO_ZERO:
            self.wake(deployment_id)
        rset = self.engine.replica_set(deployment_id)
        if rset is not None:
            replica = rset.pick()
            if replica is not None:
                capacity = self.routes.reject_when_full.get(deployment_id)
                if capacity is not None and replica.outstanding >= capacity:
                    # REJECT_ON_FULL: the least busy replica is at its concurrency, so all of them are
                    raise GatewayError(
                        429,
                        f"every replica of deployment {deployment_id} is at its concurrency ({capacity}) and its "
                        "backpressure policy is REJECT_ON_FULL: retry later",
                        "rate_limited",
                        retry_after=1,
                    )
                return replica
        # bounded wait: the deployment is loading, waking up or restarting a replica
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        while True:
            status = self.routes.status.get(deployment_id)
            if status in (S.INACTIVE, S.BUILD_FAILED, S.DEPLOY_FAILED):
                raise GatewayError(
                    503, f"deployment {deployment_id} is {status.value if status else '?'}", "model_unavailable"
                )
            if status is S.SCALED_TO_ZERO:
                # it was being scaled to zero when this request arrived: wake it again
                self.wake(deployment_id)
            rset = self.engine.replica_set(deployment_id)
            remaining = deadline - loop.time()
            if remaining <= 0:
                state = status.value if status else "unknown"
                raise GatewayError(503, f"no replica of deployment {deployment_id} became ready in time ({state})")
            if rset is None:
                await asyncio.sleep(min(0.1, remaining))
                continue
            try:
                return await rset.acquire(min(remaining, 1.0))
            except NoReplica:
                continue

    def out_of_rotation(self, replica: Replica, deployment_id: str) -> None:
        """A replica that refused a connection (dying or restarting) takes no more requests until its
        supervisor sees it pass readiness again."""
        replica.ready = False
        rset = self.engine.replica_set(deployment_id)
        if rset is not None:
            rset.refresh()

    def silent_error(self, replica: Replica) -> GatewayError:
        return GatewayError(504, f"replica {replica.id} did not answer within {self.upstream_timeout:g}s")

    # async requests (edge/async_api.py) -------------------------------------------------------

    async def call(self, deployment_id: str, path: str, body: bytes) -> tuple[int, bytes, str]:
        """One buffered request to a replica of the deployment, on the same path as a proxied one
        (``replica_for``: wake, bounded wait, least-outstanding choice, the load meter): (status, body,
        content type). A replica that refused the connection is tried again, as ``__call__`` does;
        raises ``GatewayError`` when none took it."""
        for _ in range(3):
            replica = await self.replica_for(deployment_id)
            rset = self.engine.replica_set(deployment_id)
            path = rset.routes.translate(path) if rset is not None else path
            replica.begin()
            if replica.meter is not None:
                replica.meter.async_requests += 1
            started = time.perf_counter()
            try:
                response = await self.upstream.request("POST", replica.url, path, _JSON, body)
                try:
                    answer = await response.read()
                finally:
                    response.release()
                took = time.perf_counter() - started
                self.traffic.of(deployment_id).finish(response.status, took, took, is_async=True)
                kind = next((v.decode("latin-1") for k, v in response.headers if k == b"content-type"), "")
                return response.status, answer, kind
            except Refused:
                self.out_of_rotation(replica, deployment_id)
            except Silent:
                raise self.silent_error(replica) from None
            except UpstreamError as exc:
                raise _failed(replica, exc) from None
            finally:
                replica.end()
        raise GatewayError(503, f"no replica of deployment {deployment_id} accepted the request")

    # ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send, model_ref: str, rest: str) -> None:
        try:
            target = self.resolve(model_ref, rest)
            if target.path == WAKE:
                await self._wake(scope, send, target.deployment_id)
                return
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send, target)
                return
        except GatewayError as exc:
            await _refuse(scope, send, exc)
            return
        exchange = _Exchange(send)
        outcome = 0
        try:
            await self._proxy(scope, receive, exchange, target)
        except GatewayError as exc:
            await send_error(exchange, exc.status, exc.message, exc.code, exc.retry_after)
        except BaseException:
            outcome = 502  # the replica dropped the answer midway (or the platform is stopping)
            raise
        finally:
            # what the metric history and /metrics count (control/traffic.py)
            status = exchange.status if exchange.complete else (outcome or CLIENT_CLOSED)
            self.traffic.of(target.deployment_id).finish(
                status, time.perf_counter() - exchange.started, exchange.first_byte
            )

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, target: Target) -> None:
        body = await _request_body(scope, receive)
        if body is None:
            return
        for _ in range(3):
            replica = await self.replica_for(target.deployment_id)
            try:
                await self._http(scope, receive, send, replica, target, body)
                return
            except _Unreachable:
                # the request never reached it (the replica died or is restarting): try again, as long
                # as no byte of the body has been taken from the client
                self.out_of_rotation(replica, target.deployment_id)
                if isinstance(body, BodyStream) and body.started:
                    break
        raise GatewayError(503, f"no replica of deployment {target.deployment_id} accepted the request; retry")

    async def _wake(self, scope: Scope, send: Send, deployment_id: str) -> None:
        """Baseten's ``POST {target}/wake``: 202, and a scaled-to-zero deployment starts waking up."""
        if scope["type"] != "http" or scope["method"] != "POST":
            raise GatewayError(405, "wake takes POST")
        if self.routes.status.get(deployment_id) is S.SCALED_TO_ZERO:
            self.wake(deployment_id)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, replica: Replica, target: Target, body: bytes | BodyStream
    ) -> None:
        rset = self.engine.replica_set(target.deployment_id)
        path = rset.routes.translate(target.path) if rset is not None else target.path
        headers = [(k, v) for k, v in scope["headers"] if k not in UPSTREAM_DROP]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        length = None
        if isinstance(body, BodyStream):
            length = next((int(v) for k, v in scope["headers"] if k == b"content-length"), None)
        started = False
        disconnected = False
        task = asyncio.current_task()
        assert task is not None

        async def watch_disconnect() -> None:
            nonlocal disconnected
            if isinstance(body, BodyStream):
                await body.finished.wait()  # until then the body stream is the one reading ``receive``
                disconnected = body.disconnected
            while not disconnected and (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        replica.begin()
        try:
            try:
                response = await self.upstream.request(
                    scope["method"], replica.url, path, headers, body, streamed_length=length
                )
            except Refused:
                # raised from here (not returned): the caller retries on another replica
                raise _Unreachable from None
            except Silent:
                error = self.silent_error(replica)
                await send_error(send, error.status, error.message, error.code)
                return
            except _ClientGone:
                return
            except UpstreamError as exc:
                # it may have run the request, so no retry; take the replica out of rotation until its
                # supervisor sees it pass readiness again (it is probably dying)
                self.out_of_rotation(replica, target.deployment_id)
                error = _failed(replica, exc)
                await send_error(send, error.status, error.message, error.code)
                return
            complete = False
            try:
                out_headers = [(k, v) for k, v in response.headers if k not in RESPONSE_DROP]
                await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
                started = True
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                complete = True
            except (Broken, Silent) as exc:
                if not started:
                    await send_error(send, 502, f"replica {replica.id} failed mid-request ({type(exc).__name__})")
                else:
                    raise StreamCut(f"replica {replica.id} dropped the stream") from exc
            finally:
                if complete:
                    response.release()  # back to the pool
                else:
                    response.close()  # drop the connection: the replica sees the disconnect and cancels
        except asyncio.CancelledError:
            if not disconnected:
                raise
            # the client went away: the upstream request was closed above; end quietly
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
        finally:
            watcher.cancel()
            replica.end()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, target: Target) -> None:
        replica = await self.replica_for(target.deployment_id)
        rset = self.engine.replica_set(target.deployment_id)
        path = rset.routes.translate(target.path) if rset is not None else target.path
        url = "ws" + replica.url.removeprefix("http") + path  # http://h:p[/prefix] -> ws://h:p[/prefix]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _WS_DROP]
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        replica.begin()
        try:
            try:
                upstream = await ws_connect(
                    url, additional_headers=headers, max_size=self.ws_max_bytes, open_timeout=10
                )
            except (InvalidStatus, WebSocketException, OSError):
                await send({"type": "websocket.close", "code": 1011})
                return
            async with upstream:
                await send({"type": "websocket.accept"})
                await _relay_websocket(receive, send, upstream)
        finally:
            replica.end()


def _failed(replica: Replica, exc: Exception) -> GatewayError:
    return GatewayError(502, f"replica {replica.id} failed before answering ({type(exc).__name__})")


class _Unreachable(Exception):
    """The replica refused the connection; the request was not sent, so it can go elsewhere."""


async def _request_body(scope: Scope, receive: Receive) -> bytes | BodyStream | None:
    """The whole body when it came in one message (the common case: it can be sent again to another
    replica), else a stream relayed as it arrives; None when the client left. A ``Content-Length`` over the
    limit is refused before a byte is read."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise GatewayError(400, "invalid Content-Length header") from None
            if length > MAX_BODY_BYTES:
                raise GatewayError(413, f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES}")
            break
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    if not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        return body
    return BodyStream(receive, message.get("body", b""))


class _ClientGone(Exception):
    """The client disconnected while its body was being relayed."""


class BodyStream:
    """A request body relayed to the replica chunk by chunk (never held whole), within ``MAX_BODY_BYTES``."""

    def __init__(self, receive: Receive, first: bytes) -> None:
        self._receive = receive
        self._first = first
        self.started = False
        self.disconnected = False
        self.finished = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            size = len(self._first)
            yield self._first
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise GatewayError(413, f"request body over the limit of {MAX_BODY_BYTES} bytes")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            self.finished.set()


class StreamCut(Exception):
    """Raised out of the ASGI app so the server cuts a stream whose replica went away."""


async def _relay_websocket(receive: Receive, send: Send, upstream: Any) -> None:
    async def client_to_upstream() -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "websocket.disconnect":
                after_oversized_message(message)
                await upstream.close(code=message.get("code", 1000))
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})

    async with anyio.create_task_group() as group:

        async def run(fn: Callable[[], Any]) -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await fn()
            group.cancel_scope.cancel()

        group.start_soon(run, client_to_upstream)
        group.start_soon(run, upstream_to_client)


async def _refuse(scope: Scope, send: Send, exc: GatewayError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011 if exc.status >= 500 else 1008})
        return
    await send_error(send, exc.status, exc.message, exc.code, exc.retry_after)


class _Exchange:
    """The client's ``send``, noting what the gateway answered: the status, when the first byte of the
    body went out, whether the body was complete."""

    __slots__ = ("complete", "first_byte", "send", "started", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = time.perf_counter()
        self.status = 0
        self.first_byte: float | None = None
        """Seconds from the request's arrival to the first byte of the answer's body."""
        self.complete = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            more = message.get("more_body", False)
            if self.first_byte is None and (message.get("body") or not more):
                self.first_byte = time.perf_counter() - self.started
            if not more:
                self.complete = True
        elif message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


async def send_error(
    send: Send, status: int, message: str, code: str | None = None, retry_after: int | None = None
) -> None:
    """A gateway-made error in Baseten's body: ``{"error", "error_code", "detail"}``."""
    body = error_body(status, message, code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-trestle-error-source", b"gateway"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """Baseten's error body: ``{"error", "error_code", "detail"}`` (``code`` None: the one for ``status``)."""
    error_code = code or ERROR_CODES.get(status, "internal_baseten_error")
    return orjson.dumps({"error": message, "error_code": error_code, "detail": message})
