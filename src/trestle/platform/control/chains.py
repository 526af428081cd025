"""Chains on the platform: a chain push deploys one ordinary deployment per chainlet and groups them.

What a chainlet replica needs, beyond an ordinary truss (``docs/15-chains.md``):

- ``dynamic_chainlet_config`` in its ``dynamic_config/`` dir: every chainlet of its chain deployment by
  display name, each with a ``predict_url`` through the gateway,
  ``{base}/chains/{chain id}/deployment/{chain deployment id}/chainlet/{name}/run_remote``: valid for the
  chain deployment's life, and load balanced, woken from zero and metered like any gateway request;
- ``TRUSS_SECRET_baseten_chain_api_key`` in its environment: the chain's own invoke key, which may call
  that chain's chainlets and nothing else (``edge/auth.py``).

Both are written by ``replica_env``, which the controller calls each time it builds a replica's spec.
The chain's routes (``ChainRoutes``) are in memory, rebuilt from the store on each change, so a chain
request reads no database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from trestle.platform.control.rules import PushRequest, check_environment_name
from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.settings import Settings
from trestle.platform.store.chains import Chain, ChainDeployment, ChainKeyFile, Chainlet, ChainStore, check_chain_name
from trestle.platform.store.database import Store
from trestle.platform.store.keys import KeyStore, KeyType
from trestle.platform.store.states import DEVELOPMENT, DeploymentStatus

__all__ = ["ChainPush", "ChainRoutes", "Chains", "ChainletPush", "chain_status"]

S = DeploymentStatus
CHAIN_KEY_SECRET = "baseten_chain_api_key"
DYNAMIC_CHAINLET_CONFIG = "dynamic_chainlet_config"
_FAILED = (S.BUILD_FAILED, S.DEPLOY_FAILED)


@dataclasses.dataclass(frozen=True)
class ChainletPush:
    display_name: str
    artifact: str
    dependencies: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ChainPush:
    chain_name: str
    entrypoint: str
    chainlets: tuple[ChainletPush, ...]
    environment: str | None = None
    """Where the chain deployment goes once all its chainlets are ACTIVE (``--promote``: production)."""
    development: bool = False
    """The chain's development deployment (``push --watch``): its chainlets are development deployments, so
    ``trestle chains watch`` can patch them; it is the chain's ``development`` at once."""


@dataclasses.dataclass
class ChainView:
    id: str
    name: str
    environments: dict[str, str | None]
    deployments: dict[str, dict[str, tuple[str, str]]]
    """chain deployment id → chainlet display name → (model id, deployment id)"""
    entrypoints: dict[str, str]
    """chain deployment id → the entrypoint's display name"""


class ChainRoutes:
    """Chains by id and by name (ids win), for the gateway: memory only."""

    def __init__(self) -> None:
        self._chains: dict[str, ChainView] = {}

    def rebuild(self, chains: ChainStore, store: Store) -> None:
        by_id: dict[str, ChainView] = {}
        for chain in chains.chains():
            view = ChainView(chain.id, chain.name, chains.environments(chain.id), {}, {})
            for cdep in chains.deployments(chain.id):
                view.deployments[cdep.id] = {
                    c.display_name: (store.get_deployment(c.deployment_id).model_id, c.deployment_id)
                    for c in cdep.chainlets
                }
                view.entrypoints[cdep.id] = cdep.entrypoint
            by_id[chain.id] = view
        table = {view.name: view for view in by_id.values()}
        table.update(by_id)
        self._chains = table

    def chain(self, ref: str) -> ChainView | None:
        return self._chains.get(ref)


def chain_status(cdep: ChainDeployment, status: dict[str, DeploymentStatus]) -> str:
    """ACTIVE when every chainlet is; a failed chainlet fails it; else the first chainlet not ACTIVE."""
    states = [status.get(c.deployment_id) for c in cdep.chainlets]
    if len(states) < len(cdep.names):
        return S.BUILDING.value  # still being pushed
    failed = next((s for s in states if s in _FAILED), None)
    if failed is not None:
        return failed.value
    for s in states:
        if s is not S.ACTIVE:
            return s.value if s is not None else S.BUILDING.value
    return S.ACTIVE.value


