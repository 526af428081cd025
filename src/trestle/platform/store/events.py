"""The platform's events feed: pushes, promotions, patches, status changes, crashes and restarts,
scale changes, each a row of the ``events`` table (on the platform's database) with its time.

The controller records them where it prints its terminal line (``control/controller.py``); the API
(``edge/event_feed.py``) lists them and streams new ones (server-sent events). The table keeps the
newest ``KEEP`` rows. Subscribers are asyncio queues, fed on the loop that serves the platform; a
subscriber too slow to read is dropped from the stream (its client reconnects and lists what it missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from trestle.platform.store.database import Store

KEEP = 10_000
"""Rows kept; older ones are deleted as new ones come."""
QUEUE_SIZE = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    model_id TEXT,
    deployment_id TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_model ON events(model_id, seq);
"""


class EventKind(str, enum.Enum):
    PUSH = "push"
    PROMOTE = "promote"
    PATCH = "patch"
    STATUS = "status"
    CRASH = "crash"
    REPLICA = "replica"  # a replica became ready while its deployment serves: restarted after a crash, or added
    SCALE = "scale"
    DEACTIVATE = "deactivate"
    ACTIVATE = "activate"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True)
class Event:
    seq: int
    at: float
    kind: str
    level: str
    model_id: str | None
    deployment_id: str | None
    message: str

    def view(self) -> dict[str, Any]:
        """The event as the API shows it (``at`` in epoch seconds, ``at_epoch_millis`` too)."""
        return {**dataclasses.asdict(self), "at_epoch_millis": round(self.at * 1000)}


class EventLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema(_SCHEMA)
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._count = 0
        self._closed = False

    def record(
        self,
        kind: EventKind,
        message: str,
        *,
        model_id: str | None = None,
        deployment_id: str | None = None,
        level: str = "info",
    ) -> Event:
        now = time.time()
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (at, kind, level, model_id, deployment_id, message) VALUES (?, ?, ?, ?, ?, ?)",
                (now, kind.value, level, model_id, deployment_id, message),
            )
            seq = int(cursor.lastrowid or 0)
            self._count += 1
            if self._count % 500 == 0:
                db.execute("DELETE FROM events WHERE seq <= ?", (seq - KEEP,))
        event = Event(seq, now, kind.value, level, model_id, deployment_id, message)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._end(queue)  # too far behind
        return event

    def _end(self, queue: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(queue)
        with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)  # tells the reader its stream ends

    def close(self) -> None:
        """End every follower's stream (the platform is stopping: an open stream would hold its drain)."""
        self._closed = True
        for queue in list(self._subscribers):
            self._end(queue)

    def list(self, *, model_id: str | None = None, after: int = 0, limit: int = 100) -> list[Event]:
        """The newest ``limit`` events (of one model, or all) with a sequence number above ``after``,
        newest first."""
        sql = "SELECT * FROM events WHERE seq > ?"
        args: list[Any] = [after]
        if model_id is not None:
            sql += " AND model_id = ?"
            args.append(model_id)
        rows = self.store.fetch_all(sql + " ORDER BY seq DESC LIMIT ?", *args, limit)
        return [Event(**dict(row)) for row in rows]

    @contextlib.contextmanager
    def _subscription(self) -> Iterator[asyncio.Queue[Event | None]]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def follow(self, *, model_id: str | None = None, heartbeat: float = 15.0) -> AsyncIterator[Event | None]:
        """New events as they are recorded; None every ``heartbeat`` seconds without one (the stream
        sends a comment then, so proxies keep it open). Ends when the reader fell too far behind, or at
        ``close``."""
        if self._closed:
            return
        with self._subscription() as queue:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if event is None:
                    return
                if model_id is None or event.model_id == model_id:
                    yield event
