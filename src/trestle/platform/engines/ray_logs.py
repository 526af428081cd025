"""Replica output from a Ray cluster into the deployment log, so that ``trestle logs`` shows it.

Each Serve replica is a Ray actor; its stdout and stderr (the model server's log, the model's
prints, Serve's access lines) are files on the node it runs on, which the dashboard's log API
streams (``GET /api/v0/logs/stream?actor_id=...&suffix=out|err``) from any node. The engine's poll
tells ``ReplicaLogs`` which actors each deployment runs; it follows every new one (two streams:
out and err) and stops following the ones that are gone. A replica the platform adopts after a
restart is followed from its end, so its earlier lines are not written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any

import httpx

from trestle.platform.store.logs import LogHub

STREAM = "/api/v0/logs/stream"
FOLLOW_INTERVAL_S = 0.5
_RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:", ":task_attempt_start:", ":task_attempt_end:")
"""Lines Ray writes into worker logs for itself."""


@dataclasses.dataclass(frozen=True)
class ReplicaActor:
    """A Serve replica as the applications API describes it."""

    replica_id: str
    actor_id: str


def replica_actors(details: Any, deployment: str) -> list[ReplicaActor]:
    """The running actors of ``deployment`` in one application's details (the Serve REST body)."""
    if not isinstance(details, dict):
        return []
    replicas = ((details.get("deployments") or {}).get(deployment) or {}).get("replicas") or []
    actors = []
    for replica in replicas:
        actor_id = replica.get("actor_id")
        if actor_id and replica.get("state") in ("STARTING", "UPDATING", "RECOVERING", "RUNNING"):
            actors.append(ReplicaActor(str(replica.get("replica_id", actor_id)), str(actor_id)))
    return actors


class ReplicaLogs:
    def __init__(self, http: httpx.AsyncClient, logs: LogHub) -> None:
        self.http = http
        self.logs = logs
        self._followers: dict[str, dict[str, list[asyncio.Task[None]]]] = {}  # deployment -> actor -> tasks

    def sync(self, deployment_id: str, actors: Iterable[ReplicaActor], *, from_end: bool = False) -> None:
        """Follow the actors not yet followed, stop following those not in ``actors``; ``from_end``:
        new ones were running before the platform started (adopted), so skip what they wrote."""
        followed = self._followers.setdefault(deployment_id, {})
        current = {actor.actor_id: actor for actor in actors}
        for actor_id in list(followed):
            if actor_id not in current:
                for task in followed.pop(actor_id):
                    task.cancel()
        loop = asyncio.get_running_loop()
        for actor_id, actor in current.items():
            if actor_id in followed:
                continue
            followed[actor_id] = [
                loop.create_task(self._follow(deployment_id, actor, suffix, from_end), name=f"ray log {actor_id}")
                for suffix in ("out", "err")
            ]

    def stop(self, deployment_id: str) -> None:
        for tasks in self._followers.pop(deployment_id, {}).values():
            for task in tasks:
                task.cancel()

    async def close(self) -> None:
        tasks = [task for followed in self._followers.values() for group in followed.values() for task in group]
        self._followers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(self, deployment_id: str, actor: ReplicaActor, suffix: str, from_end: bool) -> None:
        params = {
            "actor_id": actor.actor_id,
            "suffix": suffix,
            "lines": 1 if from_end else -1,
            "interval": FOLLOW_INTERVAL_S,
        }
        source = f"replica {actor.replica_id}"
        skip = 1 if from_end else 0  # the one line of the tail asked for: written before the restart
        pending = b""
        try:
            async with self.http.stream(
                "GET", STREAM, params=params, timeout=httpx.Timeout(None, connect=5.0)
            ) as response:
                if response.status_code != 200:
                    return  # the actor is gone, or the node's agent cannot serve its logs
                async for chunk in response.aiter_bytes():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        line = raw.decode("utf-8", "replace").rstrip("\r")
                        if skip:
                            skip -= 1
                            continue
                        if line and not line.startswith(_RAY_MARKERS):
                            self.logs.write(deployment_id, source, line)
        except httpx.HTTPError:
            return  # the dashboard went away (a head restart); the next poll follows the new actors