class Chains:
    """Chain pushes, promotion, the per-replica hook and the views; ``controller`` is the platform's."""

    def __init__(self, controller: Any, keys: KeyStore) -> None:
        self.controller = controller
        self.settings: Settings = controller.settings
        self.keys = keys
        self.store = ChainStore(controller.store)
        self.key_files = ChainKeyFile(self.settings.data_dir)
        self.routes = ChainRoutes()
        self.routes.rebuild(self.store, self.deployments_store)
        self._waiters: set[asyncio.Task[None]] = set()

    @property
    def deployments_store(self) -> Store:
        store: Store = self.controller.store
        return store

    def base_url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.settings.port}"

    # push ----------------------------------------------------------------------------------------

    def _check(self, push: ChainPush) -> None:
        check_chain_name(push.chain_name)
        names = [c.display_name for c in push.chainlets]
        if not names:
            raise InvalidRequest("a chain needs at least one chainlet")
        if len(set(names)) != len(names):
            raise InvalidRequest("chainlet names must be unique")
        if push.entrypoint not in names:
            raise InvalidRequest(f"the entrypoint {push.entrypoint!r} is not one of the chainlets {names}")
        for c in push.chainlets:
            missing = [d for d in c.dependencies if d not in names]
            if missing:
                raise InvalidRequest(f"chainlet {c.display_name!r} depends on {missing}, which the push lacks")
        if push.environment is not None:
            check_environment_name(push.environment)
            if push.development:
                raise InvalidRequest("a development chain deployment (--watch) cannot go to an environment")

    async def push(self, push: ChainPush) -> ChainDeployment:
        self._check(push)
        chain, _ = self.store.get_or_create_chain(push.chain_name)
        if self.key_files.read(chain.id) is None:
            secret, _ = self.keys.create(KeyType.WORKSPACE_INVOKE, f"chain {chain.name}", chain_id=chain.id)
            await asyncio.to_thread(self.key_files.write, chain.id, secret)
        cdep = self.store.create_deployment(
            chain.id, push.entrypoint, [c.display_name for c in push.chainlets], push.environment
        )
        try:
            for c in push.chainlets:
                # a model per chainlet per chain deployment, as Baseten makes them: the model's cleanup rule
                # (older published deployments scale to zero) must not reach the chainlets of a chain environment
                name = f"{chain.name}.{c.display_name}.{cdep.id}"
                request = PushRequest(artifact=c.artifact, model_name=name, development=push.development)
                dep, _warnings = await self.controller.push(request)
                # no await between the push's return and this row: the deployment's pipeline (which asks
                # ``replica_env`` for this row) runs only once this coroutine yields
                self.store.add_chainlet(cdep.id, Chainlet(c.display_name, dep.id, c.dependencies))
        except BaseException:
            self.store.delete_deployment(cdep.id)  # refused midway (an artifact, the host): no half chain
            raise
        if push.development:
            self.store.promote(chain.id, DEVELOPMENT, cdep.id)
        self.routes.rebuild(self.store, self.deployments_store)
        if push.environment is not None:
            self._spawn_promotion(chain.id, push.environment, cdep.id)
        return self.store.get_deployment(cdep.id)

    def _spawn_promotion(self, chain_id: str, environment: str, chain_deployment_id: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._promote_when_active(chain_id, environment, chain_deployment_id)
        )
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    async def _promote_when_active(self, chain_id: str, environment: str, chain_deployment_id: str) -> None:
        """Switch the environment once every chainlet is ACTIVE (the old chain deployment serves until then)."""
        while True:
            cdep = self.store.get_deployment(chain_deployment_id)
            if cdep.target_environment != environment:
                return  # promoted elsewhere meanwhile
            state = chain_status(cdep, self.controller.routes.status)
            if state == S.ACTIVE.value:
                self.promote(chain_id, environment, chain_deployment_id)
                return
            if state in (S.BUILD_FAILED.value, S.DEPLOY_FAILED.value):
                return
            await asyncio.sleep(0.2)

    def promote(self, chain_id: str, environment: str, chain_deployment_id: str) -> None:
        check_environment_name(environment)
        self.store.promote(chain_id, environment, chain_deployment_id)
        self.routes.rebuild(self.store, self.deployments_store)

    async def deactivate(self, cdep: ChainDeployment) -> ChainDeployment:
        """Drain and stop every chainlet (each one INACTIVE); refused for one an environment serves."""
        serving = sorted(name for name, target in self.store.environments(cdep.chain_id).items() if target == cdep.id)
        if serving:
            raise Conflict(f"chain deployment {cdep.id} serves {', '.join(serving)}: promote another one there first")
        for chainlet in cdep.chainlets:
            await self.controller.deactivate(chainlet.deployment_id)
        return self.store.get_deployment(cdep.id)

    async def aclose(self) -> None:
        for task in list(self._waiters):
            task.cancel()

    # the per-replica hook ------------------------------------------------------------------------

    def replica_env(self, deployment_id: str) -> dict[str, str]:
        """For a chainlet's replica: write its ``dynamic_chainlet_config`` and return the env with the
        chain's key; ``{}`` for any other deployment."""
        found = self.store.chainlet_of(deployment_id)
        if found is None:
            return {}
        cdep, _chainlet = found
        base = self.base_url()
        config = {name: {"predict_url": chainlet_url(base, cdep.chain_id, cdep.id, name)} for name in cdep.names}
        directory = self.settings.environment_file(deployment_id).parent
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DYNAMIC_CHAINLET_CONFIG).write_text(json.dumps(config))
        key = self.key_files.read(cdep.chain_id)
        return {f"TRUSS_SECRET_{CHAIN_KEY_SECRET}": key} if key is not None else {}

    # views ---------------------------------------------------------------------------------------

    def chain_view(self, chain: Chain) -> dict[str, Any]:
        deployments = self.store.deployments(chain.id)
        return {
            "id": chain.id,
            "name": chain.name,
            "created_at": chain.created_at,
            "deployments_count": len(deployments),
            "environments": self.store.environments(chain.id),
        }

    def deployment_view(self, cdep: ChainDeployment) -> dict[str, Any]:
        status = self.controller.routes.status
        envs = [name for name, target in self.store.environments(cdep.chain_id).items() if target == cdep.id]
        return {
            "id": cdep.id,
            "chain_id": cdep.chain_id,
            "created_at": cdep.created_at,
            "status": chain_status(cdep, status),
            "environment": envs[0] if envs else None,
            "target_environment": cdep.target_environment,
            "entrypoint": cdep.entrypoint,
            "chainlets": [self.chainlet_view(cdep, c) for c in cdep.chainlets],
        }

    def chainlet_view(self, cdep: ChainDeployment, chainlet: Chainlet) -> dict[str, Any]:
        state = self.controller.routes.status.get(chainlet.deployment_id)
        dep = self.deployments_store.get_deployment(chainlet.deployment_id)
        return {  # Baseten's ChainletV1, plus the platform's own fields after it
            "id": chainlet.deployment_id,
            "name": chainlet.display_name,
            "autoscaling_settings": None,
            "instance_type_name": "local",
            "active_replica_count": dep.replicas if state is S.ACTIVE else 0,
            "status": state.value if state is not None else S.BUILDING.value,
            "is_entrypoint": chainlet.display_name == cdep.entrypoint,
            "deployment_id": chainlet.deployment_id,
            "model_id": dep.model_id,
            "dependencies": list(chainlet.dependencies),
        }

    def find_deployment(self, chain: Chain, ref: str) -> ChainDeployment:
        cdep = self.store.get_deployment(ref)
        if cdep.chain_id != chain.id:
            raise NotFound(f"chain {chain.name!r} has no deployment {ref!r}")
        return cdep


def chainlet_url(base: str, chain_id: str, chain_deployment_id: str, display_name: str) -> str:
    return f"{base}/chains/{chain_id}/deployment/{chain_deployment_id}/chainlet/{display_name}/run_remote"
