"""The local engine: every replica is a process on this host, watched by a supervisor task.

A supervisor starts its process, polls readiness (fast while loading, then every second), restarts a
crashed process with exponential back-off, reports UNHEALTHY after repeated crashes and FAILED when a
fresh replica never becomes ready. Stopping sends SIGTERM to the replica's process group (the server
drains in-flight requests), then SIGKILL after the drain window. Each replica's pid is recorded under
``<data>/run`` so that a platform that was killed can reap its orphans at its next start
(``recover``, the explicit first step of a platform's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Collection, Coroutine
from pathlib import Path
from typing import Any

import httpx

from trestle.platform.engines.base import (
    EngineContext,
    EventSink,
    HotReloadResult,
    LoadMeter,
    Replica,
    ReplicaEvent,
    ReplicaSet,
    ReplicaSpec,
    ReplicaState,
)
from trestle.platform.engines.gpu_allocator import GpuAllocator, Holder, visible_devices
from trestle.platform.engines.gpu_inventory import Inventory
from trestle.platform.engines.limits import Limits, ResourceLimiter
from trestle.platform.engines.output import why_failed
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.scaling import Autoscaling

REPLICA_MARKER = "TRESTLE_PLATFORM_REPLICA"
_LOADING_POLL = 0.1
_SERVING_POLL = 1.0
_MAX_BACKOFF = 10.0
_CRASHES_FOR_UNHEALTHY = 3
_CRASH_WINDOW = 120.0
_RECENT_LINES = 80
"""A replica's last output lines kept in memory, to say why it did not start (``output.why_failed``)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Supervisor:
    def __init__(self, engine: LocalEngine, spec: ReplicaSpec, rset: ReplicaSet, index: int) -> None:
        self.engine = engine
        self.spec = spec
        self.rset = rset
        self.index = index
        self.replica = Replica(f"{spec.deployment_id}-r{spec.revision}.{index}", 0, rset.meter)
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.gave_up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.recent: deque[str] = deque(maxlen=_RECENT_LINES)
        self.device_env: dict[str, str] = visible_devices(())

    @property
    def limits(self) -> Limits | None:
        res = self.spec.resources
        if not res.limited:
            return None
        return Limits(res.cpu, res.memory_bytes, res.memory_text, address_space=res.gpus == 0)

    def log(self, text: str) -> None:
        self.engine.logs.write(self.spec.deployment_id, self.replica.id, text)

    def emit(self, event: ReplicaEvent, detail: str) -> None:
        if self.engine.replica_set(self.spec.deployment_id) is self.rset and not self.stopping:
            self.engine.events(self.spec.deployment_id, event, detail)

    def set_ready(self, ready: bool) -> None:
        self.replica.ready = ready
        self.rset.refresh()

    async def run(self) -> None:
        try:
            if await self._acquire_gpus():
                await self._supervise()
        finally:
            self.engine.gpus.release(self.replica.id)
            self.engine.limits.release(self.replica.id)

    async def _acquire_gpus(self) -> bool:
        """Hold this replica's GPUs (waiting, with the reason shown, until they are free); False when
        the box can never give them."""
        request = self.spec.resources.gpu_request
        if request is None:
            return True
        try:
            self.engine.gpus.check(request)
        except InvalidRequest as exc:
            self.log(exc.message)
            self.emit(ReplicaEvent.FAILED, exc.message)
            self.gave_up.set()
            return False

        def waiting(reason: str) -> None:
            self.replica.waiting = reason
            self.log(reason)
            self.emit(ReplicaEvent.WAITING, reason)

        granted = await self.engine.gpus.acquire(Holder(self.spec.deployment_id, self.replica.id), request, waiting)
        self.replica.waiting = None
        self.replica.gpus = tuple(gpu.index for gpu in granted)
        self.device_env = visible_devices(granted)
        names = ", ".join(f"{gpu.index} ({gpu.name})" for gpu in granted)
        self.log(f"GPUs {names}: CUDA_VISIBLE_DEVICES={self.device_env['CUDA_VISIBLE_DEVICES']}")
        return True

    def _oom(self, code: int) -> str | None:
        """``OOM: exceeded memory 2Gi`` when the process ended for exceeding its memory limit."""
        limits = self.limits
        if limits is None or code == 0 or not self.engine.limits.oom(self.replica.id, code, self.recent):
            return None
        return f"OOM: exceeded memory {limits.memory_text}"

    async def _supervise(self) -> None:
        ever_ready = False
        failed_starts = 0
        crashes: list[float] = []
        backoff = 0.5
        while not self.stopping:
            became_ready, code = await self._run_once()
            if self.stopping:
                return
            ever_ready = ever_ready or became_ready
            if became_ready:
                backoff = 0.5
            oom = self._oom(code)
            self.engine.limits.after_exit(self.replica.id)
            self.log(f"replica exited with code {code}" + (f": {oom}" if oom else ""))
            if not ever_ready:
                failed_starts += 1
                if failed_starts >= self.engine.max_start_attempts:
                    why = why_failed(self.recent, self.spec.cwd)
                    detail = f"the model server exited with code {code} before it was ready"
                    if oom:
                        detail = f"{oom} ({detail})"
                    self.emit(ReplicaEvent.FAILED, detail + (f"; its last lines:\n{why}" if why else ""))
                    self.gave_up.set()
                    return
            else:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < _CRASH_WINDOW] + [now]
                suffix = f": {oom}" if oom else ""
                self.emit(ReplicaEvent.NOT_READY, f"replica {self.replica.id} exited with code {code}{suffix}")
                if len(crashes) >= _CRASHES_FOR_UNHEALTHY:
                    detail = f"replica crashed {len(crashes)} times in {_CRASH_WINDOW:.0f}s"
                    self.emit(ReplicaEvent.UNHEALTHY, f"{oom}: {detail}" if oom else detail)
            self.log(f"restarting in {backoff:.1f}s")
            if self.replica.meter is not None:
                self.replica.meter.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _run_once(self) -> tuple[bool, int]:
        port = self.spec.fixed_port or free_port()
        self.replica.port = port
        self.replica.url = f"http://127.0.0.1:{port}"
        argv = [part.replace("{port}", str(port)) for part in self.spec.argv]
        env = dict(self.spec.env, **self.device_env, **{REPLICA_MARKER: self.replica.id, "PORT": str(port)})
        self.recent.clear()
        limits = self.limits
        pre_exec = self.engine.limits.prepare(self.replica.id, limits) if limits is not None else None
        self.proc = proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.spec.cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pre_exec,
        )
        pidfile = self.engine.run_dir / f"{self.replica.id}.pid"
        pidfile.write_text(str(proc.pid))
        self.replica.pid = proc.pid
        self.log(f"started pid {proc.pid} on port {port}")
        self.emit(ReplicaEvent.STARTED, f"replica {self.replica.id} started")
        pump = asyncio.create_task(self._pump(proc))
        became_ready = False
        try:
            while proc.returncode is None:
                interval = _SERVING_POLL if became_ready else _LOADING_POLL
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), interval)
                if proc.returncode is not None or self.stopping:
                    break
                ok = await self._probe()
                if ok and not self.replica.ready:
                    became_ready = True
                    self.set_ready(True)
                    self.log("replica is ready")
                    self.emit(ReplicaEvent.READY, f"replica {self.replica.id} is ready")
                elif not ok and self.replica.ready and proc.returncode is None:
                    self.set_ready(False)
                    self.emit(ReplicaEvent.NOT_READY, f"replica {self.replica.id} failed its readiness check")
            code = await proc.wait()
        finally:
            self.set_ready(False)
            if proc.returncode is not None:
                # before any await: a stop() cancels this task right after the process exits
                pidfile.unlink(missing_ok=True)
            await asyncio.wait([pump], timeout=2)
            pidfile.unlink(missing_ok=True)
        return became_ready, code

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.recent.append(line)
            self.log(line)

    async def _probe(self) -> bool:
        try:
            response = await self.engine.http.get(
                self.replica.url + self.spec.routes.readiness, timeout=self.engine.probe_timeout
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def stop(self, drain: bool) -> None:
        self.stopping = True
        self.set_ready(False)
        proc = self.proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM if drain else signal.SIGKILL)
            try:
                await asyncio.wait_for(proc.wait(), self.spec.drain_seconds + 5 if drain else 5)
            except asyncio.TimeoutError:
                self.log("replica did not stop in time; killing it")
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class _Group:
    """One generation of a deployment's replicas: its spec, its replica set and their supervisors."""

    def __init__(self, spec: ReplicaSpec, rset: ReplicaSet) -> None:
        self.spec = spec
        self.rset = rset
        self.supervisors: list[_Supervisor] = []
        self._next_index = 0

    def add(self, engine: LocalEngine, count: int) -> list[_Supervisor]:
        added = []
        for _ in range(count):
            sup = _Supervisor(engine, self.spec, self.rset, self._next_index)
            self._next_index += 1
            added.append(sup)
        self.supervisors.extend(added)
        self.rset.replicas.extend(sup.replica for sup in added)
        return added


