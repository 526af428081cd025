"""The gateway's routing table, held in memory and rebuilt from the store when anything changes,
so that no request touches the database."""

from __future__ import annotations

import dataclasses

from trestle.platform.store.database import Store
from trestle.platform.store.states import DEVELOPMENT, DeploymentStatus


@dataclasses.dataclass
class ModelRoutes:
    model_id: str
    name: str
    environments: dict[str, str | None]
    development: str | None
    deployments: set[str]


class RouteTable:
    def __init__(self) -> None:
        self._models: dict[str, ModelRoutes] = {}
        self.status: dict[str, DeploymentStatus] = {}
        self.reject_when_full: dict[str, int] = {}
        """Deployments with the ``REJECT_ON_FULL`` backpressure policy: each replica's concurrency."""

    def rebuild(self, store: Store) -> None:
        models: dict[str, ModelRoutes] = {}
        by_id: dict[str, ModelRoutes] = {}
        for model in store.models():
            routes = ModelRoutes(model.id, model.name, {}, None, set())
            by_id[model.id] = routes
        for env in store.environments():
            by_id[env.model_id].environments[env.name] = env.deployment_id
        status: dict[str, DeploymentStatus] = {}
        reject: dict[str, int] = {}
        for dep in store.deployments():
            if dep.info.get("request_backpressure_policy") == "REJECT_ON_FULL":
                reject[dep.id] = max(1, int(dep.info.get("backpressure_capacity") or 1))
            routes = by_id[dep.model_id]
            routes.deployments.add(dep.id)
            if dep.is_development:
                routes.development = dep.id
            status[dep.id] = dep.status
        for routes in by_id.values():
            models[routes.name] = routes
        models.update(by_id)  # ids win over names when they collide
        self._models = models
        self.status = status
        self.reject_when_full = reject

    def model(self, ref: str) -> ModelRoutes | None:
        return self._models.get(ref)

    def models(self) -> list[ModelRoutes]:
        """Every model once (the table maps both ids and names)."""
        return list({id(routes): routes for routes in self._models.values()}.values())

    def set_status(self, deployment_id: str, status: DeploymentStatus) -> None:
        self.status[deployment_id] = status

    @staticmethod
    def environment_deployment(routes: ModelRoutes, env: str) -> str | None:
        if env == DEVELOPMENT:
            return routes.development
        return routes.environments.get(env)
