"""The Ray engine: each deployment is a Ray Serve application on a Ray cluster.

The platform talks to the cluster only through the Ray dashboard's REST API (``PUT/GET
/api/serve/applications/``, token auth): it needs no Ray import, and the cluster needs no route
back to the platform except to fetch code. The Serve config is declarative and whole (Serve deletes
any application not in it), so the engine keeps the applications it placed and PUTs them all on
every change; applications it does not own (no ``trestle-`` prefix) are carried over unchanged.

Each application runs ``trestle.serving.ray_replica`` (Trestle's own model server app) on the
deployment's content-addressed archive, which Ray fetches from a signed URL the control plane
serves. Serve autoscales (``ray_config.FIELDS`` maps the settings), so the controller's own
autoscaler leaves these deployments alone. A poll task reads the applications' statuses once a
second and turns them into replica events; an application that disappeared (a Ray head restart)
is re-applied. Replica output follows into the deployment log (``ray_logs.py``).

Several platforms may share one cluster: each tags its applications with its own id (``owner``, in
the application's ``args``) and, before every PUT, reads what runs to carry the others' over, so
one platform never deletes another's applications (a lost race is healed by the next poll's
re-apply).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable, Collection
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
from trestle.platform.engines.ray_config import (
    APP_PREFIX,
    DEPLOYMENT_NAME,
    ServeInputs,
    app_name,
    route_prefix,
    serve_application,
    serve_config,
)
from trestle.platform.engines.ray_logs import ReplicaLogs, replica_actors
from trestle.platform.errors import InvalidRequest, Unavailable
from trestle.platform.store.scaling import Autoscaling

APPLICATIONS = "/api/serve/applications/"
POLL_SECONDS = 1.0
TOKEN_FILE = Path("~/.ray/auth_token")


def resolve_token(explicit: str | None) -> str | None:
    """The Ray auth token: given, else ``RAY_AUTH_TOKEN``, else Ray's token file."""
    if explicit:
        return explicit
    env = os.environ.get("RAY_AUTH_TOKEN")
    if env:
        return env.strip()
    path = TOKEN_FILE.expanduser()
    if path.is_file():
        text = path.read_text().strip()
        return text or None
    return None


def _no_events(deployment_id: str, event: ReplicaEvent, detail: str) -> None:
    """Before ``attach``: nobody listens."""


