"""One ASGI app for the whole platform: auth, then the gateway (``/models/...`` or a
``model-{id}.`` Host) or the control API (``/v1/...``, including the log stream)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
from typing import Any

from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from trestle.asgi.server import Server
from trestle.errors import PlatformError
from trestle.platform.control.chains import Chains
from trestle.platform.control.controller import Controller, open_controller, terminal
from trestle.platform.control.recovery import recover
from trestle.platform.edge.api import ControlApi
from trestle.platform.edge.async_api import AsyncApi, is_async_path
from trestle.platform.edge.auth import SCOPE_KEY, Access, access_for, parse_authorization, refusal
from trestle.platform.edge.chain_gateway import ChainGateway, chain_from_host, split_chain_path
from trestle.platform.edge.chains import ChainsApi
from trestle.platform.edge.dashboard.app import DashboardApp
from trestle.platform.edge.feeds import FeedsApi
from trestle.platform.edge.front import GatewayFront, front_protocol, parse_target
from trestle.platform.edge.gateway import Gateway, send_error
from trestle.platform.edge.management import ManagementApi
from trestle.platform.edge.metrics_export import MetricsExport
from trestle.platform.edge.relay import MAX_RELAY_BODY, Relay, open_relay
from trestle.platform.edge.resources import ResourcesApi
from trestle.platform.edge.urls import gateway_target, model_from_host
from trestle.platform.settings import Settings
from trestle.platform.store.keys import KeyStore
from trestle.platform.store.lock import DataDirLock
from trestle.platform.store.secrets import SecretStore

ENGINE_ARTIFACTS = "/v1/engine-artifacts/"


class PlatformApp:
    def __init__(self, settings: Settings, controller: Controller | None = None) -> None:
        self.settings = settings
        self.controller = controller or open_controller(settings)
        self.keys = KeyStore(self.controller.store)
        self.secrets = SecretStore(self.controller.store, settings.secrets_dir)
        self.api = ControlApi(self.controller)
        self.management = ManagementApi(self.keys, self.secrets)
        self.resources = ResourcesApi(self.controller, self.api)
        self.metrics = MetricsExport(self.controller)
        self.feeds = FeedsApi(self.controller)
        self.chains = Chains(self.controller, self.keys)  # Truss Chains (docs/15-chains.md)
        self.controller.replica_env_hook = self.chains.replica_env
        self.chains_api = ChainsApi(self.chains)
        # Baseten-shaped routes first (they answer where both match), then the platform's own
        self.router = Router(
            [
                *self.management.routes,
                *self.resources.routes,
                *self.metrics.routes,
                *self.feeds.routes,
                *self.chains_api.routes,
                *self.api.router.routes,
            ]
        )
        self.gateway = Gateway(
            self.controller.routes,
            self.controller.engine,
            wake=self.controller.wake,
            wait_seconds=settings.gateway_wait_seconds,
            upstream_timeout=settings.gateway_upstream_timeout_seconds,
            ws_max_bytes=settings.ws_max_bytes,
            traffic=self.controller.traffic,
        )
        self.async_api = AsyncApi(settings, self.controller, self.gateway)  # async inference
        self.chain_gateway = ChainGateway(self.chains.routes, self.gateway, self.async_api)
        self.dashboard: DashboardApp | None = None
        """The web dashboard (``edge/dashboard/``), on ``settings.dashboard_port``: requests that arrive
        on that port go to it, never to the API or the gateway directly."""
        if settings.dashboard_port is not None:
            self.dashboard = DashboardApp(self, self.keys, settings.port)

    def ensure_key(self, key: str | None) -> str | None:
        """Register ``key`` as the platform's first (manage) key, revoking an earlier different one, or
        generate one when the platform has none; returns a generated key to show (once)."""
        return self.keys.register_bootstrap(key)

    async def startup(self) -> None:
        await recover(self.controller)
        self.controller.start_autoscaler()
        await self.async_api.start()

    def begin_shutdown(self) -> None:
        """At SIGINT/SIGTERM, before uvicorn waits for open connections: end the live streams (events, logs)."""
        self.feeds.close()
        self.controller.logs.end_follows()

    async def shutdown(self) -> None:
        running = len(
            [dep for dep in self.controller.store.deployments() if self.controller.engine.replica_set(dep.id)]
        )
        terminal.info(f"shutting down: draining and stopping the replicas of {running} deployment(s)")
        await self.async_api.aclose()
        await self.chains.aclose()
        await self.controller.close()
        await self.gateway.aclose()
        if self.dashboard is not None:
            await self.dashboard.aclose()
        terminal.info("stopped")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.dashboard is not None and (scope.get("server") or ("", 0))[1] == self.settings.dashboard_port:
            await self.dashboard(scope, receive, send)  # its own sign-in and session checks, then the API
            return
        authorization = None
        host = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        path: str = scope["path"]
        if kind == "http" and path.startswith(ENGINE_ARTIFACTS):
            await self.api.router(scope, receive, send)  # signed paths: the signature is the credential
            return
        key = self.keys.lookup(parse_authorization(authorization))
        if key is None:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_error(send, 401, "missing or invalid API key: send `Authorization: Api-Key <key>`")
            return
        chain_ref = chain_from_host(host)
        chain_target = (chain_ref, path) if chain_ref is not None and not path.startswith("/v1/") else None
        chain_target = chain_target or split_chain_path(path)
        if chain_target is not None or key.chain_id is not None:
            # a chain route; a chain's own key may call nothing else (its chain is checked there)
            refused = "this API key may only invoke its chain's chainlets" if chain_target is None else None
            refused = refused or refusal(key, access_for(path, gateway=True))
            if refused is not None or chain_target is None:
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send_error(send, 403, refused or "")
                return
            await self.chain_gateway(scope, receive, send, chain_target[0], chain_target[1], key)
            return
        model_ref = model_from_host(host)
        target = gateway_target(path, model_ref)
        refused = refusal(key, access_for(path, gateway=target is not None))
        if refused is not None:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_error(send, 403, refused)
            return
        if (
            kind == "http"
            and is_async_path(path)
            and await self.async_api.handle(scope, receive, send, model_ref, path)
        ):
            return  # async inference: edge/async_api.py (after the key's access check)
        if target is not None:
            await self.gateway(scope, receive, send, target[0], target[1])
            return
        if kind == "http":
            scope[SCOPE_KEY] = key
            await self.router(scope, receive, send)
            return
        await send({"type": "websocket.close", "code": 1008})

    def relay(
        self, front: GatewayFront, method: str, url: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> Relay | None:
        """The platform port's fast path (``front.py``): a started relay when the request is a plain gateway
        call its key may make (no chain, not async, not on the dashboard's port, no chunked or large body,
        not ``HEAD``), else None and the request takes ``__call__`` as any other."""
        if method == "HEAD" or (
            self.dashboard is not None and (front.server or ("", 0))[1] == self.settings.dashboard_port
        ):
            return None
        parsed = parse_target(url)
        if parsed is None:
            return None
        path, query = parsed
        authorization = b""
        host = b""
        length = 0
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"host":
                host = value
            elif name == b"content-length":
                if not value.isdigit() or len(value) > 12:
                    return None
                length = int(value)
            elif name == b"transfer-encoding":
                return None
        if length > MAX_RELAY_BODY or path.startswith(ENGINE_ARTIFACTS) or is_async_path(path):
            return None
        key = self.keys.lookup(parse_authorization(authorization.decode("latin-1")))
        if key is None or key.chain_id is not None or refusal(key, Access.INVOKE) is not None:
            return None
        host_text = host.decode("latin-1")
        if chain_from_host(host_text) is not None or split_chain_path(path) is not None:
            return None
        target = gateway_target(path, model_from_host(host_text))
        if target is None:
            return None
        return open_relay(self.gateway, front, target[0], target[1], method, query, headers, length, keep_alive)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def listen(host: str, port: int) -> socket.socket:
    """The platform's listening socket, bound before anything else happens (a key, the store)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise PlatformError(f"cannot listen on {host}:{port}: {exc}", status=400) from None
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on every loop
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PlatformError(
                f"{host}:{port} is already in use: stop what listens there, or pass another --port", status=409
            ) from None
        raise PlatformError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", status=400) from None
    return sock


