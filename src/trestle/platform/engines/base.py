"""The seam between the control plane and whatever runs replicas (``docs/09-engines.md``).

An engine places, replaces, scales and stops the replicas of a ``ReplicaSpec`` and reports what
happens to them as ``ReplicaEvent``s to the sink it is attached to; the gateway asks it for a
deployment's ``ReplicaSet`` and picks a replica from it; replica output goes to the deployment log
(the ``LogHub`` in its ``EngineContext``). Engines are chosen by name (``registry.py``); the local
engine (``local.py``) runs replicas as processes on this host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Protocol

from trestle.platform.engines.gpu_allocator import GpuAllocator, GpuRequest
from trestle.platform.engines.limits import ResourceLimiter
from trestle.platform.store.logs import LogHub
from trestle.platform.store.scaling import Autoscaling
from trestle.platform.store.truss import ServerRoutes

__all__ = [
    "Engine",
    "EngineContext",
    "EventSink",
    "HotReloadResult",
    "LoadMeter",
    "LoadSample",
    "NoReplica",
    "Replica",
    "ReplicaEvent",
    "ReplicaSet",
    "ReplicaSpec",
    "ReplicaState",
    "ServerRoutes",
    "scales_itself",
]


@dataclasses.dataclass(frozen=True)
class ReplicaResources:
    """What one replica asks for (``resources`` in config.yaml)."""

    cpu: float = 1.0
    memory_bytes: int = 2 << 30
    accelerator: str | None = None
    """The accelerator type (``A10G``), None for none."""
    gpus: int = 0
    limited: bool = False
    """Whether the truss set ``cpu`` or ``memory`` itself (the local engine enforces only those)."""
    memory_text: str = "2Gi"
    """``memory`` as written (``2Gi``), for messages such as ``OOM: exceeded memory 2Gi``."""

    @property
    def gpu_request(self) -> GpuRequest | None:
        return GpuRequest(self.gpus, self.accelerator) if self.gpus > 0 else None


@dataclasses.dataclass(frozen=True)
class ReplicaSpec:
    """What to run for one deployment. ``{port}`` in ``argv`` is replaced by each replica's port.

    ``argv``, ``cwd`` and ``env`` are for engines that start the model server themselves (local);
    a cluster engine ships ``artifact`` and builds its replicas from the fields after it."""

    deployment_id: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    replicas: int = 1
    routes: ServerRoutes = ServerRoutes()
    fixed_port: int | None = None
    drain_seconds: float = 30.0
    revision: int = 0
    artifact: str = ""
    """The content-addressed truss archive (sha256) the deployment runs."""
    scaling: Autoscaling = Autoscaling()
    resources: ReplicaResources = ReplicaResources()
    predict_concurrency: int = 1
    requirements: tuple[str, ...] = ()
    environment_variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The truss's own ``environment_variables`` plus the platform's (secrets dir ...), not the host's."""
    environment: str | None = None
    """The environment the deployment serves (its dynamic config), None for none."""
    development: bool = False
    """The development deployment (live-patched): kept on the local engine beside a cluster."""
    start_command: str | None = None
    """A ``docker_server`` truss's own server command (``argv`` runs it on the local engine; a cluster
    replica starts it beside itself, on ``fixed_port``, and relays to it)."""


class ReplicaEvent(enum.Enum):
    WAITING = "waiting"  # a replica waits for resources (GPUs) before it can start; detail says why
    STARTED = "started"  # a process is up, the model is loading
    READY = "ready"  # a replica passes its readiness check
    NOT_READY = "not_ready"  # a ready replica stopped passing it (or died)
    UNHEALTHY = "unhealthy"  # a replica crashed repeatedly after having served
    FAILED = "failed"  # replicas never became ready (load failed); the engine gave up
    SCALED_TO_ZERO = "scaled_to_zero"  # an engine that scales itself (Ray Serve) took the last replica away


EventSink = Callable[[str, ReplicaEvent, str], None]
"""(deployment id, event, human-readable detail)."""


