"""Closes a step of the metric history (``history.py``) for every deployment every ``step`` seconds, on
the wall clock's multiples of it: what the gateway counted since the last step (``traffic.py``), the
replica sets' readiness and load meter, and the replica processes' CPU and memory and their GPUs' use
(read in a thread: ``/proc`` and NVML are blocking calls)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from trestle.platform.control.histogram import Histogram
from trestle.platform.control.history import MetricHistory, Step, deployment_key, environment_key
from trestle.platform.control.routing import RouteTable
from trestle.platform.control.traffic import Traffic
from trestle.platform.engines.base import Engine, ReplicaSet
from trestle.platform.engines.gpu_inventory import Inventory
from trestle.platform.engines.usage import usage_of
from trestle.platform.store.states import DEVELOPMENT, DeploymentStatus

logger = logging.getLogger("trestle.platform")


@dataclasses.dataclass
class _Reading:
    """A deployment's cumulative counters at the end of the previous step."""

    at: float
    busy: float = 0.0
    statuses: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0, 0])
    latency: Histogram = dataclasses.field(default_factory=Histogram)
    first_byte: Histogram = dataclasses.field(default_factory=Histogram)
    restarts: int = 0


class MetricsSampler:
    def __init__(
        self,
        history: MetricHistory,
        traffic: Traffic,
        routes: RouteTable,
        engine: Engine,
        inventory: Inventory | None = None,
    ) -> None:
        self.history = history
        self.traffic = traffic
        self.routes = routes
        self.engine = engine
        self.inventory = inventory
        self._last: dict[str, _Reading] = {}
        self._cpu: dict[int, float] = {}
        """CPU seconds per replica pid at the previous step."""

    async def run(self) -> None:
        step = self.history.step
        while True:
            await asyncio.sleep(step - time.time() % step + 0.01)
            try:
                await self.sample(time.time())
            except Exception as exc:  # the loop outlives any one step's trouble
                logger.exception("metric history step failed: %r", exc)

    async def sample(self, now: float) -> None:
        """Close the step that ends at ``now``."""
        step = self.history.step
        start = int(now) - int(now) % step - step
        sets = {dep_id: self.engine.replica_set(dep_id) for dep_id in self.routes.status}
        pids = [r.pid for rset in sets.values() if rset is not None for r in rset.replicas if r.pid]
        want_gpus = self.inventory is not None and any(
            r.gpus for rset in sets.values() if rset is not None for r in rset.replicas
        )
        processes, gpus = await asyncio.to_thread(self._read_resources, pids, want_gpus)
        environments = self._environments()
        for dep_id, rset in sets.items():
            made = self._step(dep_id, rset, start, now, processes, gpus)
            if made is not None:
                self.history.record([deployment_key(dep_id), *environments.get(dep_id, ())], made)
        self._prune(set(sets))

    def _read_resources(self, pids: list[int], want_gpus: bool) -> tuple[dict[int, tuple[float, int]], dict[int, Any]]:
        processes = usage_of(pids)
        gpus: dict[int, Any] = {}
        if want_gpus and self.inventory is not None:
            try:
                gpus = dict(self.inventory.usage())
            except Exception as exc:  # NVML hiccups must not stop the history
                logger.warning("GPU usage unreadable: %r", exc)
        return processes, gpus

    def _environments(self) -> dict[str, list[str]]:
        """Per deployment, the history keys of the environments it serves now."""
        out: dict[str, list[str]] = {}
        for model in self.routes.models():
            named = dict(model.environments)
            if model.development is not None:
                named[DEVELOPMENT] = model.development
            for name, dep_id in named.items():
                if dep_id is not None:
                    out.setdefault(dep_id, []).append(environment_key(model.model_id, name))
        return out

    def _step(
        self,
        dep_id: str,
        rset: ReplicaSet | None,
        start: int,
        now: float,
        processes: dict[int, tuple[float, int]],
        gpus: dict[int, Any],
    ) -> Step | None:
        step_seconds = float(self.history.step)
        last = self._last.get(dep_id)
        traffic = self.traffic.get(dep_id)
        busy = rset.meter.busy_total() if rset is not None else (last.busy if last else 0.0)
        restarts = rset.meter.restarts if rset is not None else (last.restarts if last else 0)
        reading = _Reading(
            at=now,
            busy=busy,
            statuses=traffic.by_class() if traffic is not None else [0, 0, 0, 0],
            latency=traffic.latency.copy() if traffic is not None else Histogram(),
            first_byte=traffic.first_byte.copy() if traffic is not None else Histogram(),
            restarts=restarts,
        )
        self._last[dep_id] = reading
        if last is None:
            last = _Reading(at=now - step_seconds)
        step = Step(start, step_seconds)
        step.statuses = [max(0, a - b) for a, b in zip(reading.statuses, last.statuses, strict=True)]
        served = sum(step.statuses)
        if served:
            step.latency = reading.latency.minus(last.latency)
            step.first_byte = reading.first_byte.minus(last.first_byte)
        step.restarts = max(0, reading.restarts - last.restarts)
        idle = self.routes.status.get(dep_id) is DeploymentStatus.SCALED_TO_ZERO
        if rset is None and not served and not idle:
            return None  # not running, nothing answered: a gap in the chart, not a row of zeros
        elapsed = max(1e-6, now - last.at)
        ready = rset.ready_count if rset is not None else 0
        step.set_gauge("baseten_replicas_active", ready)
        step.set_gauge("baseten_replicas_starting", (len(rset.replicas) - ready) if rset is not None else 0)
        step.set_gauge("baseten_concurrent_requests", max(0.0, busy - last.busy) / elapsed)
        if rset is not None:
            self._resources(step, rset, elapsed, processes, gpus)
        return step

    def _resources(
        self,
        step: Step,
        rset: ReplicaSet,
        elapsed: float,
        processes: dict[int, tuple[float, int]],
        gpus: dict[int, Any],
    ) -> None:
        cores = 0.0
        memory = 0
        measured = False
        held: set[int] = set()
        for replica in rset.replicas:
            held.update(replica.gpus)
            found = processes.get(replica.pid) if replica.pid else None
            if found is None or replica.pid is None:
                continue
            measured = True
            cpu, rss = found
            before = self._cpu.get(replica.pid)
            if before is not None:
                cores += max(0.0, cpu - before) / elapsed
            self._cpu[replica.pid] = cpu
            memory += rss
        if measured:
            step.set_gauge("baseten_container_cpu_usage_seconds_total", cores)
            step.set_gauge("baseten_container_cpu_memory_working_set_bytes", float(memory))
        used = [gpus[i] for i in held if i in gpus]
        utilization = [u.utilization_percent for u in used if u.utilization_percent is not None]
        memory_mib = [u.memory_used_mib for u in used if u.memory_used_mib is not None]
        if utilization:
            step.set_gauge("baseten_gpu_utilization", sum(utilization) / len(utilization) / 100.0)
        if memory_mib:
            step.set_gauge("baseten_gpu_memory_used", float(sum(memory_mib)))

    def _prune(self, deployments: set[str]) -> None:
        for dep_id in [dep_id for dep_id in self._last if dep_id not in deployments]:
            del self._last[dep_id]
            self.traffic.forget(dep_id)
            self.history.forget(deployment_key(dep_id))
        for key in self.history.tracked():
            if key.startswith("environment:") and not self._model_exists(key):
                self.history.forget(key)
        alive = {r.pid for dep_id in deployments if (rs := self.engine.replica_set(dep_id)) for r in rs.replicas}
        for pid in [pid for pid in self._cpu if pid not in alive]:
            del self._cpu[pid]

    def _model_exists(self, key: str) -> bool:
        model_id = key[len("environment:") :].split("/", 1)[0]
        return self.routes.model(model_id) is not None
