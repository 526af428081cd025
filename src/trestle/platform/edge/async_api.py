"""Async inference routes (Baseten's contract), before the gateway on the platform port.

Under ``/models/{model id or name}`` (or bare with a ``Host: model-{id}.<anything>``), for every target
prefix the gateway knows (``/production``, ``/development``, ``/environments/{env}``,
``/deployment/{id}``)::

    POST {target}/async_predict         201 {"request_id"}; 400 names the bad field, 413, 429
    GET  {target}/async_queue_status    {model_id, deployment_id, num_queued_requests, num_in_progress_requests}

and, with or without the ``/models/{ref}`` prefix::

    GET    /async_request/{id}          status, webhook_status, created_at, status_at, errors
    DELETE /async_request/{id}          cancel a QUEUED request
    GET    /async_request/{id}/result   the model's output, kept ``async_result_seconds`` (beyond Baseten)

Platform-wide: ``GET /v1/webhooks/secret``, ``POST /v1/webhooks/secret/rotate``, ``GET /metrics/async``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from trestle.asgi import read_body
from trestle.errors import ClientDisconnected, PayloadTooLarge, PlatformError
from trestle.platform.control.async_metrics import AsyncMetrics
from trestle.platform.control.controller import Controller
from trestle.platform.control.dispatcher import Dispatcher, Outcome
from trestle.platform.control.webhooks import SecretKeeper, WebhookSender, check_webhook_host, check_webhook_url
from trestle.platform.edge.errors import http_status
from trestle.platform.edge.gateway import Gateway, GatewayError, send_error
from trestle.platform.edge.urls import PREDICT_PATH
from trestle.platform.errors import InvalidRequest, Unavailable
from trestle.platform.settings import Settings
from trestle.platform.store.async_queue import AsyncQueue, AsyncRequest, AsyncStatus, RetryConfig, Submission

_FIELDS = {"model_input", "webhook_endpoint", "priority", "max_time_in_queue_seconds", "inference_retry_config"}
_RETRY_FIELDS = {"max_attempts": (1, 10, 3), "initial_delay_ms": (0, 10000, 1000), "max_delay_ms": (0, 60000, 5000)}


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int(body: dict[str, Any], key: str, low: int, high: int, default: int, prefix: str = "") -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{prefix}{key} must be an integer from {low} to {high}, not {value!r}")
    return value


def parse_submission(raw: bytes, *, allow_private: bool) -> dict[str, Any]:
    """The ``async_predict`` body, checked: 400 (``InvalidRequest``) names the bad field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object with model_input")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; async_predict takes {', '.join(sorted(_FIELDS))}")
    if "model_input" not in body:
        raise InvalidRequest("model_input is required")
    if not isinstance(body["model_input"], dict):
        raise InvalidRequest("model_input must be a JSON object")
    webhook = body.get("webhook_endpoint")
    if webhook is not None:
        if not isinstance(webhook, str):
            raise InvalidRequest("webhook_endpoint must be a URL string")
        check_webhook_url(webhook, allow_private=allow_private)
    retry = body.get("inference_retry_config") or {}
    if not isinstance(retry, dict):
        raise InvalidRequest("inference_retry_config must be an object")
    bad = sorted(set(retry) - set(_RETRY_FIELDS))
    if bad:
        raise InvalidRequest(f"unknown field(s) inference_retry_config.{', '.join(bad)}")
    values = {k: _int(retry, k, lo, hi, d, "inference_retry_config.") for k, (lo, hi, d) in _RETRY_FIELDS.items()}
    return {
        "model_input": orjson.dumps(body["model_input"]),
        "webhook_endpoint": webhook,
        "priority": _int(body, "priority", 0, 2, 0),
        "max_time_in_queue": float(_int(body, "max_time_in_queue_seconds", 10, 259200, 600)),
        "retry": RetryConfig(**values),
    }


def status_view(request: AsyncRequest) -> dict[str, Any]:
    return {
        "request_id": request.id,
        "model_id": request.model_id,
        "deployment_id": request.deployment_id,
        "status": request.status.value,
        "webhook_status": request.webhook_status.value,
        "created_at": _iso(request.created_at),
        "status_at": _iso(request.status_at),
        "errors": request.errors,
    }


