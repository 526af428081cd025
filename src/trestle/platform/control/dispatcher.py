"""Runs queued async requests on a deployment's replicas, through the gateway's own path.

Every ``interval`` (and at once when a request is submitted or one finishes) the dispatcher:

1. expires QUEUED requests past their ``max_time_in_queue_seconds`` (they are never run);
2. for each deployment with due requests: wakes it when SCALED_TO_ZERO; else computes its free
   capacity, ``ready replicas × ceil(concurrency_target)`` minus what is in flight (sync requests
   counted first), and claims that many requests, lowest rank first (priority with aging, see
   ``store/async_queue.py``), running each through ``run`` (the gateway's path to a replica);
3. when requests wait and there is no free capacity, asks for more replicas (up to
   ``max_replicas``): queue depth is a scaling signal, not only a wake-up.

**Sync first**: sync requests never wait for the dispatcher; async work takes only the capacity they
leave, so under mixed load a sync request waits for at most the async requests already running.

Outcomes: a 2xx answer → SUCCEEDED (the body kept as the result); 400/422 → FAILED with
MODEL_INVALID_INPUT (not retried); 5xx, 502/503/504 and an unavailable replica → retried after
``initial_delay_ms × 2^(attempt-1)`` (capped at ``max_delay_ms``) until ``max_attempts``, then FAILED.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from trestle.platform.control.ticker import Ticker
from trestle.platform.errors import Unavailable
from trestle.platform.store.async_queue import AsyncQueue, AsyncRequest
from trestle.platform.store.states import DeploymentStatus

if TYPE_CHECKING:
    from trestle.platform.control.controller import Controller

logger = logging.getLogger("trestle.platform")

S = DeploymentStatus


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A replica's answer to one async request."""

    status: int
    body: bytes
    content_type: str = "application/json"


Runner = Callable[[str, bytes], Awaitable[Outcome]]
"""(deployment id, model input as JSON) → the replica's answer; raises ``Unavailable`` when no replica took it."""

_SCALE_UP_COOLDOWN = 10.0


def result_bytes(outcome: Outcome) -> bytes:
    """The result to keep, as JSON: the body when it is JSON, else (a streamed or text answer, gathered)
    the text as one JSON string."""
    if "json" in outcome.content_type:
        try:
            orjson.loads(outcome.body)
            return outcome.body
        except orjson.JSONDecodeError:
            pass
    return orjson.dumps(outcome.body.decode("utf-8", errors="replace"))


def _message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")[:2000]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])[:2000]
    return body.decode("utf-8", errors="replace")[:2000]


def classify(outcome: Outcome) -> tuple[str, bool]:
    """(Baseten error code, whether to retry) for a non-2xx answer."""
    if outcome.status in (400, 422):
        return "MODEL_INVALID_INPUT", False
    if outcome.status == 504:
        return "MODEL_PREDICT_TIMEOUT", True
    if outcome.status in (502, 503, 409):
        return "MODEL_UNAVAILABLE", True
    if outcome.status == 404:
        return "MODEL_DOES_NOT_EXIST", False
    return "MODEL_PREDICT_ERROR", True


class Dispatcher(Ticker):
    def __init__(
        self,
        ctrl: Controller,
        queue: AsyncQueue,
        run: Runner,
        *,
        interval: float = 0.25,
        on_finish: Callable[[AsyncRequest, str, float], None] = lambda request, outcome, queued_s: None,
    ) -> None:
        super().__init__(interval)
        self.ctrl = ctrl
        self.queue = queue
        self.run_one = run
        self.on_finish = on_finish
        """Called after each attempt: (request, "success"|"failure"|"retry"|"expired", seconds it queued)."""
        self.running: dict[str, int] = {}
        """Per deployment, the async requests claimed and not finished."""
        self._scaled_at: dict[str, float] = {}

    def tick(self) -> None:
        for request in self.queue.expire():
            self.on_finish(request, "expired", request.status_at - request.created_at)
        for deployment_id, waiting in self.queue.queued_by_deployment().items():
            self._dispatch(deployment_id, waiting)

    def capacity(self, deployment_id: str) -> tuple[int, int]:
        """(free slots for async work, slots in all) of a deployment now."""
        rset = self.ctrl.engine.replica_set(deployment_id)
        if rset is None or not rset.any_ready:
            return 0, 0
        try:
            dep = self.ctrl.store.get_deployment(deployment_id)
        except Exception:
            return 0, 0
        per = max(1, math.ceil(self.ctrl.autoscaling_of(dep).concurrency_target - 1e-9))
        total = rset.ready_count * per
        running = self.running.get(deployment_id, 0)
        sync = max(0, rset.meter.in_flight - running)
        return max(0, total - sync - running), total

    def _dispatch(self, deployment_id: str, waiting: int) -> None:
        status = self.ctrl.routes.status.get(deployment_id)
        if status is S.SCALED_TO_ZERO:
            self.ctrl.wake(deployment_id)
            return
        free, total = self.capacity(deployment_id)
        if free <= 0:
            if total:
                self._scale_up(deployment_id, waiting)
            return
        for request in self.queue.claim(deployment_id, min(free, waiting)):
            self.running[deployment_id] = self.running.get(deployment_id, 0) + 1
            self.start(self._run(request))

    def _scale_up(self, deployment_id: str, waiting: int) -> None:
        now = time.monotonic()
        if now - self._scaled_at.get(deployment_id, -math.inf) < _SCALE_UP_COOLDOWN:
            return
        dep = self.ctrl.store.get_deployment(deployment_id)
        policy = self.ctrl.autoscaling_of(dep)
        rset = self.ctrl.engine.replica_set(deployment_id)
        if dep.status is not S.ACTIVE or self.ctrl.busy(deployment_id) or rset is None:
            return
        if dep.replicas >= policy.max_replicas or rset.ready_count < dep.replicas:
            return  # at the ceiling, or replicas are still starting
        per = max(1, math.ceil(policy.concurrency_target - 1e-9))
        wanted = min(policy.max_replicas, math.ceil((rset.meter.in_flight + waiting) / per))
        if wanted <= dep.replicas:
            return
        self._scaled_at[deployment_id] = now
        self.ctrl.spawn(self.ctrl.autoscale(deployment_id, wanted, f"{waiting} async request(s) queued"))

    async def _run(self, request: AsyncRequest) -> None:
        try:
            await self._attempt(request)
        except Exception as exc:
            logger.exception("async request %s: %r", request.id, exc)
            self.queue.fail(request.id, [{"code": "INTERNAL_SERVER_ERROR", "message": repr(exc)}])
            self.on_finish(request, "failure", 0.0)
        finally:
            self.running[request.deployment_id] -= 1
            self.kick.set()

    async def _attempt(self, request: AsyncRequest) -> None:
        queued = max(0.0, (request.started_at or time.time()) - request.created_at)
        try:
            outcome = await self.run_one(request.deployment_id, request.model_input)
        except Unavailable as exc:
            code, retry, message = "MODEL_UNAVAILABLE", True, exc.message
        else:
            if 200 <= outcome.status < 300:
                self.queue.succeed(request.id, result_bytes(outcome))
                self.on_finish(request, "success", queued)
                return
            (code, retry), message = classify(outcome), _message(outcome.body)
        errors = [{"code": code, "message": message}]
        if retry and request.attempts < request.retry.max_attempts:
            self.queue.retry_later(request.id, request.retry.delay(request.attempts), errors)
            self.on_finish(request, "retry", queued)
            return
        self.queue.fail(request.id, errors)
        self.on_finish(request, "failure", queued)
