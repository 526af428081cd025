"""Baseten's management routes for models, deployments and environments, in Baseten's shapes
(``ModelV1``, ``DeploymentV1``, ``EnvironmentV1`` of its public OpenAPI document).

GET    /v1/models                                   ModelsV1 (plus the platform's own fields)
GET    /v1/models/{m}                               ModelV1            DELETE: ModelTombstoneV1
GET    /v1/models/{m}/deployments                   DeploymentsV1
GET    /v1/models/{m}/deployments/{d}               DeploymentV1       DELETE: DeploymentTombstoneV1
PATCH  /v1/models/{m}/deployments/{d}               {name}
POST   /v1/models/{m}/deployments/{d}/activate|deactivate|promote|retry
GET    /v1/models/{m}/deployments/{d}/logs          GetLogsResponseV1 (Baseten's filters: edge/log_search.py)
GET    /v1/models/{m}/deployments/{d}/metrics       GetModelMetricsResponseV1 (CURRENT, SUMMARY, SERIES)
PATCH  /v1/models/{m}/deployments/{d}/autoscaling_settings           {status: ACCEPTED|UNCHANGED, message}
PATCH  /v1/models/{m}/deployments/{d}/request_backpressure_settings  {policy}
GET    /v1/models/{m}/environments                  EnvironmentsV1 (plus the platform's own fields)
POST   /v1/models/{m}/environments                  {name, autoscaling_settings?}
GET    /v1/models/{m}/environments/{e}              EnvironmentV1      PATCH {autoscaling_settings}; DELETE
GET    /v1/models/{m}/environments/{e}/metrics      GetModelMetricsResponseV1 (the history of whichever
                                                    deployment was in the environment at each step)
POST   /v1/models/{m}/environments/{e}/promote      {deployment_id, scale_down_previous_deployment, ...}

``{m}`` is a model id (or name); ``{d}`` a deployment id, ``production`` or ``development``.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trestle.platform.control.controller import Controller
from trestle.platform.control.history import deployment_key, environment_key
from trestle.platform.control.rules import DEPLOYMENT_NAME, check_environment_name
from trestle.platform.edge import log_search
from trestle.platform.edge.api import ControlApi, _json, route
from trestle.platform.edge.metrics_export import metrics_answer, window_of
from trestle.platform.errors import Conflict, InvalidRequest, NotFound
from trestle.platform.store.database import Deployment, Environment, Model
from trestle.platform.store.scaling import MAX_REPLICAS, Autoscaling
from trestle.platform.store.states import DEVELOPMENT, PRODUCTION, DeploymentStatus

TEAM_NAME = "default"
INSTANCE_TYPE = "local"
"""The local engine runs replicas as processes on the platform's host: one instance type."""

BACKPRESSURE_POLICIES = ("QUEUE_ON_FULL", "REJECT_ON_FULL")

# Baseten's autoscaling fields: (our setting, lowest, highest or None, default shown when unset)
_AUTOSCALING: dict[str, tuple[str | None, int, int | None]] = {
    "min_replica": ("min_replicas", 0, MAX_REPLICAS),
    "max_replica": ("max_replicas", 1, MAX_REPLICAS),
    "autoscaling_window": ("autoscaling_window", 10, 3600),
    "scale_down_delay": ("scale_down_delay", 0, 3600),
    "concurrency_target": ("concurrency_target", 1, None),
    "target_utilization_percentage": (None, 1, 100),
}
_UNSUPPORTED = ("target_in_flight_tokens", "max_scale_down_rate")
TARGET_UTILIZATION_DEFAULT = 70


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat()