class RayEngine:
    name = "ray"
    autoscales = True
    builds_environments = False

    def __init__(
        self,
        context: EngineContext,
        *,
        address: str,
        token: str | None,
        proxy_url: str,
        artifact_url: Callable[[str], str],
        secrets_url: Callable[[str], str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_seconds: float = POLL_SECONDS,
        owner: str = "",
    ) -> None:
        self.address = address.rstrip("/")
        self.proxy_url = proxy_url.rstrip("/")
        self.logs = context.logs
        self.events: EventSink = _no_events
        self.artifact_url = artifact_url
        self.secrets_url = secrets_url
        self.poll_seconds = poll_seconds
        self.owner = owner
        """This platform's id on the cluster (``args.platform`` of its applications)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=self.address, headers=headers, timeout=httpx.Timeout(30.0, connect=5.0), transport=transport
        )
        self._apps: dict[str, dict[str, Any]] = {}  # deployment id -> its application config
        self._specs: dict[str, ReplicaSpec] = {}  # deployment id -> the spec it was last placed with
        self._sets: dict[str, ReplicaSet] = {}
        self._meters: dict[str, LoadMeter] = {}
        self._status: dict[str, str] = {}  # deployment id -> Serve application status
        self._replicas: dict[str, list[ReplicaState]] = {}
        self._adopted: set[str] = set()  # deployments adopted at recovery whose replicas' logs are old
        self._at_zero: set[str] = set()  # deployments Serve has scaled to zero replicas
        self.replica_logs = ReplicaLogs(self.http, context.logs)
        self._poller: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def attach(self, events: EventSink) -> None:
        self.events = events

    # talking to the dashboard ----------------------------------------------------------------

    async def _request(self, method: str, json: Any = None) -> dict[str, Any]:
        try:
            response = await self.http.request(method, APPLICATIONS, json=json)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the Ray cluster at {self.address}: {exc}") from exc
        if response.status_code in (401, 403):
            raise Unavailable(
                f"the Ray cluster at {self.address} refused the request ({response.status_code}): "
                "check its auth token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            )
        if response.status_code >= 400:
            raise Unavailable(f"the Ray cluster refused the Serve config ({response.status_code}): {response.text}")
        if not response.content:
            return {}
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            return {}
        return body

    def _mine(self, name: str, details: Any) -> bool:
        """A Trestle application of this platform (one without an owner tag is an older platform's:
        taken as this one's)."""
        if not name.startswith(APP_PREFIX):
            return False
        config = details.get("deployed_app_config") if isinstance(details, dict) else None
        args = config.get("args") if isinstance(config, dict) else None
        owner = args.get("platform", self.owner) if isinstance(args, dict) else self.owner
        return bool(owner == self.owner)

    async def _apply(self) -> None:
        """PUT this platform's applications beside the others' as they run now (Serve deletes any
        application missing from the config)."""
        foreign = []
        for name, details in (await self._applications()).items():
            if self._mine(name, details) or not isinstance(details, dict):
                continue
            config = details.get("deployed_app_config")
            if isinstance(config, dict) and details.get("status") != "DELETING":
                foreign.append(config)
        applications = foreign + [self._apps[dep] for dep in sorted(self._apps)]
        host, port = _host_port(self.proxy_url)
        await self._request("PUT", serve_config(applications, proxy_host=host, proxy_port=port))

    async def _applications(self) -> dict[str, Any]:
        body = await self._request("GET")
        apps = body.get("applications") or {}
        return apps if isinstance(apps, dict) else {}

    # the seam ---------------------------------------------------------------------------------

    async def recover(self, keep: Collection[str]) -> None:
        """Adopt the running applications of kept deployments (their config as deployed, so the
        pipeline's re-placement changes nothing), drop this platform's others, keep everyone else's."""
        apps = await self._applications()
        kept = set(keep)
        dropped = False
        for name, details in apps.items():
            if not self._mine(name, details):
                continue
            config = details.get("deployed_app_config") if isinstance(details, dict) else None
            deployment_id = name[len(APP_PREFIX) :]
            if deployment_id in kept and isinstance(config, dict):
                self._apps[deployment_id] = config
                self._adopted.add(deployment_id)
            else:
                dropped = True
        if dropped:
            await self._apply()
        self._ensure_poller()

    async def start(self, spec: ReplicaSpec) -> None:
        await self._place(spec)

    async def _place(self, spec: ReplicaSpec, *, announce: bool = True) -> dict[str, Any] | None:
        """Put the deployment's application in the config; returns the config it replaced.
        ``announce``: report a changed application as STARTED (not for a settings-only change,
        which Serve applies to the running replicas)."""
        secrets = self.secrets_url(spec.deployment_id) if self.secrets_url is not None else ""
        application = serve_application(
            ServeInputs(spec, self.artifact_url(spec.artifact), owner=self.owner, secrets_url=secrets)
        )
        async with self._lock:
            previous = self._apps.get(spec.deployment_id)
            self._apps[spec.deployment_id] = application
            try:
                await self._apply()
            except BaseException:
                # nothing half-registered: the cluster keeps what it had
                if previous is None:
                    self._apps.pop(spec.deployment_id, None)
                else:
                    self._apps[spec.deployment_id] = previous
                raise
            self._specs[spec.deployment_id] = spec
        rset = self._sets.get(spec.deployment_id)
        if rset is None:
            meter = self._meters.setdefault(spec.deployment_id, LoadMeter())
            rset = ReplicaSet(spec.deployment_id, spec.routes, meter)
            replica = Replica(app_name(spec.deployment_id), 0, meter)
            replica.url = self.proxy_url + route_prefix(spec.deployment_id)
            rset.replicas.append(replica)
            self._sets[spec.deployment_id] = rset
        if announce and (previous is None or previous != application):
            self._status[spec.deployment_id] = "DEPLOYING"
            self.events(spec.deployment_id, ReplicaEvent.STARTED, f"Serve application {app_name(spec.deployment_id)}")
        self._ensure_poller()
        return previous

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        """A rolling update by Serve (old replicas serve until the new ones are ready)."""
        previous = await self._place(spec)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await asyncio.sleep(self.poll_seconds)
            status = self._status.get(spec.deployment_id)
            if status == "RUNNING":
                return True
            if status == "DEPLOY_FAILED":
                break
        if previous is not None:
            async with self._lock:
                self._apps[spec.deployment_id] = previous
                await self._apply()
        return False

    async def scale(self, deployment_id: str, replicas: int) -> None:
        """A fixed count (min = max) is re-applied; a range is Serve's to follow."""
        spec = self._specs.get(deployment_id)
        if spec is None or deployment_id not in self._apps or spec.scaling.autoscales:
            return
        n = max(1, replicas)
        fixed = dataclasses.replace(spec.scaling, min_replicas=n, max_replicas=n)
        await self._place(dataclasses.replace(spec, scaling=fixed, replicas=n), announce=False)

    async def apply_scaling(self, deployment_id: str, scaling: Autoscaling) -> None:
        """New scaling settings for a placed deployment: Serve applies them to the running
        application without restarting its replicas."""
        spec = self._specs.get(deployment_id)
        if spec is None or deployment_id not in self._apps:
            return
        await self._place(
            dataclasses.replace(spec, scaling=scaling, replicas=scaling.clamp(spec.replicas)), announce=False
        )

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        async with self._lock:
            if self._apps.pop(deployment_id, None) is not None:
                await self._apply()  # Serve drains (graceful_shutdown_timeout_s) and deletes it
        self._specs.pop(deployment_id, None)
        self._sets.pop(deployment_id, None)
        self._meters.pop(deployment_id, None)
        self._status.pop(deployment_id, None)
        self._replicas.pop(deployment_id, None)
        self._at_zero.discard(deployment_id)
        self.replica_logs.stop(deployment_id)

    async def terminate(self, deployment_id: str, replica_id: str) -> bool:
        raise InvalidRequest(
            "terminating one replica is not supported on the Ray engine: Serve owns its replicas "
            "(stop the replica's actor with Ray's own tools, and Serve starts another)"
        )

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return self._sets.get(deployment_id)

    def report(self, deployment_id: str) -> list[ReplicaState]:
        return list(self._replicas.get(deployment_id, []))

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        return []  # no hot reload on Ray: a patch replaces the application (rolling update)

    async def close(self) -> None:
        """Leave the applications running (they outlive the platform; recovery adopts them)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.replica_logs.close()
        await self.http.aclose()

    # status -----------------------------------------------------------------------------------

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="ray engine poll")

    async def _poll(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Unavailable as exc:
                for deployment_id in list(self._sets):
                    self._replicas[deployment_id] = []  # nothing is known to run
                    self._set_ready(deployment_id, False, f"Ray unreachable: {exc.message}")
            await asyncio.sleep(self.poll_seconds)

    async def poll_once(self) -> None:
        async with self._lock:  # not while a PUT is on its way: its application would look lost
            apps = await self._applications()
            missing = [dep for dep in self._apps if app_name(dep) not in apps]
            if missing:
                # the cluster lost them (a head restart): apply the whole config again
                await self._apply()
            for dep in missing:
                self.logs.write(dep, "platform", "the Ray cluster lost the application; re-applied it")
        for deployment_id in list(self._sets):
            details = apps.get(app_name(deployment_id))
            status = str(details.get("status", "")) if isinstance(details, dict) else "NOT_STARTED"
            message = str(details.get("message", "")) if isinstance(details, dict) else ""
            self._replicas[deployment_id] = _replica_states(details)
            from_end = deployment_id in self._adopted
            self._adopted.discard(deployment_id)
            self.replica_logs.sync(deployment_id, replica_actors(details, DEPLOYMENT_NAME), from_end=from_end)
            old = self._status.get(deployment_id)
            self._status[deployment_id] = status
            if status == "RUNNING":
                self._set_ready(deployment_id, True, "Serve application RUNNING")
                self._follow_zero(deployment_id)
            elif status == "DEPLOY_FAILED":
                self._set_ready(deployment_id, False, message)
                if old != status:
                    self.events(deployment_id, ReplicaEvent.FAILED, message or "the Serve application failed to deploy")
            elif status == "UNHEALTHY":
                self._set_ready(deployment_id, False, message)
                if old != status:
                    self.events(deployment_id, ReplicaEvent.UNHEALTHY, message or "the Serve application is unhealthy")

    def _follow_zero(self, deployment_id: str) -> None:
        """Serve's scale to zero and back, as events: the application stays RUNNING (and its proxy route
        stays ready: the proxy holds a request while Serve starts a replica), so the status would read
        ACTIVE throughout. At zero running replicas with a minimum of zero: SCALED_TO_ZERO; once a
        replica runs again: READY (the controller goes WAKING_UP -> ACTIVE)."""
        spec = self._specs.get(deployment_id)
        running = sum(1 for replica in self._replicas.get(deployment_id, []) if replica.ready)
        if running == 0 and spec is not None and spec.scaling.min_replicas == 0:
            if deployment_id not in self._at_zero:
                self._at_zero.add(deployment_id)
                self.events(deployment_id, ReplicaEvent.SCALED_TO_ZERO, "Serve scaled the application to zero replicas")
        elif running > 0 and deployment_id in self._at_zero:
            self._at_zero.discard(deployment_id)
            self.events(deployment_id, ReplicaEvent.READY, f"Serve runs {running} replica(s) again")

    def _set_ready(self, deployment_id: str, ready: bool, detail: str) -> None:
        rset = self._sets.get(deployment_id)
        if rset is None:
            return
        was = rset.any_ready
        for replica in rset.replicas:
            replica.ready = ready
        rset.refresh()
        if ready and not was:
            self.events(deployment_id, ReplicaEvent.READY, detail)
        elif was and not ready:
            self.logs.write(deployment_id, "platform", f"not ready: {detail}")
            self.events(deployment_id, ReplicaEvent.NOT_READY, detail)


def _replica_states(details: Any) -> list[ReplicaState]:
    if not isinstance(details, dict):
        return []
    deployment = (details.get("deployments") or {}).get(DEPLOYMENT_NAME) or {}
    states = []
    for replica in deployment.get("replicas") or []:
        states.append(ReplicaState(str(replica.get("replica_id", "?")), replica.get("state") == "RUNNING", 0))
    return states


def _host_port(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    return parsed.host, parsed.port or 8000


def create(context: EngineContext) -> RayEngine:
    """The registry's factory: options ``address``, ``token``, ``insecure``, ``proxy_url``,
    ``artifact_base`` (the platform URL the cluster fetches code from) and ``artifact_key``."""
    from trestle.platform.store.artifacts import signed_path, signed_secrets_path

    options = context.options
    address = options.get("address")
    if not address:
        raise InvalidRequest("the ray engine needs --ray-address (the Ray dashboard, e.g. http://HOST:8265)")
    token = resolve_token(options.get("token"))
    if token is None and options.get("insecure") != "1":
        raise InvalidRequest(
            f"no Ray auth token for {address}: start Ray with RAY_AUTH_MODE=token and set RAY_AUTH_TOKEN "
            "(or ~/.ray/auth_token), or pass --ray-insecure for a cluster on a private network without auth"
        )
    base = options.get("artifact_base", "").rstrip("/")
    key = options.get("artifact_key", "")
    if not base or not key:
        raise InvalidRequest("the ray engine needs the platform's artifact URL and signing key")
    return RayEngine(
        context,
        address=address,
        token=token,
        proxy_url=options.get("proxy_url", "http://127.0.0.1:8000"),
        artifact_url=lambda digest: base + signed_path(key, digest),
        secrets_url=lambda deployment_id: base + signed_secrets_path(key, deployment_id),
        owner=options.get("platform_id") or hashlib.sha256(key.encode()).hexdigest()[:12],
    )