def _no_events(deployment_id: str, event: ReplicaEvent, detail: str) -> None:
    """Before ``attach``: nobody listens."""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class LocalEngine:
    """Replicas as processes on this host (the default engine)."""

    name = "local"

    def __init__(self, context: EngineContext, *, probe_timeout: float = 2.0) -> None:
        self.run_dir = context.run_dir
        self.logs = context.logs
        self.events: EventSink = _no_events
        self.max_start_attempts = context.max_start_attempts
        self.gpus = context.gpus or GpuAllocator(Inventory())
        self.limits = context.limits or ResourceLimiter(None)
        self.probe_timeout = probe_timeout
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        self._sets: dict[str, ReplicaSet] = {}
        self._groups: dict[int, _Group] = {}
        self._meters: dict[str, LoadMeter] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, events: EventSink) -> None:
        self.events = events

    async def recover(self, keep: Collection[str]) -> None:
        """Kill replicas left behind by a platform that died without stopping them (all of them:
        the controller places again what it keeps)."""
        await asyncio.to_thread(self.reap_orphans)

    def reap_orphans(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for pidfile in self.run_dir.glob("*.pid"):
            replica_id = pidfile.stem
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                if f"{REPLICA_MARKER}={replica_id}".encode() in environ.split(b"\0"):
                    _signal_group(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)

    def report(self, deployment_id: str) -> list[ReplicaState]:
        rset = self._sets.get(deployment_id)
        return rset.states() if rset is not None else []

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return self._sets.get(deployment_id)

    def _spawn(self, spec: ReplicaSpec) -> tuple[ReplicaSet, list[_Supervisor]]:
        meter = self._meters.setdefault(spec.deployment_id, LoadMeter())
        rset = ReplicaSet(spec.deployment_id, spec.routes, meter)
        group = _Group(spec, rset)
        self._groups[id(rset)] = group
        supervisors = group.add(self, 1 if spec.fixed_port else max(1, spec.replicas))
        return rset, supervisors

    def _launch(self, supervisors: list[_Supervisor]) -> None:
        for sup in supervisors:
            sup.task = asyncio.create_task(sup.run(), name=f"supervisor {sup.replica.id}")

    async def start(self, spec: ReplicaSpec) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if spec.deployment_id in self._sets:
            await self.stop(spec.deployment_id, drain=False)
        rset, supervisors = self._spawn(spec)
        self._sets[spec.deployment_id] = rset
        self._launch(supervisors)

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        old = self._sets.get(spec.deployment_id)
        if old is None or spec.fixed_port is not None or spec.resources.gpus > 0:
            # a fixed port cannot be shared by two generations, nor can exclusive GPUs: stop, then start
            await self.stop(spec.deployment_id)
            await self.start(spec)
            return True
        rset, supervisors = self._spawn(spec)
        self._launch(supervisors)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # the new generation takes over once every one of its replicas is ready
        while not all(replica.ready for replica in rset.replicas):
            if any(sup.gave_up.is_set() for sup in supervisors) or loop.time() > deadline:
                await self._stop_group(rset, drain=False)
                return False
            await asyncio.sleep(0.05)
        self._sets[spec.deployment_id] = rset
        self._background(self._stop_group(old, drain=True))
        return True

    async def apply_scaling(self, deployment_id: str, scaling: Autoscaling) -> None:
        """Nothing: the controller's autoscaler scales local replicas (``scale``)."""

    async def scale(self, deployment_id: str, replicas: int) -> None:
        rset = self._sets.get(deployment_id)
        group = self._groups.get(id(rset)) if rset is not None else None
        if rset is None or group is None:
            return
        wanted = 1 if group.spec.fixed_port else max(1, replicas)
        current = len(group.supervisors)
        if wanted > current:
            self._launch(group.add(self, wanted - current))
            self.logs.write(deployment_id, "platform", f"scaling up: {current} → {wanted} replicas")
        elif wanted < current:
            # surplus: replicas not ready first, then the least busy, newest first
            ranked = sorted(
                group.supervisors,
                key=lambda sup: (sup.replica.ready, sup.replica.outstanding, -sup.index),
            )
            surplus = ranked[: current - wanted]
            for sup in surplus:
                group.supervisors.remove(sup)
                rset.replicas.remove(sup.replica)
            rset.refresh()
            self.logs.write(deployment_id, "platform", f"scaling down: {current} → {wanted} replicas (draining)")
            for sup in surplus:
                self._background(sup.stop(drain=True))

    async def terminate(self, deployment_id: str, replica_id: str) -> bool:
        rset = self._sets.get(deployment_id)
        group = self._groups.get(id(rset)) if rset is not None else None
        sup = next((s for s in group.supervisors if s.replica.id == replica_id), None) if group else None
        if rset is None or group is None or sup is None:
            return False
        group.supervisors.remove(sup)
        rset.replicas.remove(sup.replica)
        rset.refresh()
        self.logs.write(deployment_id, "platform", f"replica {replica_id} terminated on request; starting another")
        self._launch(group.add(self, 1))
        await sup.stop(drain=False)
        return True

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_group(self, rset: ReplicaSet, *, drain: bool) -> None:
        group = self._groups.pop(id(rset), None)
        if group is not None:
            await asyncio.gather(*(sup.stop(drain) for sup in group.supervisors))

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        rset = self._sets.pop(deployment_id, None)
        self._meters.pop(deployment_id, None)
        if rset is not None:
            await self._stop_group(rset, drain=drain)

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        """Hot-reload the ready replicas; one still loading (or restarting) reads the new files anyway."""
        rset = self._sets.get(deployment_id)
        if rset is None:
            return []
        ready = [replica for replica in rset.replicas if replica.ready]
        return list(await asyncio.gather(*(self._hot_reload_one(replica) for replica in ready)))

    async def _hot_reload_one(self, replica: Replica) -> HotReloadResult:
        try:
            response = await self.http.post(replica.url + "/hot-reload", timeout=120.0)
        except httpx.HTTPError as exc:
            return HotReloadResult(replica.id, False, f"replica unreachable: {exc!r}")
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if not isinstance(body, dict):
            body = {"error": str(body)}
        if response.status_code == 200:
            return HotReloadResult(replica.id, True, str(body.get("msg", "Hot reload complete")))
        traceback = body.get("traceback")
        return HotReloadResult(
            replica.id,
            False,
            str(body.get("error", response.text)),
            traceback if isinstance(traceback, str) else None,
        )

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(dep) for dep in list(self._sets)))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