def autoscaling_settings(info: dict[str, Any], policy: Autoscaling) -> dict[str, Any]:
    """``AutoscalingSettingsV1`` from the platform's settings (``info``: the deployment's extra fields)."""
    return {
        "min_replica": policy.min_replicas,
        "max_replica": policy.max_replicas,
        "autoscaling_window": round(policy.autoscaling_window),
        "scale_down_delay": round(policy.scale_down_delay),
        "concurrency_target": max(1, round(policy.concurrency_target)),
        "target_utilization_percentage": info.get("target_utilization_percentage", TARGET_UTILIZATION_DEFAULT),
    }


def parse_autoscaling(body: object) -> tuple[dict[str, Any], int | None]:
    """Baseten's ``UpdateAutoscalingSettingsV1`` → (the platform's setting changes, target utilization);
    a value out of range is a 400 naming the field and its range."""
    if not isinstance(body, dict):
        raise InvalidRequest("autoscaling settings must be a JSON object")
    changes: dict[str, Any] = {}
    utilization: int | None = None
    for field, value in body.items():
        if value is None:
            continue
        if field in _UNSUPPORTED:
            raise InvalidRequest(f"{field} is not supported by this platform")
        if field not in _AUTOSCALING:
            raise InvalidRequest(f"unknown autoscaling setting {field!r}: use {', '.join(_AUTOSCALING)}")
        ours, low, high = _AUTOSCALING[field]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{field} must be a whole number")
        if value < low or (high is not None and value > high):
            shown = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise InvalidRequest(f"{field} must be {shown} (got {value})")
        if ours is None:
            utilization = value
        elif field == "scale_down_delay" and value == 0:
            changes[ours] = 0.001  # the platform's setting is a positive number of seconds: 0 means at once
        else:
            changes[ours] = value
    return changes, utilization


