"""The control plane's façade: turns pushes, promotions and replica events into status transitions,
engine calls and routing-table updates. The REST API (``edge/api.py``) is a thin layer over it.

Its collaborators are made elsewhere and passed in (``open_controller`` wires the usual ones), so
tests give it a fake engine; it talks to replicas only through the ``Engine`` seam. Nothing happens
at construction: the platform's start runs ``recovery.recover`` explicitly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Collection, Coroutine, Mapping
from pathlib import Path
from typing import Any

from trestle.errors import PlatformError
from trestle.platform.control import gpus as gpu_views
from trestle.platform.control.admission import admit
from trestle.platform.control.autoscaling import Autoscaler, Autoscaling
from trestle.platform.control.history import MetricHistory
from trestle.platform.control.routing import RouteTable
from trestle.platform.control.rules import (
    PushRequest,
    check_environment_name,
    check_push,
    check_replicas,
    model_name_for,
)
from trestle.platform.control.sampler import MetricsSampler
from trestle.platform.control.traffic import Traffic
from trestle.platform.engines import registry
from trestle.platform.engines.base import (
    Engine,
    EngineContext,
    ReplicaEvent,
    ReplicaResources,
    ReplicaSpec,
    ServerRoutes,
    scales_itself,
)
from trestle.platform.engines.builder import Builder, BuildFailed
from trestle.platform.engines.gpu_allocator import GpuAllocator
from trestle.platform.engines.gpu_inventory import detect as detect_gpus
from trestle.platform.engines.limits import ResourceLimiter
from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.settings import Settings
from trestle.platform.store import packaging
from trestle.platform.store.artifacts import ArtifactStore
from trestle.platform.store.bulk import in_bulk
from trestle.platform.store.database import Deployment, Store
from trestle.platform.store.events import EventKind, EventLog
from trestle.platform.store.logs import LogHub
from trestle.platform.store.states import DEVELOPMENT, PRODUCTION, DeploymentKind, DeploymentStatus
from trestle.platform.store.truss import TrussSpec, read_truss

S = DeploymentStatus
terminal = logging.getLogger("trestle.platform.events")
"""One concise line per event an operator watches for (pushes, promotes, crashes, failures, shutdown),
with model and deployment ids; ``serve`` prints it on the platform's terminal."""
_REPLICA_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "SHELL",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
_REPLICA_ENV_PREFIXES = ("LC_", "TRESTLE_", "COVERAGE_")
_NEVER_TO_REPLICAS = frozenset({"TRESTLE_API_KEY", "TRESTLE_REMOTE_URL", "TRESTLE_PLATFORM_API_KEY"})


def replica_base_env(environ: Mapping[str, str], passthrough: Collection[str] = ()) -> dict[str, str]:
    """What a replica inherits from the platform's environment: the basics a process needs (PATH, HOME,
    locale, time zone, CA bundles), Trestle's own settings (never the CLI's key or URL), coverage's, and
    the names the operator passes on with ``--pass-env``. Nothing else: the platform's credentials
    (``AWS_SECRET_ACCESS_KEY``, tokens) stay out of model code; a truss gets its own through
    ``environment_variables`` and secrets."""
    return {
        name: value
        for name, value in environ.items()
        if name not in _NEVER_TO_REPLICAS
        and (name in _REPLICA_ENV or name.startswith(_REPLICA_ENV_PREFIXES) or name in passthrough)
    }


__all__ = ["Controller", "PushRequest", "check_environment_name", "open_controller"]


def open_controller(
    settings: Settings,
    *,
    engine: Engine | None = None,
    engine_options: dict[str, str] | None = None,
    gpus: GpuAllocator | None = None,
) -> Controller:
    """The controller with its usual collaborators on ``settings.data_dir`` (``settings.engine`` by
    name unless an engine is given). Opens the database and makes the data directories; starts nothing.
    The local engine gets this host's GPU inventory (``TRESTLE_FAKE_GPUS``, NVML or nvidia-smi) and
    its CPU/memory limit mechanism, read here once."""
    # owner-only: the database (key hashes), secrets, logs and code are nobody else's business on the host
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    limits: ResourceLimiter | None = None
    if engine is None and settings.engine == "local":
        gpus = gpus or GpuAllocator(detect_gpus())
        limits = ResourceLimiter.detect()
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.secrets_dir.chmod(0o700)
    store = Store(settings.db_path)
    settings.db_path.chmod(0o600)
    logs = LogHub(settings.deployments_dir)
    key = _artifact_key(settings.artifact_key_path)
    if engine is None:
        options = {
            "artifact_base": f"http://{settings.host}:{settings.port}",
            **settings.engine_options,
            **(engine_options or {}),
            "artifact_key": key,
        }
        context = EngineContext(
            run_dir=settings.run_dir,
            logs=logs,
            max_start_attempts=settings.max_start_attempts,
            options=options,
            gpus=gpus,
            limits=limits,
        )
        engine = registry.create(settings.engine, context)
    return Controller(
        settings,
        store=store,
        artifacts=ArtifactStore(settings.artifacts_dir),
        logs=logs,
        builder=Builder(settings.envs_dir, settings.cache_dir),
        engine=engine,
        routes=RouteTable(),
        artifact_key=key,
        gpus=gpus,
        limits=limits,
    )


