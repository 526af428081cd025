"""A Ray Serve replica that runs Trestle's own model server app (the ASGI app ``trestle serve`` runs).

The platform's Ray engine deploys each deployment as a Serve application whose ``import_path`` is
this module's ``app`` builder. Ray unpacks the deployment's truss archive (its ``working_dir``) and
starts each replica there; the replica builds Trestle's ``ModelServer`` on that directory and hands
its ASGI app to Serve, so the whole Truss wire contract, streaming, websockets and cancellation on
disconnect behave as on the local engine. A client that leaves reaches the replica as Serve's
cancellation of its call; :class:`_Call` hands that to Trestle's app as ``http.disconnect``, the
one signal its cancellation listens for (the app keeps running on the local engine's terms).
Replica start waits until the model is loaded (a failed load fails the replica, which Serve
reports as DEPLOY_FAILED); the environment's dynamic config arrives as ``user_config`` and is
written to the file the model server watches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ray import serve

from trestle.serving.custom_server import CustomServer

Scope = dict[str, Any]
ASGIApp = Any

_LOAD_POLL_SECONDS = 0.05
_DISCONNECT = {"type": "http.disconnect"}
_LEFT_GRACE_SECONDS = 10.0
"""How long a call whose client left may run on after ``http.disconnect`` before it is cancelled."""

logger = logging.getLogger("trestle")


class _Call:
    """One HTTP request on the replica, as Trestle's app sees it.

    Serve cancels the replica's call when its client leaves (``http.disconnect`` is not always
    delivered). The app's call runs shielded from that; ``leave()`` turns it into what uvicorn
    would say: ``receive`` answers ``http.disconnect`` (a pending one at once) and ``send`` is
    dropped. So the app's own cancellation runs (the disconnect event, ``is_disconnected()``, a
    cancelled task) instead of a bare ``CancelledError`` that leaves model threads unaware. A
    ``receive`` of Serve's that raises means the same: the client is gone.
    """

    __slots__ = ("_receive", "_send", "gone", "pending")

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive, self._send = receive, send
        self.gone = False
        self.pending: set[asyncio.Future[Any]] = set()

    async def receive(self) -> dict[str, Any]:
        if self.gone:
            return _DISCONNECT
        pending = asyncio.ensure_future(self._receive())
        self.pending.add(pending)
        try:
            return await pending  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if self.gone:
                return _DISCONNECT
            raise
        except Exception as exc:
            # Serve's receive raises (once, then never answers again) when its proxy lost the
            # request in a way other than a clean disconnect: for the app, the client is gone.
            logger.info("Serve's receive failed (%r): the client is taken to be gone.", exc)
            self.gone = True
            return _DISCONNECT
        finally:
            self.pending.discard(pending)

    async def send(self, message: dict[str, Any]) -> None:
        if not self.gone:
            await self._send(message)

    def leave(self) -> None:
        self.gone = True
        for pending in list(self.pending):
            pending.cancel()


def _model_server(truss_dir: Path, environment_file: Path) -> Any:
    """The one place this module touches the data plane: ``trestle serve``'s server object."""
    from trestle.config import load_config
    from trestle.logs import configure
    from trestle.server import ModelServer
    from trestle.settings import ServerSettings

    configure(logger="trestle")  # the log `trestle serve` writes, request ids included
    loaded = load_config(truss_dir)
    settings = ServerSettings.from_env(truss_dir, loaded.config, environment_file=environment_file)
    return ModelServer(settings)


def _load_state(server: Any) -> str:
    """``READY``, ``FAILED`` or a loading state, by name."""
    return str(server.runtime.health.state.name)


class _Mounted:
    """Trestle's app under Serve's route prefix: the prefix is taken off ``path``, and lifespan
    startup finishes only once the model has loaded (or fails with the load)."""

    def __init__(self, server: Any, inner: ASGIApp | None = None) -> None:
        self.server = server
        self.inner: ASGIApp = inner if inner is not None else server.app
        self.running: set[asyncio.Future[None]] = set()  # calls whose client left, still finishing
        self.grace = _LEFT_GRACE_SECONDS

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = scope.get("path", "")
        if root and path.startswith(root):
            scope = dict(scope, path=path[len(root) :] or "/", root_path="")
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        call = _Call(receive, send)
        task = asyncio.ensure_future(self.inner(scope, call.receive, call.send))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                call.leave()
                self.running.add(task)
                task.add_done_callback(self._finished)
                asyncio.get_running_loop().call_later(self.grace, self._overdue, task)
            raise

    def _overdue(self, task: asyncio.Future[None]) -> None:
        """A safety net: the app has not ended its call ``grace`` s after its client left."""
        if not task.done():
            logger.warning("A request whose client left %.0f s ago is still running; cancelling it.", self.grace)
            task.cancel()

    def _finished(self, task: asyncio.Future[None]) -> None:
        """A call whose client left has ended: forget it (its error was logged by the app, if any)."""
        self.running.discard(task)
        if not task.cancelled():
            task.exception()

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        to_inner: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        from_inner: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        task = asyncio.ensure_future(self.inner(scope, to_inner.get, from_inner.put))
        message = await receive()
        await to_inner.put(message)
        reply = await from_inner.get()
        if reply["type"] == "lifespan.startup.complete":
            while _load_state(self.server) not in ("READY", "FAILED"):
                await asyncio.sleep(_LOAD_POLL_SECONDS)
            if _load_state(self.server) == "FAILED":
                reply = {"type": "lifespan.startup.failed", "message": "the model failed to load; see the replica log"}
        await send(reply)
        if reply["type"] != "lifespan.startup.complete":
            task.cancel()
            return
        message = await receive()
        await to_inner.put(message)
        await send(await from_inner.get())
        await asyncio.gather(task, return_exceptions=True)