class ResourcesApi:
    def __init__(self, controller: Controller, api: ControlApi) -> None:
        self.ctrl = controller
        self.api = api
        base = "/v1/models/{ref}"
        dep = base + "/deployments/{dep}"
        env = base + "/environments/{env}"
        self.routes = [
            route("/v1/models", self.list_models, ["GET"]),
            route(base, self.get_model, ["GET"]),
            route(base, self.delete_model, ["DELETE"]),
            route(base + "/deployments", self.list_deployments, ["GET"]),
            route(dep, self.get_deployment, ["GET"]),
            route(dep, self.delete_deployment, ["DELETE"]),
            route(dep, self.rename_deployment, ["PATCH"]),
            route(dep + "/activate", self.activate, ["POST"]),
            route(dep + "/deactivate", self.deactivate, ["POST"]),
            route(dep + "/promote", self.promote_deployment, ["POST"]),
            route(dep + "/retry", self.retry, ["POST"]),
            route(dep + "/replicas/{replica_id}", self.terminate_replica, ["DELETE"]),
            route(dep + "/autoscaling_settings", self.deployment_autoscaling, ["PATCH"]),
            route(dep + "/request_backpressure_settings", self.deployment_backpressure, ["PATCH"]),
            route(dep + "/logs", self.deployment_logs, ["GET", "POST"]),
            route(dep + "/metrics", self.deployment_metrics, ["GET"]),
            route(base + "/environments", self.list_environments, ["GET"]),
            route(base + "/environments", self.create_environment, ["POST"]),
            route(env, self.get_environment, ["GET"]),
            route(env, self.update_environment, ["PATCH"]),
            route(env, self.delete_environment, ["DELETE"]),
            route(env + "/promote", self.promote_to_environment, ["POST"]),
            route(env + "/logs", self.environment_logs, ["GET", "POST"]),
            route(env + "/metrics", self.environment_metrics, ["GET"]),
        ]

    # lookups ---------------------------------------------------------------------------------

    def _model(self, request: Request) -> Model:
        return self.ctrl.store.find_model(request.path_params["ref"])

    def _deployment(self, request: Request) -> tuple[Model, Deployment]:
        model = self._model(request)
        ref = request.path_params["dep"]
        store = self.ctrl.store
        if ref == DEVELOPMENT:
            dep = store.development_deployment(model.id)
            if dep is None:
                raise NotFound(f"model {model.name!r} has no development deployment")
            return model, dep
        if ref == PRODUCTION:
            env = store.get_environment(model.id, PRODUCTION)
            if env is None or env.deployment_id is None:
                raise NotFound(f"model {model.name!r} has no production deployment")
            return model, store.get_deployment(env.deployment_id)
        dep = store.get_deployment(ref)
        if dep.model_id != model.id:
            raise NotFound(f"model {model.name!r} has no deployment {ref!r}")
        return model, dep

    def _environment(self, request: Request) -> tuple[Model, Environment]:
        model = self._model(request)
        name = request.path_params["env"]
        env = self.ctrl.store.get_environment(model.id, name)
        if env is None:
            raise NotFound(f"model {model.name!r} has no environment {name!r}")
        return model, env

    # views -----------------------------------------------------------------------------------

    def model_view(self, request: Request, model: Model) -> dict[str, Any]:
        """``ModelV1`` plus the platform's own fields (url, environments)."""
        view = self.api.model_view(request, model)
        view.update(
            {
                "created_at": iso(model.created_at),
                "deployments_count": len(self.ctrl.store.deployments(model.id)),
                "instance_type_name": INSTANCE_TYPE,
                "team_name": TEAM_NAME,
            }
        )
        return view

    def deployment_view(self, dep: Deployment) -> dict[str, Any]:
        """``DeploymentV1``."""
        environments = self.ctrl.store.environments_of(dep.id)
        ready = sum(1 for replica in self.ctrl.engine.report(dep.id) if replica.ready)
        return {
            "id": dep.id,
            "created_at": iso(dep.created_at),
            "name": dep.name or (DEVELOPMENT if dep.is_development else dep.id),
            "model_id": dep.model_id,
            "is_production": PRODUCTION in environments,
            "is_development": dep.is_development,
            "status": dep.status.value,
            "active_replica_count": ready,
            "autoscaling_settings": autoscaling_settings(dep.info, self.ctrl.autoscaling_of(dep)),
            "instance_type_name": INSTANCE_TYPE,
            "environment": environments[0] if environments else None,
            "labels": dep.info.get("labels"),
            "region": None,
            "request_backpressure_settings": {"policy": dep.info.get("request_backpressure_policy")},
        }

    def environment_view(self, model: Model, env: Environment) -> dict[str, Any]:
        """``EnvironmentV1``: its current deployment, and the one waiting to become it (a promotion of a
        deployment that is not ACTIVE yet)."""
        store = self.ctrl.store
        current = store.get_deployment(env.deployment_id) if env.deployment_id else None
        candidate = next(
            (
                dep
                for dep in store.deployments(model.id)
                if dep.target_environment == env.name and dep.status not in _ENDED and dep.id != env.deployment_id
            ),
            None,
        )
        policy_dep = current or candidate
        if policy_dep is not None:
            scaling = autoscaling_settings(policy_dep.info, self.ctrl.autoscaling_of(policy_dep))
        else:
            scaling = autoscaling_settings({}, Autoscaling())
        return {
            "name": env.name,
            "created_at": iso(env.created_at),
            "model_id": model.id,
            "current_deployment": self.deployment_view(current) if current else None,
            "candidate_deployment": self.deployment_view(candidate) if candidate else None,
            "in_progress_promotion": None,
            "autoscaling_settings": scaling,
            "promotion_settings": {
                "redeploy_on_promotion": False,
                "rolling_deploy": False,
                "promotion_cleanup_strategy": "SCALE_TO_ZERO",
                "ramp_up_while_promoting": False,
            },
            "instance_type": {
                "id": INSTANCE_TYPE,
                "name": INSTANCE_TYPE,
                "memory_limit_mib": 0,
                "millicpu_limit": 0,
                "gpu_count": 0,
                "gpu_type": None,
                "gpu_memory_limit_mib": None,
            },
            "request_backpressure_settings": {
                "policy": (policy_dep.info.get("request_backpressure_policy") if policy_dep else None)
            },
        }

    # models ----------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"models": [self.model_view(request, m) for m in self.ctrl.store.models()]})

    async def get_model(self, request: Request) -> Response:
        return JSONResponse(self.model_view(request, self._model(request)))

    async def delete_model(self, request: Request) -> Response:
        model = self._model(request)
        await self.ctrl.delete_model(model.id)
        return JSONResponse({"id": model.id, "deleted": True})

    # deployments -----------------------------------------------------------------------------

    async def list_deployments(self, request: Request) -> Response:
        model = self._model(request)
        return JSONResponse({"deployments": [self.deployment_view(d) for d in self.ctrl.store.deployments(model.id)]})

    async def get_deployment(self, request: Request) -> Response:
        return JSONResponse(self.deployment_view(self._deployment(request)[1]))

    async def delete_deployment(self, request: Request) -> Response:
        model, dep = self._deployment(request)
        await self.ctrl.delete_deployment(dep.id)
        return JSONResponse({"id": dep.id, "deleted": True, "model_id": model.id})

    async def rename_deployment(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        body = await _json(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("name is required (the deployment's new name)")
        if dep.is_development:
            raise InvalidRequest("a development deployment cannot be named")
        if not DEPLOYMENT_NAME.match(name):
            raise InvalidRequest(f"invalid deployment name {name!r}: use [0-9a-zA-Z_.-]")
        dep = self.ctrl.store.update_deployment(dep.id, name=name)
        return JSONResponse(self.deployment_view(dep))

    async def activate(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        await self.ctrl.activate(dep.id)
        return JSONResponse({"success": True})

    async def deactivate(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        await self.ctrl.deactivate(dep.id)
        return JSONResponse({"success": True})

    async def terminate_replica(self, request: Request) -> Response:
        """``TerminateReplicaResponseV1``: the replica stops now and another takes its place."""
        _, dep = self._deployment(request)
        await self.ctrl.terminate_replica(dep.id, request.path_params["replica_id"])
        return JSONResponse({"success": True})

    async def retry(self, request: Request) -> Response:
        """``RetryDeploymentResponseV1``: a BUILD_FAILED or DEPLOY_FAILED deployment builds and deploys again."""
        _, dep = self._deployment(request)
        if dep.status not in (DeploymentStatus.BUILD_FAILED, DeploymentStatus.DEPLOY_FAILED):
            reason = f"deployment {dep.id} is {dep.status.value}: only a failed build or deploy is retried"
            return JSONResponse({"retried": False, "reason": reason, "deployment": self.deployment_view(dep)})
        self.ctrl.log(dep.id, "retry requested")
        self.ctrl.resume(dep.id)
        dep = self.ctrl.store.get_deployment(dep.id)
        return JSONResponse({"retried": True, "reason": None, "deployment": self.deployment_view(dep)})

    async def promote_deployment(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        body = await _json(request) if await request.body() else {}
        scale_down = body.get("scale_down_previous_production", True)
        if not isinstance(scale_down, bool):
            raise InvalidRequest("scale_down_previous_production must be true or false")
        await self.ctrl.promote(dep.id, PRODUCTION, preserve_previous=not scale_down)
        return JSONResponse(self.deployment_view(self.ctrl.store.get_deployment(dep.id)))

    async def deployment_autoscaling(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        return JSONResponse(await self._apply_autoscaling(dep, await _json(request)))

    async def deployment_backpressure(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        dep = await self._set_backpressure(dep, await _json(request))
        return JSONResponse(self.deployment_view(dep))

    async def deployment_metrics(self, request: Request) -> Response:
        """Baseten's metrics API over the platform's history (``edge/metrics_export.py``)."""
        _, dep = self._deployment(request)
        return self._metrics(request, deployment_key(dep.id), dep.id)

    async def environment_metrics(self, request: Request) -> Response:
        model, env = self._environment(request)
        return self._metrics(request, environment_key(model.id, env.name), env.deployment_id)

    def _metrics(self, request: Request, key: str, deployment_id: str | None) -> Response:
        params = request.query_params
        mode = params.get("mode", "CURRENT")
        now = time.time()
        window = window_of(mode, params.get("start_epoch_millis"), params.get("end_epoch_millis"), int(now * 1000))
        names = [name for value in params.getlist("metrics") for name in value.split(",") if name]
        rset = self.ctrl.engine.replica_set(deployment_id) if deployment_id else None
        traffic = self.ctrl.traffic.get(deployment_id) if deployment_id else None
        body = metrics_answer(self.ctrl.history, key, rset, traffic, mode, names, window, now)
        return JSONResponse(body)

    async def deployment_logs(self, request: Request) -> Response:
        _, dep = self._deployment(request)
        return await self._logs(request, dep.id)

    async def environment_logs(self, request: Request) -> Response:
        _, env = self._environment(request)
        if env.deployment_id is None:
            return JSONResponse({"logs": []})
        return await self._logs(request, env.deployment_id)

    async def _logs(self, request: Request, deployment_id: str) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST" and await request.body():
            params.update(await _json(request))
        query = log_search.parse_query(params)
        return JSONResponse({"logs": await log_search.search_logs(self.ctrl.logs.path(deployment_id), query)})

    async def _apply_autoscaling(self, dep: Deployment, body: object) -> dict[str, str]:
        changes, utilization = parse_autoscaling(body)
        before = autoscaling_settings(dep.info, self.ctrl.autoscaling_of(dep))
        if changes:
            dep = await self.ctrl.set_scaling(dep.id, changes=changes)
        if utilization is not None:
            dep = self.ctrl.store.update_deployment(
                dep.id, info={**dep.info, "target_utilization_percentage": utilization}
            )
        after = autoscaling_settings(dep.info, self.ctrl.autoscaling_of(dep))
        if after == before:
            return {"status": "UNCHANGED", "message": "the autoscaling settings are already these"}
        changed = ", ".join(f"{k} {before[k]} -> {after[k]}" for k in after if after[k] != before[k])
        return {"status": "ACCEPTED", "message": f"deployment {dep.id}: {changed}"}

    async def _set_backpressure(self, dep: Deployment, body: object) -> Deployment:
        """Store the policy; ``REJECT_ON_FULL`` also records the truss's ``predict_concurrency`` (what
        "full" means for a replica) for the gateway, which answers 429 when every replica is full."""
        if not isinstance(body, dict) or set(body) - {"policy"}:
            raise InvalidRequest("request_backpressure_settings takes one field: policy")
        policy = body.get("policy")
        if policy is not None and policy not in BACKPRESSURE_POLICIES:
            raise InvalidRequest(f"policy must be one of {', '.join(BACKPRESSURE_POLICIES)} or null (got {policy!r})")
        capacity = (await self.ctrl.read_truss(dep.id)).predict_concurrency if policy == "REJECT_ON_FULL" else None
        info = {**dep.info, "request_backpressure_policy": policy, "backpressure_capacity": capacity}
        dep = self.ctrl.store.update_deployment(dep.id, info=info)
        self.ctrl.routes.rebuild(self.ctrl.store)
        return dep

    # environments ----------------------------------------------------------------------------

    async def list_environments(self, request: Request) -> Response:
        """``EnvironmentsV1``; each entry keeps the platform's own fields too (deployment_id, status,
        predict_url), and ``development`` is listed as on the platform's own route."""
        model = self._model(request)
        own = await self.api.model_environments(request)
        body: dict[str, Any] = _json_body(own)
        views = {env.name: self.environment_view(model, env) for env in self.ctrl.store.environments(model.id)}
        for entry in body["environments"]:
            view = views.get(entry["name"])
            if view is None:  # development: no environment row, its deployment is the current one
                dev = self.ctrl.store.development_deployment(model.id)
                view = self.environment_view(model, _development_env(model, dev))
            entry.update(view)
        return JSONResponse(body)

    async def create_environment(self, request: Request) -> Response:
        model = self._model(request)
        body = await _json(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("name is required (the environment's name)")
        check_environment_name(name)
        if name == DEVELOPMENT:
            raise InvalidRequest("'development' is the development deployment, not an environment to create")
        if self.ctrl.store.get_environment(model.id, name) is not None:
            raise Conflict(f"model {model.name!r} already has an environment {name!r}")
        env = self.ctrl.store.ensure_environment(model.id, name)
        return JSONResponse(self.environment_view(model, env), status_code=201)

    async def get_environment(self, request: Request) -> Response:
        model, env = self._environment(request)
        return JSONResponse(self.environment_view(model, env))

    async def update_environment(self, request: Request) -> Response:
        model, env = self._environment(request)
        body = await _json(request)
        unknown = set(body) - {"autoscaling_settings", "request_backpressure_settings", "promotion_settings"}
        if unknown:
            raise InvalidRequest(f"unknown environment settings {sorted(unknown)}")
        if body.get("promotion_settings"):
            raise InvalidRequest("promotion_settings cannot be changed on this platform")
        dep = self.ctrl.store.get_deployment(env.deployment_id) if env.deployment_id else None
        result = {"status": "UNCHANGED", "message": "nothing to change"}
        if body.get("autoscaling_settings") is not None or body.get("request_backpressure_settings") is not None:
            if dep is None:
                raise Conflict(f"environment {env.name!r} has no deployment yet: promote one first")
            if body.get("autoscaling_settings") is not None:
                result = await self._apply_autoscaling(dep, body["autoscaling_settings"])
            if body.get("request_backpressure_settings") is not None:
                await self._set_backpressure(
                    self.ctrl.store.get_deployment(dep.id), body["request_backpressure_settings"]
                )
        view = self.environment_view(model, self.ctrl.store.get_environment(model.id, env.name) or env)
        return JSONResponse({"environment": view, **result})

    async def delete_environment(self, request: Request) -> Response:
        model, env = self._environment(request)
        if env.name == PRODUCTION:
            raise Conflict("the production environment cannot be deleted (delete the model instead)")
        self.ctrl.store.delete_environment(model.id, env.name)
        self.ctrl.routes.rebuild(self.ctrl.store)
        return JSONResponse({"name": env.name, "model_id": model.id, "deleted": True})

    async def promote_to_environment(self, request: Request) -> Response:
        model, env = self._environment(request)
        body = await _json(request)
        dep_id = body.get("deployment_id")
        if not isinstance(dep_id, str):
            raise InvalidRequest("deployment_id is required")
        dep = self.ctrl.store.get_deployment(dep_id)
        if dep.model_id != model.id:
            raise NotFound(f"model {model.name!r} has no deployment {dep_id!r}")
        scale_down = body.get("scale_down_previous_deployment", True)
        preserve_type = body.get("preserve_env_instance_type", True)
        if not isinstance(scale_down, bool) or not isinstance(preserve_type, bool):
            raise InvalidRequest("scale_down_previous_deployment and preserve_env_instance_type are true or false")
        await self.ctrl.promote(dep.id, env.name, preserve_previous=not scale_down)
        return JSONResponse(self.deployment_view(self.ctrl.store.get_deployment(dep.id)))


_ENDED = frozenset({DeploymentStatus.BUILD_FAILED, DeploymentStatus.DEPLOY_FAILED, DeploymentStatus.INACTIVE})


def _development_env(model: Model, dev: Deployment | None) -> Environment:
    created = dev.created_at if dev else model.created_at
    return Environment(model.id, DEVELOPMENT, dev.id if dev else None, created, created)


def _json_body(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body
