"""The durable async queue: order (priority with aging), expiry, cancel, retries, restart, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from trestle.platform.errors import Conflict
from trestle.platform.store.async_queue import (
    AsyncQueue,
    AsyncStatus,
    RetryConfig,
    WebhookStatus,
    check_async_transition,
)
from trestle.platform.store.database import Store


@pytest.fixture
def queue(tmp_path: Path) -> AsyncQueue:
    return AsyncQueue(Store(tmp_path / "p.db"), aging_seconds=60.0)


def submit(queue: AsyncQueue, priority: int = 0, *, at: float, webhook: str | None = None) -> str:
    request = queue.submit(
        model_id="m",
        deployment_id="d",
        model_input=b'{"x": 1}',
        webhook_endpoint=webhook,
        priority=priority,
        max_time_in_queue=600,
        retry=RetryConfig(),
        max_queued=100,
        now=at,
    )
    assert request is not None
    return request.id


def claim_order(queue: AsyncQueue, now: float) -> list[str]:
    return [request.id for request in queue.claim("d", 100, now=now)]


def test_lower_priority_runs_first_and_fifo_within_a_class(queue: AsyncQueue) -> None:
    low = submit(queue, 2, at=0)
    mid = submit(queue, 1, at=1)
    first = submit(queue, 0, at=2)
    second = submit(queue, 0, at=3)
    assert claim_order(queue, now=10) == [first, second, mid, low]


def test_aging_lets_a_priority_2_request_pass_newer_priority_0_ones(queue: AsyncQueue) -> None:
    old = submit(queue, 2, at=0)
    just_inside = submit(queue, 0, at=119)  # made before the old one aged two classes (2 x 60 s)
    later = submit(queue, 0, at=121)
    assert claim_order(queue, now=130) == [just_inside, old, later]


def test_expired_requests_are_never_claimed(queue: AsyncQueue) -> None:
    stale = submit(queue, at=0)
    fresh = submit(queue, at=500)
    assert [r.id for r in queue.expire(now=601)] == [stale]
    assert claim_order(queue, now=601) == [fresh]
    request = queue.get(stale)
    assert request is not None and request.status is AsyncStatus.EXPIRED
    assert request.errors[0]["code"] == "MODEL_NOT_READY"


def test_only_queued_requests_cancel_and_their_webhook_is_dropped(queue: AsyncQueue) -> None:
    queued = submit(queue, at=0, webhook="https://example.com/h")
    assert queue.cancel(queued)
    request = queue.get(queued)
    assert request is not None
    assert (request.status, request.webhook_status) == (AsyncStatus.CANCELED, WebhookStatus.CANCELED)
    assert not queue.cancel(queued)
    running = submit(queue, at=1)
    queue.claim("d", 1, now=2)
    assert not queue.cancel(running)


def test_retry_waits_for_its_back_off(queue: AsyncQueue) -> None:
    request_id = submit(queue, at=0)
    (request,) = queue.claim("d", 1, now=1)
    assert request.attempts == 1
    queue.retry_later(request_id, 2.0, [{"code": "MODEL_PREDICT_ERROR", "message": "boom"}], now=1)
    assert claim_order(queue, now=2) == []
    assert claim_order(queue, now=3.5) == [request_id]
    assert RetryConfig(initial_delay_ms=1000, max_delay_ms=5000).delay(1) == 1.0
    assert RetryConfig(initial_delay_ms=1000, max_delay_ms=5000).delay(3) == 4.0
    assert RetryConfig(initial_delay_ms=1000, max_delay_ms=5000).delay(9) == 5.0


def test_a_restart_runs_in_progress_requests_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    queue = AsyncQueue(store)
    ids = [submit(queue, at=i) for i in range(5)]
    queue.claim("d", 2, now=10)
    store.close()
    again = AsyncQueue(Store(tmp_path / "p.db"))  # as after a SIGKILL: the same file, a new process
    assert again.counts("d") == (3, 2)
    assert again.requeue_in_progress() == 2
    assert again.counts("d") == (5, 0)
    assert sorted(claim_order(again, now=20)) == sorted(ids)


def test_the_queue_cap(queue: AsyncQueue) -> None:
    for i in range(3):
        assert queue.submit(
            model_id="m", deployment_id="d", model_input=b"{}", webhook_endpoint=None, priority=0,
            max_time_in_queue=600, retry=RetryConfig(), max_queued=3, now=i,
        ) is not None  # fmt: skip
    assert queue.submit(
        model_id="m", deployment_id="d", model_input=b"{}", webhook_endpoint=None, priority=0,
        max_time_in_queue=600, retry=RetryConfig(), max_queued=3, now=4,
    ) is None  # fmt: skip


def test_finished_requests_are_purged_after_the_retention(queue: AsyncQueue) -> None:
    request_id = submit(queue, at=0)
    queue.claim("d", 1, now=1)
    queue.succeed(request_id, b'{"ok": true}', now=2)
    assert queue.purge(3600, now=3000) == 0
    assert queue.purge(3600, now=3603) == 1
    assert queue.get(request_id) is None


def test_transitions_are_written_down() -> None:
    check_async_transition(AsyncStatus.QUEUED, AsyncStatus.IN_PROGRESS)
    with pytest.raises(Conflict):
        check_async_transition(AsyncStatus.IN_PROGRESS, AsyncStatus.CANCELED)


def test_a_webhook_not_yet_delivered_is_due_again_after_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    queue = AsyncQueue(store)
    request_id = submit(queue, at=0, webhook="https://example.com/h")
    queue.claim("d", 1, now=1)
    queue.succeed(request_id, b'{"ok": 1}', now=2)
    store.close()  # killed before the webhook went out
    again = AsyncQueue(Store(tmp_path / "p.db"))
    (due,) = again.webhooks_due(10, set(), now=3)
    assert due.id == request_id and due.result == b'{"ok": 1}'
    again.webhook_done(request_id, True)
    assert again.webhooks_due(10, set(), now=4) == []