async def _send_json(send: Send, status: int, body: Any) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The ``async_predict`` body (``asgi.read_body``: a ``Content-Length`` over ``limit`` is refused
    before reading); None when the client left."""
    length = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
    try:
        return await read_body(receive, limit, int(length) if length.isdigit() else -1, "async_max_payload_bytes")
    except PayloadTooLarge as exc:
        raise GatewayError(413, str(exc)) from None
    except ClientDisconnected:
        return None


def is_async_path(path: str) -> bool:
    """Whether ``path`` may be one of the async routes (``AsyncApi.handle`` decides): a cheap test so
    every proxied request does not pay for the async router."""
    return "/async" in path or path.startswith("/v1/webhooks/")


class _GroupCommit:
    """Submits wait for the disk together: while one batch is being committed (in a worker thread, off
    the event loop) the next ones gather, then go in one transaction."""

    def __init__(self, commit: Callable[[list[Submission]], list[AsyncRequest | None]]) -> None:
        self.commit = commit
        self.pending: list[tuple[Submission, asyncio.Future[AsyncRequest | None]]] = []
        self.running = False

    async def submit(self, submission: Submission) -> AsyncRequest | None:
        future: asyncio.Future[AsyncRequest | None] = asyncio.get_running_loop().create_future()
        self.pending.append((submission, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await asyncio.to_thread(self.commit, [sub for sub, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.running = False


class AsyncApi:
    """The queue, the dispatcher and the webhook sender of one platform, and their routes."""

    def __init__(self, settings: Settings, ctrl: Controller, gateway: Gateway) -> None:
        self.settings = settings
        self.ctrl = ctrl
        self.gateway = gateway
        self.queue = AsyncQueue(ctrl.store, aging_seconds=settings.async_aging_seconds)
        self.keeper = SecretKeeper(self.queue, settings.webhook_secret)
        self.metrics = AsyncMetrics(self.queue.sizes)
        self.sender = WebhookSender(
            self.queue,
            self.keeper,
            allow_private=settings.allow_private_webhooks,
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            initial_delay=settings.webhook_initial_delay_seconds,
            observe=self.metrics.webhook,
        )
        self.dispatcher = Dispatcher(
            ctrl, self.queue, self._run, interval=settings.async_dispatch_interval, on_finish=self._finished
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.submits = _GroupCommit(self._commit)

    def _commit(self, batch: list[Submission]) -> list[AsyncRequest | None]:
        return self.queue.submit_many(batch, max_queued=self.settings.async_max_queued)

    async def start(self) -> None:
        """Requeue what ran when the platform stopped, then start the dispatcher, sender and purger."""
        self.queue.requeue_in_progress()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.dispatcher.run()),
            loop.create_task(self.sender.run()),
            loop.create_task(self._purge()),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.aclose()
        await self.sender.aclose()

    async def _purge(self) -> None:
        while True:
            self.queue.purge(self.settings.async_result_seconds)
            await asyncio.sleep(60)

    async def _run(self, deployment_id: str, body: bytes) -> Outcome:
        try:
            status, data, content_type = await self.gateway.call(deployment_id, PREDICT_PATH, body)
        except GatewayError as exc:
            if exc.status in (502, 504):
                return Outcome(exc.status, orjson.dumps({"error": exc.message}))
            raise Unavailable(exc.message) from None
        return Outcome(status, data, content_type)

    def _finished(self, request: AsyncRequest, outcome: str, queued: float) -> None:
        self.metrics.attempt(request.deployment_id, outcome, queued)
        if outcome != "retry":
            self.sender.kick.set()

    # routing ----------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, host_model: str | None, path: str) -> bool:
        """Answer the request when it is one of the async routes; False to let the gateway or API have it."""
        method = scope["method"]
        model_ref = host_model
        rest = path
        if host_model is None and path.startswith("/models/"):
            ref, sep, tail = path[8:].partition("/")
            if ref and sep:
                model_ref, rest = ref, "/" + tail
        try:
            if rest.startswith("/async_request/"):
                await self._request_route(send, method, rest[len("/async_request/") :])
                return True
            if model_ref is not None and rest.endswith("/async_predict"):
                self._method(method, "POST")
                await self._submit(scope, receive, send, model_ref, rest[: -len("/async_predict")])
                return True
            if model_ref is not None and rest.endswith("/async_queue_status"):
                self._method(method, "GET")
                await self._queue_status(send, model_ref, rest[: -len("/async_queue_status")])
                return True
            if host_model is None and path == "/metrics/async" and method == "GET":
                data = self.metrics.render()
                headers = [
                    (b"content-type", b"text/plain; version=0.0.4"),
                    (b"content-length", str(len(data)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": data})
                return True
            if host_model is None and path == "/v1/webhooks/secret" and method == "GET":
                await _send_json(send, 200, {"secret": self.keeper.current, "signing": len(self.keeper.signing())})
                return True
            if host_model is None and path == "/v1/webhooks/secret/rotate" and method == "POST":
                secret = await asyncio.to_thread(self.keeper.rotate)
                await _send_json(send, 200, {"secret": secret, "previous_valid_hours": 24})
                return True
        except GatewayError as exc:
            await send_error(send, exc.status, exc.message)
            return True
        except PlatformError as exc:  # bad fields, unknown ids, ...: the one mapping (edge/errors.py)
            await send_error(send, http_status(exc), exc.message)
            return True
        return False

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed:
            raise GatewayError(405, f"use {allowed} here, not {method}")

    def _deployment(self, model_ref: str, target: str) -> tuple[str, str]:
        """(model id, deployment id) for a target prefix, resolved as the gateway does."""
        resolved = self.gateway.resolve(model_ref, target + "/predict")
        routes = self.gateway.routes.model(model_ref)
        assert routes is not None
        return routes.model_id, resolved.deployment_id

    async def _submit(self, scope: Scope, receive: Receive, send: Send, model_ref: str, target: str) -> None:
        model_id, deployment_id = self._deployment(model_ref, target)
        raw = await _read_body(scope, receive, self.settings.async_max_payload_bytes)
        if raw is None:
            return
        fields = parse_submission(raw, allow_private=self.settings.allow_private_webhooks)
        if fields["webhook_endpoint"]:
            await check_webhook_host(fields["webhook_endpoint"], allow_private=self.settings.allow_private_webhooks)
        request = await self.submits.submit(Submission(model_id=model_id, deployment_id=deployment_id, **fields))
        if request is None:
            raise GatewayError(
                429,
                f"the async queue is full ({self.settings.async_max_queued} requests queued or running); retry later",
            )
        self.dispatcher.kick.set()
        await _send_json(send, 201, {"request_id": request.id})

    async def _queue_status(self, send: Send, model_ref: str, target: str) -> None:
        model_id, deployment_id = self._deployment(model_ref, target)
        queued, running = self.queue.counts(deployment_id)
        await _send_json(
            send,
            200,
            {
                "model_id": model_id,
                "deployment_id": deployment_id,
                "num_queued_requests": queued,
                "num_in_progress_requests": running,
            },
        )

    async def _request_route(self, send: Send, method: str, tail: str) -> None:
        request_id, _, sub = tail.partition("/")
        request = self.queue.get(request_id)
        if request is None:
            raise GatewayError(404, f"no async request {request_id!r} (finished ones are kept {self._kept()})")
        if sub == "result":
            self._method(method, "GET")
            await self._result(send, request)
        elif sub:
            raise GatewayError(404, f"unknown async route {sub!r}: use /async_request/{{id}} or .../result")
        elif method == "GET":
            await _send_json(send, 200, status_view(request))
        elif method == "DELETE":
            canceled = await asyncio.to_thread(self.queue.cancel, request_id)
            if canceled:
                message = "canceled; its webhook will not be sent"
            else:
                now = self.queue.get(request_id)
                message = f"only QUEUED requests can be canceled; this one is {now.status.value if now else 'gone'}"
            await _send_json(send, 200, {"request_id": request_id, "canceled": canceled, "message": message})
        else:
            raise GatewayError(405, f"use GET or DELETE here, not {method}")

    async def _result(self, send: Send, request: AsyncRequest) -> None:
        if request.status in (AsyncStatus.SUCCEEDED, AsyncStatus.WEBHOOK_FAILED) and request.result is not None:
            await _send_json(send, 200, request.result)
            return
        if not request.status.finished:
            raise GatewayError(409, f"async request {request.id} is {request.status.value}; no result yet")
        raise GatewayError(409, f"async request {request.id} ended {request.status.value}; it has no result")

    def _kept(self) -> str:
        return f"{self.settings.async_result_seconds:g}s"
