"""Two engines behind the one seam: development deployments on the local engine, the others on a
cluster engine (Ray).

A development deployment (``push --watch``) is live-patched: code edits are hot-reloaded into its
running replicas (``hot_reload``) and config edits restart them, in seconds. On Ray every change
is a new Serve application version (a rolling update that fetches the archive and starts new
replica actors), so the development deployment stays a process on the platform's host, where
patching keeps working, while published deployments, environments and promotion go to the
cluster (``docs/09-engines.md``, *What runs where*).

The engine that placed a deployment answers for it until it is stopped; each engine reports its
own replica events, which reach the controller unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from trestle.platform.engines.base import (
    Engine,
    EventSink,
    HotReloadResult,
    ReplicaSet,
    ReplicaSpec,
    ReplicaState,
    scales_itself,
)
from trestle.platform.store.scaling import Autoscaling


class SplitEngine:
    def __init__(self, cluster: Engine, local: Engine) -> None:
        self.cluster = cluster
        self.local = local
        self.name = cluster.name
        self._placed: dict[str, Engine] = {}  # deployment id -> the engine running it

    def engine_for(self, deployment_id: str) -> Engine | None:
        """The engine that placed the deployment (None when neither runs it)."""
        return self._placed.get(deployment_id)

    def _choose(self, spec: ReplicaSpec) -> Engine:
        engine = self.local if spec.development else self.cluster
        previous = self._placed.get(spec.deployment_id)
        if previous is not None and previous is not engine:
            raise RuntimeError(f"deployment {spec.deployment_id} is already placed on the {previous.name} engine")
        self._placed[spec.deployment_id] = engine
        return engine

    def scales_itself(self, deployment_id: str) -> bool:
        engine = self._placed.get(deployment_id)
        return engine is not None and scales_itself(engine, deployment_id)

    def attach(self, events: EventSink) -> None:
        self.cluster.attach(events)
        self.local.attach(events)

    async def recover(self, keep: Collection[str]) -> None:
        # each reconciles what it runs; a kept deployment the other engine ran is simply absent
        await self.local.recover(keep)
        await self.cluster.recover(keep)

    async def start(self, spec: ReplicaSpec) -> None:
        await self._choose(spec).start(spec)

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        return await self._choose(spec).replace(spec, timeout)

    async def scale(self, deployment_id: str, replicas: int) -> None:
        engine = self._placed.get(deployment_id)
        if engine is not None:
            await engine.scale(deployment_id, replicas)

    async def apply_scaling(self, deployment_id: str, scaling: Autoscaling) -> None:
        engine = self._placed.get(deployment_id)
        if engine is not None:
            await engine.apply_scaling(deployment_id, scaling)

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        engine = self._placed.pop(deployment_id, None)
        engines = [engine] if engine is not None else [self.local, self.cluster]
        for one in engines:
            await one.stop(deployment_id, drain=drain)

    async def terminate(self, deployment_id: str, replica_id: str) -> bool:
        engine = self._placed.get(deployment_id)
        return await engine.terminate(deployment_id, replica_id) if engine is not None else False

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        engine = self._placed.get(deployment_id)
        return engine.replica_set(deployment_id) if engine is not None else None

    def report(self, deployment_id: str) -> list[ReplicaState]:
        engine = self._placed.get(deployment_id)
        return engine.report(deployment_id) if engine is not None else []

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        engine = self._placed.get(deployment_id)
        return await engine.hot_reload(deployment_id) if engine is not None else []

    async def close(self) -> None:
        await asyncio.gather(self.local.close(), self.cluster.close())
