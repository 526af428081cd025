"""The local engine: every replica is a process on this host, watched by a supervisor task.

A supervisor starts its process, polls readiness (fast while loading, then every second), restarts a
crashed process with exponential back-off, reports UNHEALTHY after repeated crashes and FAILED when a
fresh replica never becomes ready. Stopping sends SIGTERM to the replica's process group (the server
drains in-flight requests), then SIGKILL after the drain window. Each replica's pid is recorded under
``<data>/run`` so that a platform that was killed can reap its orphans on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from trestle.platform.engine import (
    EventSink,
    HotReloadResult,
    Replica,
    ReplicaEvent,
    ReplicaSet,
    ReplicaSpec,
)
from trestle.platform.logs import LogHub

REPLICA_MARKER = "TRESTLE_PLATFORM_REPLICA"
_LOADING_POLL = 0.1
_SERVING_POLL = 1.0
_MAX_BACKOFF = 10.0
_CRASHES_FOR_UNHEALTHY = 3
_CRASH_WINDOW = 120.0


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
        self.replica = Replica(f"{spec.deployment_id}-r{spec.revision}.{index}", 0)
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.gave_up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def log(self, text: str) -> None:
        self.engine.logs.write(self.spec.deployment_id, self.replica.id, text)

    def emit(self, event: ReplicaEvent, detail: str) -> None:
        if self.engine.replica_set(self.spec.deployment_id) is self.rset and not self.stopping:
            self.engine.events(self.spec.deployment_id, event, detail)

    def set_ready(self, ready: bool) -> None:
        self.replica.ready = ready
        self.rset.refresh()

    async def run(self) -> None:
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
            self.log(f"replica exited with code {code}")
            if not ever_ready:
                failed_starts += 1
                if failed_starts >= self.engine.max_start_attempts:
                    self.emit(ReplicaEvent.FAILED, f"the model server exited with code {code} before it was ready")
                    self.gave_up.set()
                    return
            else:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < _CRASH_WINDOW] + [now]
                self.emit(ReplicaEvent.NOT_READY, f"replica {self.replica.id} exited with code {code}")
                if len(crashes) >= _CRASHES_FOR_UNHEALTHY:
                    self.emit(ReplicaEvent.UNHEALTHY, f"replica crashed {len(crashes)} times in {_CRASH_WINDOW:.0f}s")
            self.log(f"restarting in {backoff:.1f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _run_once(self) -> tuple[bool, int]:
        port = self.spec.fixed_port or free_port()
        self.replica.port = port
        self.replica.url = f"http://127.0.0.1:{port}"
        argv = [part.replace("{port}", str(port)) for part in self.spec.argv]
        env = dict(self.spec.env, **{REPLICA_MARKER: self.replica.id, "PORT": str(port)})
        self.proc = proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.spec.cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        pidfile = self.engine.run_dir / f"{self.replica.id}.pid"
        pidfile.write_text(str(proc.pid))
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
            await asyncio.wait([pump], timeout=2)
            pidfile.unlink(missing_ok=True)
        return became_ready, code

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.log(raw.decode(errors="replace").rstrip())

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


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class LocalEngine:
    def __init__(
        self,
        run_dir: Path,
        logs: LogHub,
        events: EventSink,
        *,
        max_start_attempts: int = 2,
        probe_timeout: float = 2.0,
    ) -> None:
        self.run_dir = run_dir
        self.logs = logs
        self.events = events
        self.max_start_attempts = max_start_attempts
        self.probe_timeout = probe_timeout
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        self._sets: dict[str, ReplicaSet] = {}
        self._supervisors: dict[int, list[_Supervisor]] = {}
        run_dir.mkdir(parents=True, exist_ok=True)
        self.reap_orphans()

    def reap_orphans(self) -> None:
        """Kill replicas left behind by a platform that died without stopping them."""
        for pidfile in self.run_dir.glob("*.pid"):
            replica_id = pidfile.stem
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                if f"{REPLICA_MARKER}={replica_id}".encode() in environ.split(b"\0"):
                    _signal_group(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return self._sets.get(deployment_id)

    def _spawn(self, spec: ReplicaSpec) -> tuple[ReplicaSet, list[_Supervisor]]:
        rset = ReplicaSet(spec.deployment_id, spec.routes)
        count = 1 if spec.fixed_port else max(1, spec.replicas)
        supervisors = [_Supervisor(self, spec, rset, index) for index in range(count)]
        rset.replicas = [sup.replica for sup in supervisors]
        self._supervisors[id(rset)] = supervisors
        return rset, supervisors

    def _launch(self, supervisors: list[_Supervisor]) -> None:
        for sup in supervisors:
            sup.task = asyncio.create_task(sup.run(), name=f"supervisor {sup.replica.id}")

    async def start(self, spec: ReplicaSpec) -> None:
        if spec.deployment_id in self._sets:
            await self.stop(spec.deployment_id, drain=False)
        rset, supervisors = self._spawn(spec)
        self._sets[spec.deployment_id] = rset
        self._launch(supervisors)

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        old = self._sets.get(spec.deployment_id)
        if old is None or spec.fixed_port is not None:
            # a fixed port cannot be shared by two generations: stop, then start
            await self.stop(spec.deployment_id)
            await self.start(spec)
            return True
        rset, supervisors = self._spawn(spec)
        self._launch(supervisors)
        gave_up = [asyncio.create_task(sup.gave_up.wait()) for sup in supervisors]
        ready = asyncio.create_task(rset._ready.wait())
        done, pending = await asyncio.wait([ready, *gave_up], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if ready not in done:
            await self._stop_supervisors(rset, drain=False)
            return False
        self._sets[spec.deployment_id] = rset
        asyncio.create_task(self._stop_supervisors(old, drain=True))
        return True

    async def _stop_supervisors(self, rset: ReplicaSet, *, drain: bool) -> None:
        supervisors = self._supervisors.pop(id(rset), [])
        await asyncio.gather(*(sup.stop(drain) for sup in supervisors))

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        rset = self._sets.pop(deployment_id, None)
        if rset is not None:
            await self._stop_supervisors(rset, drain=drain)

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        rset = self._sets.get(deployment_id)
        if rset is None:
            return []
        return list(await asyncio.gather(*(self._hot_reload_one(replica) for replica in rset.replicas)))

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
        await self.http.aclose()