@dataclasses.dataclass(frozen=True)
class LoadSample:
    """A reading of a deployment's load meter (see ``LoadMeter.sample``)."""

    at: float
    """When it was taken (``time.monotonic``)."""
    busy: float
    """Cumulative request-seconds in flight up to ``at`` (the integral of the in-flight count)."""
    peak: int
    """The highest in-flight count since the previous sample (at least the count at that sample)."""


class LoadMeter:
    """In-flight requests of one deployment, integrated over time, for the autoscaler.

    The gateway calls ``begin``/``end`` around every proxied request; ``sample`` reads the cumulative
    busy time, so the average concurrency over any window is the difference of two samples divided by
    the window: no request is missed however short it is.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.in_flight = 0
        self.requests = 0
        """Requests begun since the replica set was made (``baseten_inference_requests_total``)."""
        self.async_requests = 0
        """Of those, the async queue's runs (the gateway's ``call``; ``is_async="true"``)."""
        self.restarts = 0
        """Replicas restarted after they exited (``baseten_container_restarts_total``)."""
        self._busy = 0.0
        self._since = clock()
        self._peak = 0

    def _advance(self) -> float:
        now = self.clock()
        self._busy += self.in_flight * (now - self._since)
        self._since = now
        return now

    def begin(self) -> None:
        self._advance()
        self.in_flight += 1
        self.requests += 1
        if self.in_flight > self._peak:
            self._peak = self.in_flight

    def end(self) -> None:
        self._advance()
        self.in_flight -= 1

    def busy_total(self) -> float:
        """The cumulative request-seconds in flight up to now (read without starting a new sample)."""
        self._advance()
        return self._busy

    def sample(self) -> LoadSample:
        now = self._advance()
        reading = LoadSample(at=now, busy=self._busy, peak=self._peak)
        self._peak = self.in_flight
        return reading


class Replica:
    __slots__ = ("gpus", "id", "meter", "outstanding", "pid", "port", "ready", "url", "waiting")

    def __init__(self, replica_id: str, port: int, meter: LoadMeter | None = None) -> None:
        self.id = replica_id
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready = False
        self.outstanding = 0
        self.meter = meter
        self.waiting: str | None = None
        """Why it has not started yet (``waiting for 1 x H100: 0 free``); None once it runs."""
        self.gpus: tuple[int, ...] = ()
        """The indices of the GPUs it holds."""
        self.pid: int | None = None
        """Its process on this host (the local engine's), for the metric history's CPU and memory."""

    def begin(self) -> None:
        """A request was sent to this replica (the gateway calls ``end`` when it is over)."""
        self.outstanding += 1
        if self.meter is not None:
            self.meter.begin()

    def end(self) -> None:
        self.outstanding -= 1
        if self.meter is not None:
            self.meter.end()


class NoReplica(Exception):
    """No ready replica appeared within the wait."""


@dataclasses.dataclass(frozen=True)
class ReplicaState:
    """One replica as ``trestle deployments`` shows it."""

    id: str
    ready: bool
    in_flight: int
    waiting: str | None = None
    gpus: tuple[int, ...] = ()


class ReplicaSet:
    """The replicas of one deployment, as the gateway sees them."""

    def __init__(self, deployment_id: str, routes: ServerRoutes, meter: LoadMeter | None = None) -> None:
        self.deployment_id = deployment_id
        self.routes = routes
        self.meter = meter or LoadMeter()
        self.replicas: list[Replica] = []
        self._ready = asyncio.Event()
        self._rr = itertools.count()

    def refresh(self) -> None:
        """Call after changing any replica's ``ready`` flag."""
        if any(replica.ready for replica in self.replicas):
            self._ready.set()
        else:
            self._ready.clear()

    @property
    def any_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def ready_count(self) -> int:
        return sum(1 for replica in self.replicas if replica.ready)

    def states(self) -> list[ReplicaState]:
        return [
            ReplicaState(replica.id, replica.ready, replica.outstanding, replica.waiting, replica.gpus)
            for replica in self.replicas
        ]

    def pick(self) -> Replica | None:
        """The ready replica with the fewest outstanding requests (ties broken round-robin)."""
        best: Replica | None = None
        ready = [replica for replica in self.replicas if replica.ready]
        if not ready:
            return None
        offset = next(self._rr) % len(ready)
        for replica in ready[offset:] + ready[:offset]:
            if best is None or replica.outstanding < best.outstanding:
                best = replica
        return best

    async def acquire(self, timeout: float) -> Replica:
        replica = self.pick()
        if replica is not None:
            return replica
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoReplica(self.deployment_id)
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except asyncio.TimeoutError:
                raise NoReplica(self.deployment_id) from None
            replica = self.pick()
            if replica is not None:
                return replica


@dataclasses.dataclass(frozen=True)
class HotReloadResult:
    replica_id: str
    ok: bool
    message: str
    traceback: str | None = None


@dataclasses.dataclass(frozen=True)
class EngineContext:
    """What every engine is made with (see ``registry.create``)."""

    run_dir: Path
    """A directory of its own for run-time state (the local engine's pid files)."""
    logs: LogHub
    """Where replica output goes: the deployment log that ``trestle logs`` reads."""
    max_start_attempts: int = 2
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Engine-specific settings by name (``--ray-address`` ...)."""
    gpus: GpuAllocator | None = None
    """This host's GPUs, for an engine that runs replicas on it (the local engine)."""
    limits: ResourceLimiter | None = None
    """How CPU and memory limits are applied on this host (the local engine)."""


def scales_itself(engine: object, deployment_id: str) -> bool:
    """Whether ``engine`` scales the deployment's replicas itself (Ray Serve's autoscaler), so that
    the controller's autoscaler leaves it alone: an engine's ``scales_itself(id)`` if it has one,
    else its ``autoscales`` attribute (False when it has neither)."""
    check = getattr(engine, "scales_itself", None)
    if callable(check):
        return bool(check(deployment_id))
    return bool(getattr(engine, "autoscales", False))


class Engine(Protocol):
    """What the controller asks of an engine; every engine implements all of it."""

    name: str

    def attach(self, events: EventSink) -> None:
        """Where ``ReplicaEvent``s go from now on (the controller attaches itself once)."""

    async def recover(self, keep: Collection[str]) -> None:
        """At platform start, before anything is placed: reconcile with what already runs. The local
        engine kills replicas a dead platform left behind; a cluster engine removes what it runs for
        deployments not in ``keep``."""

    async def start(self, spec: ReplicaSpec) -> None:
        """Place the replicas of a deployment that has none running."""

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        """Start a new set of replicas next to the running ones and switch to it once ready.

        Returns False (the old set keeps serving) when the new set does not become ready.
        """

    async def scale(self, deployment_id: str, replicas: int) -> None:
        """Run ``replicas`` (at least 1) replicas of a running deployment: start new ones beside the
        running ones, or drain and stop the surplus. Nothing happens when none are running."""

    async def apply_scaling(self, deployment_id: str, scaling: Autoscaling) -> None:
        """New scaling settings for a placed deployment. Called only on an engine that ``autoscales``
        (scales its replicas itself); for the others the controller's autoscaler calls ``scale``."""

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        """Stop a deployment's replicas; with ``drain`` in-flight requests finish first."""

    async def terminate(self, deployment_id: str, replica_id: str) -> bool:
        """Stop one replica now (not drained) and start a replacement, so the count stays (Baseten's
        terminate-replica). False when the deployment has no such replica."""

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        """The deployment's replicas as the gateway routes to them; None when none are placed."""

    def report(self, deployment_id: str) -> list[ReplicaState]:
        """The state of each of the deployment's replicas (empty when none are placed)."""

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        """Ask every replica to re-import the model code without re-running ``load``."""

    async def close(self) -> None:
        """Stop every replica this engine placed (the platform is shutting down)."""