class _Relayed(_Mounted):
    """A ``docker_server`` truss's own server under Serve's route prefix (``custom_server.py``): lifespan
    startup finishes once its readiness path answers, shutdown stops its process."""

    def __init__(self, server: CustomServer, ready_timeout: float) -> None:
        super().__init__(server, inner=server)
        self.ready_timeout = ready_timeout

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            await self.server.wait_ready(self.ready_timeout)
        except RuntimeError as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await asyncio.to_thread(self.server.stop)
        await send({"type": "lifespan.shutdown.complete"})


@serve.deployment
@serve.ingress()
class TrestleReplica:
    """One replica of a truss.

    The platform's engine passes only its deployment's id: the truss is Ray's unpacked
    ``working_dir`` and the environment arrives through ``reconfigure``. A RayService in a cluster
    (``trestle.deploy.ray_app``) names the truss's directory in the image, its environment, and
    the environment file its pod mounts, if any.
    """

    def __init__(
        self,
        deployment_id: str,
        revision: int = 0,
        *,
        truss_dir: str | None = None,
        environment: str | None = None,
        environment_file: str | None = None,
        docker_server: dict[str, Any] | None = None,
    ) -> None:
        self.deployment_id = deployment_id
        self.truss_dir = Path(truss_dir) if truss_dir else Path.cwd()  # else Ray's unpacked working_dir
        if environment_file:
            self.environment_file = Path(environment_file)
        else:
            state = Path(tempfile.mkdtemp(prefix=f"trestle-{deployment_id}-"))
            self.environment_file = state / "dynamic_config" / "environment"
            self.environment_file.parent.mkdir(parents=True)
            self.environment_file.write_text(json.dumps({"name": environment}) if environment else "")
        os.environ["TRESTLE_ENVIRONMENT_FILE"] = str(self.environment_file)
        url = os.environ.pop("TRESTLE_SECRETS_URL", None)
        if url:
            os.environ["TRESTLE_SECRETS_DIR"] = str(fetch_secrets(url))
        self.custom: CustomServer | None = None
        if docker_server:
            # the truss brings its own server (docker_server): run its start command beside the replica
            self.custom = CustomServer(
                str(docker_server["start_command"]),
                int(docker_server["server_port"]),
                str(docker_server.get("readiness", "/")),
                self.truss_dir,
            )
            self.custom.start()
            self.ready_timeout = float(docker_server.get("ready_timeout", 600))
        else:
            self.server = _model_server(self.truss_dir, self.environment_file)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        if self.custom is not None:
            return _Relayed(self.custom, self.ready_timeout)
        return _Mounted(self.server)

    def check_health(self) -> None:
        """Serve's health check: a ``docker_server`` whose process exited fails it (Serve replaces the
        replica); Trestle's own server is checked by its load state at start."""
        if self.custom is not None and not self.custom.alive:
            raise RuntimeError("the truss's server process exited")

    def __del__(self) -> None:
        custom = getattr(self, "custom", None)
        if custom is not None:
            custom.stop(grace=2.0)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The environment's dynamic config (rewritten atomically; the model server watches it)."""
        name = user_config.get("environment")
        tmp = self.environment_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"name": name}) if name else "")
        os.replace(tmp, self.environment_file)


def fetch_secrets(url: str, timeout: float = 30.0) -> Path:
    """The deployment's declared secrets from the platform's signed URL, into a new private directory
    (0700, files 0600) that the model server then reads as its secrets dir. Once, at the replica's start,
    before the model loads (so not on a loop that serves traffic); a secret changed later reaches the
    next replica. A platform that cannot be reached fails the start with a clear error."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            values = json.loads(response.read())["secrets"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        host = url.split("/v1/", 1)[0]
        raise RuntimeError(f"could not fetch this deployment's secrets from the platform at {host}: {exc}") from None
    directory = Path(tempfile.mkdtemp(prefix="trestle-secrets-"))  # 0700
    for name, value in values.items():
        path = directory / str(name)
        if path.parent != directory:
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(str(value))
    return directory


def app(args: dict[str, Any]) -> Any:
    """The Serve application builder named by the platform's config (``import_path``)."""
    deployment: Any = TrestleReplica  # a Serve Deployment once decorated
    docker = args.get("docker_server")
    return deployment.bind(
        str(args["deployment_id"]), int(args.get("revision", 0)), docker_server=docker if docker else None
    )
