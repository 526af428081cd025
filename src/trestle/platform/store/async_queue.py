"""The durable async-request queue (Baseten's ``async_predict`` contract) in the platform's SQLite store.

One row per request, in its own tables (created here, beside ``database.py``'s), so a platform killed
at any moment loses nothing: a QUEUED row stays queued, an IN_PROGRESS one goes back to QUEUED when the
platform starts again (``requeue_in_progress``: at-least-once, the receiver deduplicates by
``request_id``), a finished one whose webhook was not yet delivered is delivered again.

Run status and webhook status are apart (as on Baseten)::

    QUEUED ──► IN_PROGRESS ──► SUCCEEDED ──► WEBHOOK_FAILED   (the run succeeded, its webhook did not)
      │  ▲          │
      │  └──────────┤ (a retry after a model error or an unavailable replica, after its back-off)
      │             ▼
      │           FAILED
      ├──► EXPIRED    (still queued after max_time_in_queue_seconds: never run)
      └──► CANCELED   (DELETE /async_request/{id}, only while QUEUED)

Order: the row with the smallest ``rank`` runs first, ``rank = created_at + priority * aging_seconds``.
That is priority order among requests of the same age, and aging: a priority-2 request waits behind
priority-0 ones made up to ``2 * aging_seconds`` after it, no longer, so it cannot starve.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import secrets
import time
from typing import Any

from trestle.platform.errors import Conflict
from trestle.platform.store.database import Store


class AsyncStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    WEBHOOK_FAILED = "WEBHOOK_FAILED"

    @property
    def finished(self) -> bool:
        return self not in (AsyncStatus.QUEUED, AsyncStatus.IN_PROGRESS)


class WebhookStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    NO_WEBHOOK_PROVIDED = "NO_WEBHOOK_PROVIDED"


A = AsyncStatus

TRANSITIONS: dict[AsyncStatus, frozenset[AsyncStatus]] = {
    A.QUEUED: frozenset({A.IN_PROGRESS, A.EXPIRED, A.CANCELED}),
    A.IN_PROGRESS: frozenset({A.SUCCEEDED, A.FAILED, A.QUEUED}),
    A.SUCCEEDED: frozenset({A.WEBHOOK_FAILED}),
    A.FAILED: frozenset(),
    A.EXPIRED: frozenset(),
    A.CANCELED: frozenset(),
    A.WEBHOOK_FAILED: frozenset(),
}


def check_async_transition(old: AsyncStatus, new: AsyncStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise Conflict(f"an async request cannot go from {old.value} to {new.value}")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS async_requests (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    status TEXT NOT NULL,
    webhook_status TEXT NOT NULL,
    webhook_endpoint TEXT,
    priority INTEGER NOT NULL,
    rank REAL NOT NULL,
    created_at REAL NOT NULL,
    status_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    not_before REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    initial_delay_ms INTEGER NOT NULL,
    max_delay_ms INTEGER NOT NULL,
    model_input BLOB NOT NULL,
    errors TEXT NOT NULL DEFAULT '[]',
    result BLOB,
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at REAL NOT NULL DEFAULT 0,
    started_at REAL
);
CREATE INDEX IF NOT EXISTS async_requests_queue ON async_requests(deployment_id, status, rank);
CREATE INDEX IF NOT EXISTS async_requests_status ON async_requests(status, not_before);
CREATE INDEX IF NOT EXISTS async_requests_webhooks ON async_requests(webhook_status, webhook_next_at);
CREATE TABLE IF NOT EXISTS webhook_secrets (
    secret TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    retired_at REAL
);
"""