def _artifact_key(path: Path) -> str:
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        os.replace(tmp, path)
    return path.read_text().strip()


class Controller:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        artifacts: ArtifactStore,
        logs: LogHub,
        builder: Builder,
        engine: Engine,
        routes: RouteTable,
        artifact_key: str = "",
        gpus: GpuAllocator | None = None,
        limits: ResourceLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.gpus = gpus
        """This host's GPUs as the local engine hands them out; None for an engine elsewhere."""
        self.limits = limits
        self.artifact_key = artifact_key
        """Signs the artifact URLs engines hand to a cluster (``store.artifacts.signed_path``)."""
        self.store = store
        self.artifacts = artifacts
        self.logs = logs
        self.builder = builder
        self.routes = routes
        self.engine = engine
        self.events = EventLog(store)
        """The events feed (``store/events.py``): what ``event`` prints on the terminal, as rows."""
        engine.attach(self.on_replica_event)
        self._pipelines: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.patch_locks: dict[str, asyncio.Lock] = {}
        self._replace_locks: dict[str, asyncio.Lock] = {}
        self._push_generation: dict[str, int] = {}
        """Per deployment, the newest push's number: only that push's files are swapped in."""
        self.autoscaler = Autoscaler(self, settings.autoscale_interval)
        self.traffic = Traffic()
        """What the gateway counted of each deployment's requests (``traffic.py``)."""
        self.history = MetricHistory(settings.metrics_step_seconds)
        self.sampler = MetricsSampler(
            self.history, self.traffic, routes, engine, gpus.inventory if gpus is not None else None
        )
        self.routes.rebuild(self.store)
        self.replica_env_hook: Callable[[str], dict[str, str]] = lambda deployment_id: {}
        """More environment for a deployment's replicas (a chainlet's: ``control/chains.py``); it may write
        files in the deployment's ``dynamic_config/`` dir."""

    # lifecycle --------------------------------------------------------------------------------

    def resume(self, deployment_id: str) -> None:
        """Bring a deployment back after a platform restart (``recovery.recover`` decides which)."""
        self.set_status(deployment_id, S.BUILDING)
        self._start_pipeline(deployment_id)

    def start_autoscaler(self) -> None:
        """Start the background loops: the autoscaler and the metric history's sampler."""
        self.spawn(self.autoscaler.run())
        self.spawn(self.sampler.run())

    async def close(self) -> None:
        for task in list(self._pipelines.values()) + list(self._background):
            task.cancel()
        await self.engine.close()
        self.logs.close()
        self.store.close()

    def log(self, deployment_id: str, text: str) -> None:
        self.logs.write(deployment_id, "platform", text)

    def event(self, kind: EventKind, deployment_id: str, text: str, *, warning: bool = False) -> None:
        """An event an operator watches for: one terminal line (``text`` after the deployment's label) and
        a row of the events feed."""
        label = self._label(deployment_id)
        (terminal.warning if warning else terminal.info)(f"{kind.value}: {label}{text}")
        try:
            model_id: str | None = self.store.get_deployment(deployment_id).model_id
        except PlatformError:
            model_id = None
        self.events.record(
            kind, label + text, model_id=model_id, deployment_id=deployment_id, level="warning" if warning else "info"
        )

    def _label(self, deployment_id: str) -> str:
        """``model NAME (ID) deployment ID`` for the terminal."""
        try:
            dep = self.store.get_deployment(deployment_id)
            model = self.store.find_model(dep.model_id)
        except PlatformError:
            return f"deployment {deployment_id}"
        return f"model {model.name} ({model.id}) deployment {deployment_id}"

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # push -------------------------------------------------------------------------------------

    async def push(self, request: PushRequest) -> tuple[Deployment, list[str]]:
        check_push(request)
        archive = self.artifacts.require(request.artifact)
        staging = self.settings.deployments_dir / f".staging-{os.getpid()}-{id(request)}"
        try:
            # file work (unpack, YAML, hashing) off the event loop; the database part below is not
            # interrupted by an await, so two pushes cannot interleave there
            spec, truss_hash = await in_bulk(_stage, archive, staging)
            name = model_name_for(request, spec)
            warnings = await admit(spec, gpus=self.gpus, local=self.engine.name == "local", strict=request.strict)
            if request.replicas is not None:
                check_replicas(spec, Autoscaling.fixed(request.replicas))
            model, _ = self.store.get_or_create_model(name)
            if request.environment:
                self.store.ensure_environment(model.id, request.environment)
            existing = self.store.development_deployment(model.id) if request.development else None
            if existing is not None:
                dep = existing
                self._cancel_pipeline(dep.id)
                self.store.update_deployment(dep.id, artifact=request.artifact, truss_hash=truss_hash)
                if request.labels is not None:
                    dep = self.store.update_deployment(dep.id, info={**dep.info, "labels": request.labels})
                if request.replicas is not None:
                    policy = Autoscaling.fixed(request.replicas, self.autoscaling_of(dep))
                    dep = self.store.update_deployment(dep.id, autoscaling=policy.to_dict(), replicas=request.replicas)
            else:
                development = request.development
                if request.replicas is not None:
                    policy = Autoscaling.fixed(request.replicas, Autoscaling.default(development=development))
                else:
                    policy = Autoscaling.default(development=development)
                check_replicas(spec, policy)
                dep = self.store.create_deployment(
                    model_id=model.id,
                    kind=DeploymentKind.DEVELOPMENT if request.development else DeploymentKind.PUBLISHED,
                    artifact=request.artifact,
                    truss_hash=truss_hash,
                    name=request.deployment_name,
                    target_environment=request.environment,
                    preserve_previous=request.preserve_previous,
                    replicas=policy.floor,
                    autoscaling=policy.to_dict(),
                    info={"labels": request.labels} if request.labels is not None else None,
                )
            target = self.settings.truss_dir(dep.id)
            generation = self._push_generation[dep.id] = self._push_generation.get(dep.id, 0) + 1
            self.spawn(self._replace_truss_dir(dep.id, staging, target, restart=existing is not None, gen=generation))
        except BaseException:
            await in_bulk(shutil.rmtree, staging, True)
            raise
        self.store.update_deployment(dep.id, info={**dep.info, "warnings": warnings})
        self.routes.rebuild(self.store)
        self.log(dep.id, f"pushed artifact {request.artifact[:12]} (truss hash {truss_hash[:12]})")
        kind = "development" if request.development else "published"
        into = f", into {request.environment}" if request.environment else ""
        self.event(EventKind.PUSH, dep.id, f" ({kind}{into})")
        for warning in warnings:
            self.log(dep.id, "WARNING: " + warning)
        return self.store.get_deployment(dep.id), warnings

    async def _replace_truss_dir(
        self, deployment_id: str, staging: Path, target: Path, *, restart: bool, gen: int
    ) -> None:
        """Swap a push's files in and start its pipeline, one push at a time per deployment. Pushes update the
        record in the order they arrive; a push overtaken by a newer one before its turn is dropped, so the
        files served are always the record's (concurrent development pushes are last-writer-wins)."""
        lock = self._replace_locks.setdefault(deployment_id, asyncio.Lock())
        async with lock:
            if gen != self._push_generation.get(deployment_id):
                await in_bulk(shutil.rmtree, staging, True)
                return
            if restart:
                await self.engine.stop(deployment_id, drain=False)
                self.set_status(deployment_id, S.BUILDING)
            await in_bulk(_swap_dirs, staging, target)
            if gen == self._push_generation.get(deployment_id):
                self._start_pipeline(deployment_id)

    def _cancel_pipeline(self, deployment_id: str) -> None:
        task = self._pipelines.pop(deployment_id, None)
        if task is not None:
            task.cancel()

    def _start_pipeline(self, deployment_id: str, *, waking: bool = False) -> None:
        self._cancel_pipeline(deployment_id)
        task = asyncio.get_running_loop().create_task(self._pipeline(deployment_id, waking=waking))
        self._pipelines[deployment_id] = task

    async def _pipeline(self, deployment_id: str, *, waking: bool = False) -> None:
        """BUILDING → DEPLOYING → (replica events) LOADING_MODEL → ACTIVE; or, ``waking``, WAKING_UP →
        (replica events) ACTIVE. A deactivate or a new push cancels it (``_cancel_pipeline``)."""
        truss_dir = self.settings.truss_dir(deployment_id)
        try:
            spec = await self.read_truss(deployment_id)
            python = await self.build(deployment_id, spec, truss_dir)
            if python is None:
                return
            if not waking:
                self.set_status(deployment_id, S.DEPLOYING)
            await self.engine.start(self.replica_spec(deployment_id, spec, python))
        except asyncio.CancelledError:
            raise
        except PlatformError as exc:
            self.log(deployment_id, f"deploy failed: {exc.message}")
            self.set_status(deployment_id, S.DEPLOY_FAILED, error=exc.message)
        except Exception as exc:  # a deployment's failure must not take the platform down
            self.log(deployment_id, f"deploy failed: {exc!r}")
            self.set_status(deployment_id, S.DEPLOY_FAILED, error=repr(exc))
        finally:
            if self._pipelines.get(deployment_id) is asyncio.current_task():
                del self._pipelines[deployment_id]

    async def build(
        self, deployment_id: str, spec: TrussSpec, truss_dir: Path, *, mark_failed: bool = True
    ) -> Path | None:
        """The deployment's environment (built or reused); None (and BUILD_FAILED) if the build fails."""
        try:
            result = await self.builder.build(
                spec.requirements,
                truss_dir,
                lambda line: self.logs.write(deployment_id, "build", line),
                python_version=spec.python_version if spec.docker_server is None else None,
            )
        except BuildFailed as exc:
            self.logs.write(deployment_id, "build", exc.message)
            if mark_failed:
                self.set_status(deployment_id, S.BUILD_FAILED, error=exc.message)
            return None
        dep = self.store.get_deployment(deployment_id)
        self.store.update_deployment(
            deployment_id,
            info={**dep.info, "env_key": result.key, "python": str(result.python), "env_reused": result.reused},
        )
        return result.python

    def replica_spec(self, deployment_id: str, spec: TrussSpec, python: Path, revision: int = 0) -> ReplicaSpec:
        truss_dir = self.settings.truss_dir(deployment_id)
        self.write_environment_file(deployment_id)
        env = replica_base_env(os.environ, self.settings.replica_env_passthrough)
        env.update(spec.environment_variables)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "TRESTLE_ENVIRONMENT_FILE": str(self.settings.environment_file(deployment_id)),
                "TRESTLE_SECRETS_DIR": str(self.settings.secrets_dir),
                "NUM_LOAD_RETRIES_TRUSS": spec.environment_variables.get("NUM_LOAD_RETRIES_TRUSS", "1"),
                "VIRTUAL_ENV": str(python.parent.parent),
                "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(self.replica_env_hook(deployment_id))
        dep = self.store.get_deployment(deployment_id)
        policy = self.autoscaling_of(dep)
        replicas = policy.clamp(dep.replicas) if dep.replicas > 0 else policy.floor
        if spec.docker_server is not None:
            replicas = 1
        if replicas != dep.replicas:
            dep = self.store.update_deployment(deployment_id, replicas=replicas)
        if spec.docker_server is not None:
            return ReplicaSpec(
                deployment_id=deployment_id,
                argv=["/bin/sh", "-c", spec.docker_server.start_command],
                cwd=truss_dir,
                env=env,
                replicas=1,
                routes=spec.docker_server.routes,
                fixed_port=spec.docker_server.server_port,
                drain_seconds=spec.drain_seconds,
                revision=revision,
                development=dep.is_development,
                # for a cluster engine (the local one runs argv): the code, the command, one replica
                artifact=dep.artifact,
                start_command=spec.docker_server.start_command,
                scaling=Autoscaling.fixed(1),
                requirements=tuple(spec.requirements),
                environment_variables={
                    **spec.environment_variables,
                    "TRESTLE_SECRETS_DIR": str(self.settings.secrets_dir),
                },
                environment=self.environment_name_for(deployment_id),
                resources=ReplicaResources(cpu=spec.cpu, memory_bytes=spec.memory_bytes, memory_text=spec.memory_text),
                predict_concurrency=spec.predict_concurrency,
            )
        argv = [
            part.replace("{python}", str(python)).replace("{truss_dir}", str(truss_dir))
            for part in self.settings.server_argv
        ]
        return ReplicaSpec(
            deployment_id=deployment_id,
            argv=argv,
            cwd=truss_dir,
            env=env,
            replicas=replicas,
            routes=ServerRoutes(),
            drain_seconds=spec.drain_seconds,
            revision=revision,
            artifact=dep.artifact,
            scaling=policy,
            resources=ReplicaResources(
                cpu=spec.cpu,
                memory_bytes=spec.memory_bytes,
                accelerator=spec.accelerator,
                gpus=spec.gpus,
                limited=spec.limited,
                memory_text=spec.memory_text,
            ),
            predict_concurrency=spec.predict_concurrency,
            requirements=tuple(spec.requirements),
            environment_variables={
                **spec.environment_variables,
                "TRESTLE_SECRETS_DIR": str(self.settings.secrets_dir),
                "NUM_LOAD_RETRIES_TRUSS": env["NUM_LOAD_RETRIES_TRUSS"],
            },
            development=dep.is_development,
            environment=self.environment_name_for(deployment_id),
        )

    async def read_truss(self, deployment_id: str) -> TrussSpec:
        """The deployment's truss config, read (YAML, requirement files) in a worker thread."""
        return await asyncio.to_thread(read_truss, self.settings.truss_dir(deployment_id), strict=False)

    # status -----------------------------------------------------------------------------------

    def set_status(self, deployment_id: str, status: S, *, error: str | None = None, force: bool = False) -> bool:
        try:
            dep = self.store.set_status(deployment_id, status, error=error, force=force)
        except PlatformError as exc:
            self.log(deployment_id, f"ignored status change: {exc.message}")
            return False
        self.routes.set_status(deployment_id, dep.status)
        self.log(deployment_id, f"status: {status.value}" + (f" ({error})" if error else ""))
        if status in (S.BUILD_FAILED, S.DEPLOY_FAILED, S.UNHEALTHY):
            reason = (error or "").strip().splitlines()
            terminal.warning(
                f"failed: {self._label(deployment_id)} is {status.value}" + (f": {reason[0]}" if reason else "")
            )
        self.events.record(
            EventKind.STATUS,
            f"{self._label(deployment_id)} is {status.value}" + (f": {error.strip().splitlines()[0]}" if error else ""),
            model_id=dep.model_id,
            deployment_id=deployment_id,
            level="warning" if status in (S.BUILD_FAILED, S.DEPLOY_FAILED, S.UNHEALTHY) else "info",
        )
        return True

    def on_replica_event(self, deployment_id: str, event: ReplicaEvent, detail: str) -> None:
        """The engine's events (the sink the controller attaches to it)."""
        try:
            status = self.store.get_deployment(deployment_id).status
        except PlatformError:
            return
        if event is ReplicaEvent.NOT_READY and status in (S.ACTIVE, S.UNHEALTHY):
            kind = "crash" if "exited" in detail else "not ready"
            terminal.warning(f"{kind}: {self._label(deployment_id)}: {detail} (restarting)")
            self.events.record(
                EventKind.CRASH,
                f"{kind}: {self._label(deployment_id)}: {detail} (restarting)",
                model_id=self.store.get_deployment(deployment_id).model_id,
                deployment_id=deployment_id,
                level="warning",
            )
        if event is ReplicaEvent.WAITING:
            self.log(deployment_id, detail)
            if status in (S.DEPLOYING, S.WAKING_UP):
                self.set_status(deployment_id, S.WAITING_FOR_RESOURCES)
                terminal.info(f"waiting: {self._label(deployment_id)}: {detail}")
        elif event is ReplicaEvent.STARTED:
            if status in (S.DEPLOYING, S.WAITING_FOR_RESOURCES):
                self.set_status(deployment_id, S.LOADING_MODEL)
        elif event is ReplicaEvent.SCALED_TO_ZERO:
            if status in (S.ACTIVE, S.WAKING_UP) and self.set_status(deployment_id, S.SCALED_TO_ZERO):
                self.event(EventKind.SCALE, deployment_id, f": {detail}")
        elif event is ReplicaEvent.READY:
            if status is S.SCALED_TO_ZERO:  # an engine that scales itself woke it (a request reached it)
                self.set_status(deployment_id, S.WAKING_UP)
                status = S.WAKING_UP
            if status is S.ACTIVE and detail:
                self.events.record(
                    EventKind.REPLICA,
                    f"{self._label(deployment_id)}: {detail}",
                    model_id=self.store.get_deployment(deployment_id).model_id,
                    deployment_id=deployment_id,
                )
            if status in (S.DEPLOYING, S.LOADING_MODEL, S.WAKING_UP, S.UNHEALTHY):
                if status is S.DEPLOYING:
                    self.set_status(deployment_id, S.LOADING_MODEL)
                self.set_status(deployment_id, S.ACTIVE)
                self._after_active(deployment_id)
        elif event is ReplicaEvent.UNHEALTHY:
            if status is S.ACTIVE:
                self.set_status(deployment_id, S.UNHEALTHY, error=detail)
        elif event is ReplicaEvent.FAILED and status in (
            S.DEPLOYING,
            S.LOADING_MODEL,
            S.WAKING_UP,
            S.WAITING_FOR_RESOURCES,
        ):
            self.set_status(deployment_id, S.DEPLOY_FAILED, error=detail)
            self.spawn(self.engine.stop(deployment_id, drain=False))

    def _after_active(self, deployment_id: str) -> None:
        dep = self.store.get_deployment(deployment_id)
        if dep.target_environment:
            self.spawn(self.promote(deployment_id, dep.target_environment, preserve_previous=dep.preserve_previous))
        elif not dep.is_development and self.settings.previous_deployment_cleanup != "KEEP":
            self.spawn(self.clean_up_previous(dep))

    async def clean_up_previous(self, newest: Deployment) -> list[str]:
        """The cleanup rule (``Settings.previous_deployment_cleanup``): once a published deployment is
        ACTIVE, the model's older published deployments that serve no environment (and wait for none) are
        scaled to zero (or deactivated), so plain pushes do not pile up running replicas."""
        cleaned = []
        for dep in self.store.deployments(newest.model_id):
            if (
                dep.id == newest.id
                or dep.is_development
                or dep.created_at > newest.created_at
                or dep.target_environment
                or dep.status not in (S.ACTIVE, S.UNHEALTHY)
                or self.store.environments_of(dep.id)
            ):
                continue
            self.log(dep.id, f"cleanup: {newest.id} is newer ({self.settings.previous_deployment_cleanup})")
            if self.settings.previous_deployment_cleanup == "DEACTIVATE":
                await self.deactivate(dep.id)
            else:
                await self.engine.stop(dep.id, drain=True)
                self.store.update_deployment(dep.id, replicas=0)
                self.set_status(dep.id, S.SCALED_TO_ZERO)
            cleaned.append(dep.id)
        return cleaned

    # environments -----------------------------------------------------------------------------

    def environment_name_for(self, deployment_id: str) -> str | None:
        dep = self.store.get_deployment(deployment_id)
        if dep.is_development:
            return DEVELOPMENT
        names = self.store.environments_of(deployment_id)
        if dep.target_environment and dep.target_environment not in names:
            # pushed with --promote / --environment: the replica starts in the environment it is going to
            # serve (Baseten's model sees it from its first start), not with None until the switch
            names = [*names, dep.target_environment]
        if PRODUCTION in names:
            return PRODUCTION
        return names[0] if names else None

    def write_environment_file(self, deployment_id: str) -> None:
        """The JSON the replica reads as its ``environment`` (rewritten in place on promote)."""
        name = self.environment_name_for(deployment_id)
        path = self.settings.environment_file(deployment_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"name": name}) if name else "")  # empty: no environment
        os.replace(tmp, path)

    async def promote(self, deployment_id: str, environment: str, *, preserve_previous: bool) -> dict[str, Any]:
        check_environment_name(environment)
        if environment == DEVELOPMENT:
            raise InvalidRequest("nothing can be promoted to 'development'")
        dep = self.store.get_deployment(deployment_id)
        if dep.is_development:
            raise InvalidRequest(
                "a development deployment cannot be promoted; run `trestle push --promote` to publish one"
            )
        if dep.status in (S.INACTIVE, S.BUILD_FAILED, S.DEPLOY_FAILED):
            raise Conflict(f"deployment {dep.id} is {dep.status.value} and cannot be promoted")
        self.store.ensure_environment(dep.model_id, environment)
        if dep.status is not S.ACTIVE:
            # switch once it is ACTIVE (Truss: "after it successfully deploys, it will become ...")
            self.store.update_deployment(dep.id, target_environment=environment, preserve_previous=preserve_previous)
            if dep.status is S.SCALED_TO_ZERO:
                self.wake(dep.id)
            self.routes.rebuild(self.store)
            return {"promoted": False, "pending": True, "environment": environment, "previous": None}
        previous = self.store.set_environment_deployment(dep.model_id, environment, dep.id)
        self.store.update_deployment(dep.id, target_environment=None)
        self.routes.rebuild(self.store)
        self.write_environment_file(dep.id)
        self.log(dep.id, f"promoted to {environment}" + (f" (was {previous})" if previous else ""))
        self.event(EventKind.PROMOTE, dep.id, f" is now {environment}" + (f" (was {previous})" if previous else ""))
        scaled_down = False
        if previous and previous != dep.id:
            self.write_environment_file(previous)
            prev = self.store.get_deployment(previous)
            still_used = bool(self.store.environments_of(previous))
            if not preserve_previous and not still_used and prev.status in (S.ACTIVE, S.UNHEALTHY):
                self.log(previous, f"scaling down: {dep.id} replaced it in {environment}")
                await self.engine.stop(previous, drain=True)
                self.set_status(previous, S.SCALED_TO_ZERO)
                scaled_down = True
        return {
            "promoted": True,
            "pending": False,
            "environment": environment,
            "previous": previous,
            "previous_scaled_down": scaled_down,
        }

    def wake(self, deployment_id: str) -> None:
        """SCALED_TO_ZERO → WAKING_UP: start replicas again (the gateway calls this on a request)."""
        try:
            dep = self.store.get_deployment(deployment_id)
        except PlatformError:
            return
        if dep.status is not S.SCALED_TO_ZERO:
            return
        if not self.set_status(deployment_id, S.WAKING_UP):
            return
        if scales_itself(self.engine, deployment_id) and self.engine.replica_set(deployment_id) is not None:
            return  # Ray Serve: its proxy holds the request and starts a replica; its READY ends WAKING_UP
        self._start_pipeline(deployment_id, waking=True)

    async def deactivate(self, deployment_id: str) -> Deployment:
        dep = self.store.get_deployment(deployment_id)
        self._cancel_pipeline(deployment_id)
        await self.engine.stop(deployment_id, drain=True)
        self.set_status(dep.id, S.INACTIVE)
        self.event(EventKind.DEACTIVATE, dep.id, " deactivated")
        return self.store.get_deployment(deployment_id)

    async def terminate_replica(self, deployment_id: str, replica_id: str) -> None:
        """Stop one replica at once; its engine starts a replacement (Baseten's terminate-replica)."""
        dep = self.store.get_deployment(deployment_id)
        if not await self.engine.terminate(dep.id, replica_id):
            raise NotFound(f"deployment {dep.id} has no replica {replica_id!r}")

    async def activate(self, deployment_id: str) -> Deployment:
        dep = self.store.get_deployment(deployment_id)
        if dep.status is S.SCALED_TO_ZERO:
            self.wake(dep.id)
            return self.store.get_deployment(deployment_id)
        if dep.status is not S.INACTIVE:
            raise Conflict(f"deployment {dep.id} is {dep.status.value}, not INACTIVE")
        self.set_status(dep.id, S.BUILDING)
        self._start_pipeline(dep.id)
        return self.store.get_deployment(deployment_id)

    async def delete_deployment(self, deployment_id: str) -> Deployment:
        """Stop a deployment's replicas (drained) and forget it and its files. The one an environment
        serves is refused (promote another first, or delete the model)."""
        dep = self.store.get_deployment(deployment_id)
        serving = self.store.environments_of(deployment_id)
        if serving:
            raise Conflict(
                f"deployment {dep.id} serves {', '.join(serving)}: promote another deployment there first, "
                "or delete the model"
            )
        await self._forget(dep)
        self.routes.rebuild(self.store)
        return dep

    async def delete_model(self, model_id: str) -> list[Deployment]:
        """Stop and forget every deployment of a model, then the model (its name is free again)."""
        deps = self.store.deployments(model_id)
        for dep in deps:
            await self._forget(dep, keep_row=True)
        self.store.delete_model(model_id)
        self.routes.rebuild(self.store)
        terminal.info(f"delete: model {model_id} and its {len(deps)} deployment(s)")
        self.events.record(EventKind.DELETE, f"model {model_id} and its {len(deps)} deployment(s)", model_id=model_id)
        return deps

    async def _forget(self, dep: Deployment, *, keep_row: bool = False) -> None:
        self._cancel_pipeline(dep.id)
        await self.engine.stop(dep.id, drain=True)
        self.autoscaler.forget(dep.id)
        if not keep_row:
            self.store.delete_deployment(dep.id)
        await in_bulk(shutil.rmtree, self.settings.deployments_dir / dep.id, True)

    # scaling ----------------------------------------------------------------------------------

    def autoscaling_of(self, dep: Deployment) -> Autoscaling:
        return Autoscaling.from_dict(dep.autoscaling, development=dep.is_development)

    def busy(self, deployment_id: str) -> bool:
        """Whether a pipeline or a patch is changing the deployment's replicas right now."""
        lock = self.patch_locks.get(deployment_id)
        return deployment_id in self._pipelines or (lock is not None and lock.locked())

    async def set_scaling(
        self, deployment_id: str, *, replicas: int | None = None, changes: dict[str, Any] | None = None
    ) -> Deployment:
        """Change a deployment's scaling settings: ``replicas`` fixes the count (min = max), ``changes``
        updates settings by name. A running deployment is scaled now; an explicit count also wakes one
        that is SCALED_TO_ZERO; any other status keeps the settings for its next start."""
        dep = self.store.get_deployment(deployment_id)
        changes = dict(changes or {})
        current = self.autoscaling_of(dep)
        if replicas is not None:
            if {"min_replicas", "max_replicas"} & set(changes):
                raise InvalidRequest("replicas sets min_replicas and max_replicas; pass one or the others")
            policy = Autoscaling.fixed(replicas, current.updated(changes))
        else:
            policy = current.updated(changes)
        spec = await self.read_truss(deployment_id)
        check_replicas(spec, policy)
        if dep.replicas > 0:
            wanted = replicas if replicas is not None else policy.clamp(dep.replicas)
        else:
            wanted = replicas or 0
        dep = self.store.update_deployment(deployment_id, autoscaling=policy.to_dict(), replicas=wanted or dep.replicas)
        self.autoscaler.forget(deployment_id)
        self.log(deployment_id, f"scaling settings: {_describe(policy)}")
        self.event(EventKind.SCALE, deployment_id, f": {_describe(policy)}")
        if dep.status is S.SCALED_TO_ZERO and replicas is not None:
            self.wake(deployment_id)
        elif dep.status.wants_replicas and self.engine.replica_set(deployment_id) is not None and wanted:
            if scales_itself(self.engine, deployment_id):
                await self.engine.apply_scaling(deployment_id, policy)  # the engine's autoscaler follows them
            else:
                await self.engine.scale(deployment_id, wanted)
        return self.store.get_deployment(deployment_id)

    async def autoscale(self, deployment_id: str, replicas: int, reason: str) -> None:
        """Apply an autoscaler decision (the deployment is ACTIVE when it is taken)."""
        dep = self.store.get_deployment(deployment_id)
        if dep.status is not S.ACTIVE or self.busy(deployment_id):
            return
        if replicas == 0:
            await self.scale_to_zero(deployment_id, reason)
            return
        self.store.update_deployment(deployment_id, replicas=replicas)
        self.log(deployment_id, f"autoscaler: {dep.replicas} → {replicas} replicas ({reason})")
        self.event(EventKind.SCALE, deployment_id, f": autoscaler {dep.replicas} → {replicas} replicas ({reason})")
        await self.engine.scale(deployment_id, replicas)

    async def scale_to_zero(self, deployment_id: str, reason: str) -> None:
        """ACTIVE → SCALED_TO_ZERO: drain and stop every replica; the next request wakes it."""
        self.log(deployment_id, f"autoscaler: scaling to zero ({reason})")
        self.event(EventKind.SCALE, deployment_id, f": autoscaler scaling to zero ({reason})")
        await self.engine.stop(deployment_id, drain=True)
        self.store.update_deployment(deployment_id, replicas=0)
        if self.store.get_deployment(deployment_id).status in (S.ACTIVE, S.UNHEALTHY):
            self.set_status(deployment_id, S.SCALED_TO_ZERO)

    # views ------------------------------------------------------------------------------------

    async def gpus_view(self) -> dict[str, Any]:
        """``GET /v1/gpus``: each GPU, who holds it, its memory used and utilization (read now)."""
        return await gpu_views.view(self.gpus, self.store)

    async def gpu_metrics(self) -> str:
        """The GPU gauges in Prometheus's text format."""
        return await gpu_views.metrics(self.gpus, self.store)

    def deployment_view(self, dep: Deployment) -> dict[str, Any]:
        model = self.store.find_model(dep.model_id)
        replicas = self.engine.report(dep.id)
        return {
            "id": dep.id,
            "model_id": dep.model_id,
            "model_name": model.name,
            "name": dep.name,
            "is_development": dep.is_development,
            "status": dep.status.value,
            "environments": self.store.environments_of(dep.id) + ([DEVELOPMENT] if dep.is_development else []),
            "target_environment": dep.target_environment,
            "truss_hash": dep.truss_hash,
            "artifact": dep.artifact,
            "error": dep.error,
            "warnings": dep.info.get("warnings", []),
            "env_key": dep.info.get("env_key"),
            "env_reused": dep.info.get("env_reused"),
            "replicas": dep.replicas,
            "ready_replicas": sum(1 for replica in replicas if replica.ready),
            "waiting": next((replica.waiting for replica in replicas if replica.waiting), None),
            "replica_states": [
                {
                    "id": replica.id,
                    "ready": replica.ready,
                    "in_flight": replica.in_flight,
                    "waiting": replica.waiting,
                    "gpus": list(replica.gpus),
                }
                for replica in replicas
            ],
            "autoscaling": self.autoscaling_of(dep).to_dict(),
            "created_at": dep.created_at,
            "updated_at": dep.updated_at,
        }


def _stage(archive: Path, staging: Path) -> tuple[TrussSpec, str]:
    """Unpack an artifact into ``staging`` and read it (in a low-priority thread): its spec and truss hash."""
    shutil.rmtree(staging, ignore_errors=True)
    packaging.unpack(archive, staging)
    spec = read_truss(staging, strict=True)
    return spec, packaging.manifest_hash(packaging.manifest(staging))


def _swap_dirs(staging: Path, target: Path) -> None:
    old = target.with_name("truss.old")
    shutil.rmtree(old, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _describe(policy: Autoscaling) -> str:
    if not policy.autoscales:
        return f"{policy.min_replicas} replica(s), fixed"
    text = (
        f"{policy.min_replicas}-{policy.max_replicas} replicas, target {policy.concurrency_target:g} in flight "
        f"per replica over {policy.autoscaling_window:g}s, scale down after {policy.scale_down_delay:g}s"
    )
    if policy.min_replicas == 0:
        text += f", to zero after {policy.scale_to_zero_delay:g}s idle"
    return text
