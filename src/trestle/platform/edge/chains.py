"""The chain management routes, in Baseten's shapes (``ChainV1``, ``ChainDeploymentV1``, ``ChainletV1``).

POST   /v1/chains/deployments                          a chain push (the platform's own, like /v1/deployments)
GET    /v1/chains                                      ChainsV1
GET    /v1/chains/{c}                                  ChainV1
GET    /v1/chains/{c}/deployments                      ChainDeploymentsV1
GET    /v1/chains/{c}/deployments/{d}                  ChainDeploymentV1
POST   /v1/chains/{c}/deployments/{d}/deactivate       every chainlet drained, INACTIVE (not while serving)
GET    /v1/chains/{c}/environments                     {environments: [{name, chain_deployment_id}]}
POST   /v1/chains/{c}/environments/{e}/promote         {chain_deployment_id}: the environment switches at once
GET    /v1/chains/{c}/deployments/{d}/chainlets/{l}/logs   GetLogsResponseV1 (``{l}``: a chainlet's id or name)

``{c}`` is a chain id or name. The push body: ``{chain_name, entrypoint, environment?, development?,
chainlets: [{name, artifact, dependencies}]}``, each artifact uploaded before with ``PUT /v1/artifacts/{sha256}``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trestle.platform.control.chains import ChainletPush, ChainPush, Chains, chain_status
from trestle.platform.edge import log_search
from trestle.platform.edge.api import _json, route
from trestle.platform.edge.resources import TEAM_NAME, iso
from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.store.chains import Chain, ChainDeployment
from trestle.platform.store.states import DeploymentStatus


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key} is required (a string)")
    return value


def _required(body: dict[str, Any], key: str) -> str:
    value = _text(body, key)
    assert value is not None
    return value


def parse_push(body: dict[str, Any]) -> ChainPush:
    items = body.get("chainlets")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("chainlets is required: a list of {name, artifact, dependencies}")
    chainlets = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("each chainlet is an object {name, artifact, dependencies}")
        deps = item.get("dependencies") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise InvalidRequest("a chainlet's dependencies are a list of chainlet names")
        chainlets.append(ChainletPush(_required(item, "name"), _required(item, "artifact"), tuple(deps)))
    return ChainPush(
        _required(body, "chain_name"),
        _required(body, "entrypoint"),
        tuple(chainlets),
        _text(body, "environment", required=False),
        body.get("development") is True,
    )


class ChainsApi:
    def __init__(self, chains: Chains) -> None:
        self.chains = chains
        base = "/v1/chains/{chain}"
        self.routes: list[Route] = [
            route("/v1/chains/deployments", self.push, ["POST"]),
            route("/v1/chains", self.list_chains, ["GET"]),
            route(base, self.get_chain, ["GET"]),
            route(base + "/deployments", self.list_deployments, ["GET"]),
            route(base + "/deployments/{deployment}", self.get_deployment, ["GET"]),
            route(base + "/deployments/{deployment}/deactivate", self.deactivate, ["POST"]),
            route(base + "/environments", self.list_environments, ["GET"]),
            route(base + "/environments/{environment}/promote", self.promote, ["POST"]),
            route(base + "/deployments/{deployment}/chainlets/{chainlet}/logs", self.logs, ["GET", "POST"]),
        ]

    # views ---------------------------------------------------------------------------------------

    def _chain(self, chain: Chain) -> dict[str, Any]:
        return {
            "id": chain.id,
            "created_at": iso(chain.created_at),
            "name": chain.name,
            "deployments_count": len(self.chains.store.deployments(chain.id)),
            "team_name": TEAM_NAME,
        }

    def _deployment(self, cdep: ChainDeployment) -> dict[str, Any]:
        view = self.chains.deployment_view(cdep)
        view["created_at"] = iso(cdep.created_at)
        return view

    def _find(self, request: Request) -> tuple[Chain, ChainDeployment | None]:
        chain = self.chains.store.find_chain(request.path_params["chain"])
        ref = request.path_params.get("deployment")
        return chain, (self.chains.find_deployment(chain, ref) if ref is not None else None)

    # handlers ------------------------------------------------------------------------------------

    async def push(self, request: Request) -> Response:
        cdep = await self.chains.push(parse_push(await _json(request)))
        chain = self.chains.store.find_chain(cdep.chain_id)
        return JSONResponse({"chain": self._chain(chain), "deployment": self._deployment(cdep)}, status_code=201)

    async def list_chains(self, request: Request) -> Response:
        return JSONResponse({"chains": [self._chain(c) for c in self.chains.store.chains()]})

    async def get_chain(self, request: Request) -> Response:
        chain, _ = self._find(request)
        return JSONResponse(self._chain(chain))

    async def list_deployments(self, request: Request) -> Response:
        chain, _ = self._find(request)
        return JSONResponse({"deployments": [self._deployment(d) for d in self.chains.store.deployments(chain.id)]})

    async def get_deployment(self, request: Request) -> Response:
        _, cdep = self._find(request)
        assert cdep is not None
        return JSONResponse(self._deployment(cdep))

    async def deactivate(self, request: Request) -> Response:
        _, cdep = self._find(request)
        assert cdep is not None
        return JSONResponse(self._deployment(await self.chains.deactivate(cdep)))

    async def list_environments(self, request: Request) -> Response:
        chain, _ = self._find(request)
        envs = self.chains.store.environments(chain.id)
        return JSONResponse(
            {"environments": [{"name": name, "chain_deployment_id": target} for name, target in sorted(envs.items())]}
        )

    async def promote(self, request: Request) -> Response:
        chain, _ = self._find(request)
        body = await _json(request)
        cdep = self.chains.find_deployment(chain, _required(body, "chain_deployment_id"))
        state = chain_status(cdep, self.chains.controller.routes.status)
        if state != DeploymentStatus.ACTIVE.value:
            raise Conflict(f"chain deployment {cdep.id} is {state}: only an ACTIVE one can be promoted")
        environment = request.path_params["environment"]
        self.chains.promote(chain.id, environment, cdep.id)
        return JSONResponse(self._deployment(self.chains.store.get_deployment(cdep.id)))

    async def logs(self, request: Request) -> Response:
        _, cdep = self._find(request)
        assert cdep is not None
        ref = request.path_params["chainlet"]
        chainlet = next((c for c in cdep.chainlets if ref in (c.deployment_id, c.display_name)), None)
        if chainlet is None:
            raise NotFound(f"chain deployment {cdep.id} has no chainlet {ref!r}")
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST" and await request.body():
            params.update(await _json(request))
        query = log_search.parse_query(params)
        path = self.chains.controller.logs.path(chainlet.deployment_id)
        return JSONResponse({"logs": await log_search.search_logs(path, query)})