@dataclasses.dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 3
    initial_delay_ms: int = 1000
    max_delay_ms: int = 5000

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (exponential, capped)."""
        return float(min(self.max_delay_ms, self.initial_delay_ms * 2 ** max(0, attempts - 1))) / 1000


@dataclasses.dataclass(frozen=True)
class Submission:
    """What ``async_predict`` asks for, checked."""

    model_id: str
    deployment_id: str
    model_input: bytes
    webhook_endpoint: str | None
    priority: int
    max_time_in_queue: float
    retry: RetryConfig


@dataclasses.dataclass(frozen=True)
class AsyncRequest:
    id: str
    model_id: str
    deployment_id: str
    status: AsyncStatus
    webhook_status: WebhookStatus
    webhook_endpoint: str | None
    priority: int
    created_at: float
    status_at: float
    expires_at: float
    attempts: int
    retry: RetryConfig
    model_input: bytes
    errors: list[dict[str, str]]
    result: bytes | None
    webhook_attempts: int
    started_at: float | None


def _request(row: Any) -> AsyncRequest:
    return AsyncRequest(
        id=row["id"],
        model_id=row["model_id"],
        deployment_id=row["deployment_id"],
        status=AsyncStatus(row["status"]),
        webhook_status=WebhookStatus(row["webhook_status"]),
        webhook_endpoint=row["webhook_endpoint"],
        priority=row["priority"],
        created_at=row["created_at"],
        status_at=row["status_at"],
        expires_at=row["expires_at"],
        attempts=row["attempts"],
        retry=RetryConfig(row["max_attempts"], row["initial_delay_ms"], row["max_delay_ms"]),
        model_input=bytes(row["model_input"]),
        errors=json.loads(row["errors"]),
        result=None if row["result"] is None else bytes(row["result"]),
        webhook_attempts=row["webhook_attempts"],
        started_at=row["started_at"],
    )


class AsyncQueue:
    """The queue's reads and writes; every state change is one short transaction."""

    def __init__(self, store: Store, *, aging_seconds: float = 60.0) -> None:
        self.store = store
        self.aging_seconds = aging_seconds
        store.ensure_schema(_SCHEMA)

    # submit, read, cancel --------------------------------------------------------------------

    def submit(self, *, max_queued: int, now: float | None = None, **fields: Any) -> AsyncRequest | None:
        """A new QUEUED request (``Submission``'s fields), or None when ``max_queued`` requests are
        already waiting or running. Waits for the disk: call it off the event loop."""
        return self.submit_many([Submission(**fields)], max_queued=max_queued, now=now)[0]

    def submit_many(
        self, submissions: list[Submission], *, max_queued: int, now: float | None = None
    ) -> list[AsyncRequest | None]:
        """Several submits in one transaction (one wait for the disk: group commit); None for each one
        over ``max_queued``."""
        now = time.time() if now is None else now
        ids: list[str | None] = []
        with self.store.transaction(durable=True) as db:
            (pending,) = db.execute(
                "SELECT COUNT(*) FROM async_requests WHERE status IN ('QUEUED', 'IN_PROGRESS')"
            ).fetchone()
            for sub in submissions:
                if pending >= max_queued:
                    ids.append(None)
                    continue
                pending += 1
                request_id = secrets.token_hex(16)
                webhook = WebhookStatus.PENDING if sub.webhook_endpoint else WebhookStatus.NO_WEBHOOK_PROVIDED
                db.execute(
                    "INSERT INTO async_requests (id, model_id, deployment_id, status, webhook_status,"
                    " webhook_endpoint, priority, rank, created_at, status_at, expires_at, not_before, max_attempts,"
                    " initial_delay_ms, max_delay_ms, model_input)"
                    " VALUES (?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                    (
                        request_id,
                        sub.model_id,
                        sub.deployment_id,
                        webhook.value,
                        sub.webhook_endpoint,
                        sub.priority,
                        now + sub.priority * self.aging_seconds,
                        now,
                        now,
                        now + sub.max_time_in_queue,
                        sub.retry.max_attempts,
                        sub.retry.initial_delay_ms,
                        sub.retry.max_delay_ms,
                        sub.model_input,
                    ),
                )
                ids.append(request_id)
        return [None if request_id is None else self.get(request_id) for request_id in ids]

    def get(self, request_id: str) -> AsyncRequest | None:
        row = self.store.fetch_one("SELECT * FROM async_requests WHERE id = ?", request_id)
        return None if row is None else _request(row)

    def cancel(self, request_id: str, now: float | None = None) -> bool:
        """QUEUED → CANCELED (its webhook is not sent); False when it is not queued any more. Waits for
        the disk (the answer promises it will not run): call it off the event loop."""
        now = time.time() if now is None else now
        with self.store.transaction(durable=True) as db:
            cur = db.execute(
                "UPDATE async_requests SET status = 'CANCELED', status_at = ?,"
                " webhook_status = CASE webhook_status WHEN 'PENDING' THEN 'CANCELED' ELSE webhook_status END"
                " WHERE id = ? AND status = 'QUEUED'",
                (now, request_id),
            )
            return cur.rowcount == 1

    def counts(self, deployment_id: str) -> tuple[int, int]:
        """(queued, in progress) of one deployment."""
        rows = self.store.fetch_all(
            "SELECT status, COUNT(*) AS n FROM async_requests WHERE deployment_id = ?"
            " AND status IN ('QUEUED', 'IN_PROGRESS') GROUP BY status",
            deployment_id,
        )
        by = {row["status"]: row["n"] for row in rows}
        return by.get("QUEUED", 0), by.get("IN_PROGRESS", 0)

    def queued_by_deployment(self, now: float | None = None) -> dict[str, int]:
        """Per deployment, the QUEUED requests that may run now (past their back-off)."""
        now = time.time() if now is None else now
        rows = self.store.fetch_all(
            "SELECT deployment_id, COUNT(*) AS n FROM async_requests WHERE status = 'QUEUED' AND not_before <= ?"
            " GROUP BY deployment_id",
            now,
        )
        return {row["deployment_id"]: row["n"] for row in rows}

    def sizes(self) -> dict[tuple[str, str], int]:
        """(deployment id, status) → count, for the queue-size gauge."""
        rows = self.store.fetch_all(
            "SELECT deployment_id, status, COUNT(*) AS n FROM async_requests"
            " WHERE status IN ('QUEUED', 'IN_PROGRESS') GROUP BY deployment_id, status"
        )
        return {(row["deployment_id"], row["status"]): row["n"] for row in rows}

    # the dispatcher's moves ------------------------------------------------------------------

    def expire(self, now: float | None = None) -> list[AsyncRequest]:
        """QUEUED requests never run and past their time in queue → EXPIRED; returns them."""
        now = time.time() if now is None else now
        error = json.dumps(
            [{"code": "MODEL_NOT_READY", "message": "the request waited longer than its max_time_in_queue_seconds"}]
        )
        with self.store.transaction() as db:
            ids = [
                row["id"]
                for row in db.execute(
                    "SELECT id FROM async_requests WHERE status = 'QUEUED' AND attempts = 0 AND expires_at <= ?",
                    (now,),
                )
            ]
            for request_id in ids:
                db.execute(
                    "UPDATE async_requests SET status = 'EXPIRED', status_at = ?, errors = ? WHERE id = ?",
                    (now, error, request_id),
                )
        return [req for req in map(self.get, ids) if req is not None]

    def claim(self, deployment_id: str, limit: int, now: float | None = None) -> list[AsyncRequest]:
        """Up to ``limit`` of the deployment's due QUEUED requests, lowest rank first, → IN_PROGRESS."""
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            ids = [
                row["id"]
                for row in db.execute(
                    "SELECT id FROM async_requests WHERE deployment_id = ? AND status = 'QUEUED' AND not_before <= ?"
                    " AND (attempts > 0 OR expires_at > ?) ORDER BY rank, created_at LIMIT ?",
                    (deployment_id, now, now, limit),
                )
            ]
            for request_id in ids:
                db.execute(
                    "UPDATE async_requests SET status = 'IN_PROGRESS', status_at = ?, started_at = ?,"
                    " attempts = attempts + 1 WHERE id = ?",
                    (now, now, request_id),
                )
        return [req for req in map(self.get, ids) if req is not None]

    def succeed(self, request_id: str, result: bytes, now: float | None = None) -> None:
        self._finish(request_id, AsyncStatus.SUCCEEDED, [], result, now)

    def fail(self, request_id: str, errors: list[dict[str, str]], now: float | None = None) -> None:
        self._finish(request_id, AsyncStatus.FAILED, errors, None, now)

    def _finish(
        self,
        request_id: str,
        status: AsyncStatus,
        errors: list[dict[str, str]],
        result: bytes | None,
        now: float | None,
    ) -> None:
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            db.execute(
                "UPDATE async_requests SET status = ?, status_at = ?, errors = ?, result = ?, webhook_next_at = ?"
                " WHERE id = ? AND status = 'IN_PROGRESS'",
                (status.value, now, json.dumps(errors), result, now, request_id),
            )

    def retry_later(
        self, request_id: str, delay: float, errors: list[dict[str, str]], now: float | None = None
    ) -> None:
        """IN_PROGRESS → QUEUED again, not before ``delay`` seconds from now."""
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            db.execute(
                "UPDATE async_requests SET status = 'QUEUED', status_at = ?, not_before = ?, errors = ?"
                " WHERE id = ? AND status = 'IN_PROGRESS'",
                (now, now + delay, json.dumps(errors), request_id),
            )

    def requeue_in_progress(self) -> int:
        """At start: what was running when the platform stopped runs again (its attempt is given back)."""
        with self.store.transaction() as db:
            cur = db.execute(
                "UPDATE async_requests SET status = 'QUEUED', attempts = MAX(0, attempts - 1), not_before = 0"
                " WHERE status = 'IN_PROGRESS'"
            )
            return cur.rowcount

    # webhooks --------------------------------------------------------------------------------

    def webhooks_due(self, limit: int, exclude: set[str], now: float | None = None) -> list[AsyncRequest]:
        now = time.time() if now is None else now
        rows = self.store.fetch_all(
            "SELECT * FROM async_requests WHERE webhook_status = 'PENDING' AND webhook_next_at <= ?"
            " AND status IN ('SUCCEEDED', 'FAILED', 'EXPIRED') ORDER BY webhook_next_at LIMIT ?",
            now,
            limit + len(exclude),
        )
        found = [_request(row) for row in rows if row["id"] not in exclude]
        return found[:limit]

    def webhook_done(self, request_id: str, delivered: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            if delivered:
                db.execute(
                    "UPDATE async_requests SET webhook_status = 'SUCCEEDED', webhook_attempts = webhook_attempts + 1"
                    " WHERE id = ?",
                    (request_id,),
                )
            else:
                db.execute(
                    "UPDATE async_requests SET webhook_status = 'FAILED', webhook_attempts = webhook_attempts + 1,"
                    " status = CASE status WHEN 'SUCCEEDED' THEN 'WEBHOOK_FAILED' ELSE status END,"
                    " status_at = ? WHERE id = ?",
                    (now, request_id),
                )

    def webhook_retry(self, request_id: str, at: float) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE async_requests SET webhook_attempts = webhook_attempts + 1, webhook_next_at = ? WHERE id = ?",
                (at, request_id),
            )

    def purge(self, keep_seconds: float, now: float | None = None) -> int:
        """Drop finished requests (and their results) older than ``keep_seconds`` whose webhook is settled."""
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            cur = db.execute(
                "DELETE FROM async_requests WHERE status NOT IN ('QUEUED', 'IN_PROGRESS')"
                " AND webhook_status != 'PENDING' AND status_at <= ?",
                (now - keep_seconds,),
            )
            return cur.rowcount

    # webhook secrets -------------------------------------------------------------------------

    def webhook_secrets(self, now: float | None = None, grace: float = 86400.0) -> list[str]:
        """The current secret first, then those retired less than ``grace`` seconds ago."""
        now = time.time() if now is None else now
        rows = self.store.fetch_all(
            "SELECT secret FROM webhook_secrets WHERE retired_at IS NULL OR retired_at > ?"
            " ORDER BY retired_at IS NOT NULL, created_at DESC",
            now - grace,
        )
        return [row["secret"] for row in rows]

    def set_webhook_secret(self, secret: str, *, retire_current: bool, now: float | None = None) -> None:
        """Make ``secret`` the current one; the old one is kept (signing too) for the grace period when
        ``retire_current``, else dropped."""
        now = time.time() if now is None else now
        with self.store.transaction(durable=True) as db:
            if retire_current:
                db.execute("UPDATE webhook_secrets SET retired_at = ? WHERE retired_at IS NULL", (now,))
            else:
                db.execute("DELETE FROM webhook_secrets WHERE retired_at IS NULL")
            db.execute("DELETE FROM webhook_secrets WHERE secret = ?", (secret,))
            db.execute("INSERT INTO webhook_secrets VALUES (?, ?, NULL)", (secret, now))