def _print_events() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    terminal.addHandler(handler)
    terminal.setLevel(logging.INFO)
    terminal.propagate = False


def serve(settings: Settings, api_key: str | None = None, announce: Any = print) -> None:
    """Run the platform in the foreground until SIGINT/SIGTERM (replicas are drained on the way out).

    Refused before anything is written to the store (or a key is made) when another platform holds
    the data dir or the port is taken: both raise ``PlatformError``.
    """
    lock = DataDirLock(settings.data_dir)
    lock.acquire(f"http://{settings.host}:{settings.port}")
    try:
        if settings.dashboard_port == settings.port:
            raise PlatformError("--dashboard-port must be another port than --port", status=400)
        sockets = [listen(settings.host, settings.port)]
        if settings.dashboard_port is not None:
            try:
                sockets.append(listen(settings.host, settings.dashboard_port))
            except PlatformError:
                sockets[0].close()
                raise
        _serve(settings, api_key, announce, sockets)
    finally:
        lock.release()


def _serve(settings: Settings, api_key: str | None, announce: Any, sockets: list[socket.socket]) -> None:
    import uvicorn

    _print_events()
    app = PlatformApp(settings)
    new_key = app.ensure_key(api_key)
    url = f"http://{settings.host}:{settings.port}"
    announce(f"Trestle platform on {url}  (data: {settings.data_dir})")
    if app.controller.gpus is not None:
        announce(app.controller.gpus.inventory.banner())
    if app.controller.limits is not None:
        announce(app.controller.limits.banner())
    if settings.dashboard_port is not None:
        announce(f"Dashboard on http://{settings.host}:{settings.dashboard_port}  (sign in with an API key)")
    if new_key:
        announce(f"API key (shown once, stored hashed): {new_key}")
        announce(f"  trestle login --remote {url} --api-key {new_key}")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=60,
        ws_max_size=settings.ws_max_bytes,
        # The gateway is on every request's path: the same fast stack as the model server, with the same
        # head/body limits and deadlines (before auth); each client connection may hold an upstream one.
        loop="uvloop",
        # plain gateway calls are relayed by the protocol itself (edge/front.py, edge/relay.py)
        http=front_protocol(settings.connection_limits, app, fds_per_connection=2),
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    server = Server(config)  # exits 0 after a clean SIGTERM drain (uvicorn's re-raises the signal)
    handle_exit = server.handle_exit

    def stopping(sig: int, frame: Any) -> None:
        # the dashboard's open streams would otherwise hold the drain for 60 s; on the loop, not in the handler
        try:
            asyncio.get_running_loop().call_soon_threadsafe(app.begin_shutdown)
        except RuntimeError:
            app.begin_shutdown()
        handle_exit(sig, frame)

    server.handle_exit = stopping  # type: ignore[method-assign]
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    sys.stdout.flush()
