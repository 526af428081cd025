"""The chain routes of the gateway: Baseten's chain invocation paths, resolved to a chainlet's deployment.

Under ``/chains/{chain id or name}``, or with no prefix for a ``Host: chain-{id}.<anything>``::

    /production/run_remote          /environments/{env}/run_remote      the environment's entrypoint
    /development/run_remote         /deployment/{chain deployment}/run_remote
    /deployment/{cdep}/chainlet/{name}/run_remote                       one chainlet (what chainlets call)
    ... /websocket (instead of run_remote)                               the websocket endpoint
    ... /async_run_remote (instead of run_remote)                        an async request (``edge/async_api.py``)
    ... /chainlet/{name}/sync/{path}                                     any path on that chainlet

``run_remote`` goes to the chainlet's ``/v1/models/model:predict``. Then the request is the gateway's
(``Gateway.forward``: load balancing, wake from zero, the load meter). A chain key (``store/keys.py``
``chain_id``) may call only its own chain. At the entry (any route but ``/chainlet/...``) a request
without ``x-baseten-request-id`` gets one, and ``x-baseten-chain-request-id`` is set to it: Chains'
stubs forward both, so every chainlet's log lines carry the entry's id.
"""

from __future__ import annotations

import dataclasses
import uuid

from starlette.types import Receive, Scope, Send

from trestle.platform.control.chains import ChainRoutes
from trestle.platform.edge.async_api import AsyncApi
from trestle.platform.edge.gateway import Gateway, GatewayError, send_error
from trestle.platform.store.keys import ApiKey

ASYNC = "async_predict"
"""The tail of an async request: answered by the async API (queued, then run on the chainlet)."""
_REQUEST_ID = b"x-baseten-request-id"
_CHAIN_REQUEST_ID = b"x-baseten-chain-request-id"


@dataclasses.dataclass(frozen=True)
class ChainRoute:
    """A parsed chain path: which chain deployment (or environment), which chainlet, which replica path."""

    environment: str | None
    chain_deployment_id: str | None
    chainlet: str | None
    """None: the entrypoint."""
    tail: str
    """The model gateway's route after ``/deployment/{id}/``: ``predict`` or ``sync/{path}``."""


def chain_from_host(host: str) -> str | None:
    """``chain-{id}.anything`` → ``{id}``."""
    if host.startswith("chain-") and "." in host:
        label = host.split(".", 1)[0]
        if len(label) > 6:
            return label[6:]
    return None


def split_chain_path(path: str) -> tuple[str, str] | None:
    """``/chains/{ref}/rest`` → (ref, /rest)."""
    if not path.startswith("/chains/"):
        return None
    ref, sep, rest = path[8:].partition("/")
    if not ref or not sep:
        return None
    return ref, "/" + rest


def _endpoint(tail: list[str], rest: str) -> str:
    if tail == ["run_remote"]:
        return "predict"
    if tail == ["websocket"]:
        return "sync/v1/websocket"
    if tail == ["async_run_remote"]:
        return ASYNC
    raise GatewayError(404, f"unknown chain route {rest!r}: use .../run_remote or .../websocket")


def parse_chain_route(rest: str) -> ChainRoute:
    parts = rest.strip("/").split("/")
    kind = parts[0]
    if kind in ("production", "development"):
        return ChainRoute(kind, None, None, _endpoint(parts[1:], rest))
    if kind == "environments" and len(parts) >= 3:
        return ChainRoute(parts[1], None, None, _endpoint(parts[2:], rest))
    if kind == "deployment" and len(parts) >= 3:
        cdep = parts[1]
        if parts[2] == "chainlet" and len(parts) >= 5:
            name, tail = parts[3], parts[4:]
            if tail[0] == "sync":
                return ChainRoute(None, cdep, name, "/".join(tail))
            return ChainRoute(None, cdep, name, _endpoint(tail, rest))
        return ChainRoute(None, cdep, None, _endpoint(parts[2:], rest))
    raise GatewayError(404, f"unknown chain route {rest!r}")


class ChainGateway:
    def __init__(self, routes: ChainRoutes, gateway: Gateway, async_api: AsyncApi) -> None:
        self.routes = routes
        self.gateway = gateway
        self.async_api = async_api

    def resolve(self, chain_ref: str, rest: str, key: ApiKey) -> tuple[str, str, bool]:
        """The chainlet's model id, the model gateway's route to it, and whether this is the chain's entry
        (not a hop between chainlets)."""
        chain = self.routes.chain(chain_ref)
        if chain is None or (key.chain_id is not None and key.chain_id != chain.id):
            # a chain key learns nothing about other chains: the same 404 as an unknown one
            raise GatewayError(404, f"no chain with id or name {chain_ref!r}")
        route = parse_chain_route(rest)
        cdep = route.chain_deployment_id
        if cdep is None:
            assert route.environment is not None
            cdep = chain.environments.get(route.environment)
            if cdep is None:
                hint = (
                    "push with `trestle chains push --promote`"
                    if route.environment == "production"
                    else ("push with `trestle chains push --environment NAME`")
                )
                raise GatewayError(404, f"chain {chain.name!r} has no deployment in {route.environment!r}; {hint}")
        chainlets = chain.deployments.get(cdep)
        if chainlets is None:
            raise GatewayError(404, f"chain {chain.name!r} has no deployment {cdep!r}")
        name = route.chainlet or chain.entrypoints[cdep]
        found = chainlets.get(name)
        if found is None:
            raise GatewayError(404, f"chain deployment {cdep} has no chainlet {name!r}")
        model_id, deployment_id = found
        return model_id, f"/deployment/{deployment_id}/{route.tail}", route.chainlet is None

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, chain_ref: str, rest: str, key: ApiKey
    ) -> None:
        try:
            model_id, model_rest, entry = self.resolve(chain_ref, rest, key)
        except GatewayError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await send_error(send, exc.status, exc.message, exc.code)
            return
        if entry:
            scope = _with_request_ids(scope)
        if model_rest.endswith("/" + ASYNC) and scope["type"] == "http":
            await self.async_api.handle(scope, receive, send, model_id, model_rest)
            return
        await self.gateway(scope, receive, send, model_id, model_rest)


def _with_request_ids(scope: Scope) -> Scope:
    """The entry request's id (the client's ``x-baseten-request-id`` or a new one) as both ids."""
    headers = list(scope["headers"])
    rid = next((v for k, v in headers if k == _REQUEST_ID), None)
    if rid is None:
        rid = uuid.uuid4().hex.encode()
        headers.append((_REQUEST_ID, rid))
    if not any(k == _CHAIN_REQUEST_ID for k, _ in headers):
        headers.append((_CHAIN_REQUEST_ID, rid))
    return {**scope, "headers": headers}
