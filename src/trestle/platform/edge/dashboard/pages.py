"""What each dashboard page shows, gathered from the platform's API (``client.py``): the models list,
a model's page (environments, deployments, actions, charts), a deployment's page (replicas, logs,
playground) and the events feed. Nothing here computes what the API already answers; it only joins
the answers (the platform's own deployment view with Baseten's ``DeploymentV1``) for one table."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from trestle.platform.edge.dashboard.client import ApiClient, ApiError, last_five_minutes, metric, metric_sum
from trestle.platform.edge.resources import _AUTOSCALING  # Baseten's autoscaling fields and their ranges

DEVELOPMENT = "development"
WINDOWS = {"15m": 15 * 60, "1h": 3600, "24h": 24 * 3600}

AUTOSCALING_FIELDS: list[dict[str, Any]] = [
    {"name": name, "low": low, "high": high} for name, (_, low, high) in _AUTOSCALING.items()
]
"""The autoscaling form's fields with the API's ranges (``edge/resources.py``): the browser checks them
(``min``/``max``) before it sends, the API checks them again."""


class Pages:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def _rates(self, base: str, key: str, model_id: str, env: str) -> tuple[float | None, float | None]:
        """Requests per second and p50 end-to-end latency (seconds) over the last five minutes."""
        if env == DEVELOPMENT:
            path = f"/v1/models/{model_id}/deployments/development/metrics"
        else:
            path = f"/v1/models/{model_id}/environments/{quote(env)}/metrics"
        params = last_five_minutes()
        try:
            body = await self.api.get(base, path, key, params)
        except ApiError:
            return None, None
        total = metric_sum(body, "baseten_inference_requests_total")
        seconds = (params["end_epoch_millis"] - params["start_epoch_millis"]) / 1000
        rate = total / seconds if total is not None else None
        return rate, metric(body, "baseten_end_to_end_response_time_seconds", {"quantile": "0.5"})

    async def models(self, base: str, key: str) -> dict[str, Any]:
        models = (await self.api.get(base, "/v1/models", key))["models"]
        deployments = {d["id"]: d for d in (await self.api.get(base, "/v1/deployments", key))["deployments"]}
        rows: list[dict[str, Any]] = []
        for model in models:
            envs = dict(model.get("environments") or {})
            if model.get("development_deployment_id"):
                envs[DEVELOPMENT] = model["development_deployment_id"]
            names = sorted(envs, key=lambda n: (n == DEVELOPMENT, n != "production", n))
            rates = await asyncio.gather(*(self._rates(base, key, model["id"], n) for n in names))
            entries = []
            for name, (rate, p50) in zip(names, rates, strict=True):
                dep = deployments.get(envs[name] or "")
                entries.append({"name": name, "deployment": dep, "rate": rate, "p50": p50})
            rows.append({"model": model, "environments": entries})
        return {"rows": rows}

    async def model(self, base: str, key: str, ref: str) -> dict[str, Any]:
        model = await self.api.get(base, f"/v1/models/{quote(ref)}", key)
        mid = model["id"]
        environments, baseten, own = await asyncio.gather(
            self.api.get(base, f"/v1/models/{mid}/environments", key),
            self.api.get(base, f"/v1/models/{mid}/deployments", key),
            self.api.get(base, "/v1/deployments", key, {"model": mid}),
        )
        views = {d["id"]: d for d in own["deployments"]}
        deployments = []
        for dep in sorted(baseten["deployments"], key=lambda d: d["created_at"], reverse=True):
            view = views.get(dep["id"], {})
            gpus = sum(len(r.get("gpus") or []) for r in view.get("replica_states", []))
            deployments.append({**dep, "own": view, "gpus": gpus, "age": _age(view.get("created_at"))})
        envs = environments["environments"]
        for env in envs:
            env["rollback_to"] = _rollback_target(env, deployments)
        return {
            "model": model,
            "environments": envs,
            "deployments": deployments,
            "env_names": [e["name"] for e in envs if e["name"] != DEVELOPMENT],
            "fields": AUTOSCALING_FIELDS,
            "windows": list(WINDOWS),
        }

    async def deployment(self, base: str, key: str, ref: str, dep_id: str) -> dict[str, Any]:
        model = await self.api.get(base, f"/v1/models/{quote(ref)}", key)
        dep = await self.api.get(base, f"/v1/models/{model['id']}/deployments/{quote(dep_id)}", key)
        own = await self.api.get(base, f"/v1/deployments/{dep['id']}", key)
        return {"model": model, "dep": dep, "own": own, "windows": list(WINDOWS)}

    async def playground(self, base: str, key: str, ref: str, dep_id: str) -> dict[str, Any]:
        page = await self.deployment(base, key, ref, dep_id)
        url = page["own"]["predict_url"]
        example = {"prompt": "hello"}
        page["predict_path"] = url[len(base.rstrip("/")) :] if url.startswith(base.rstrip("/")) else url
        page["example"] = json.dumps(example, indent=2)
        return page

    async def events(self, base: str, key: str, model: str | None) -> dict[str, Any]:
        params = {"limit": 200, **({"model": model} if model else {})}
        events = (await self.api.get(base, "/v1/events", key, params))["events"]
        return {"events": events, "model_filter": model or ""}


def _age(created: float | None) -> str:
    if created is None:
        return ""
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _rollback_target(env: dict[str, Any], deployments: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The published deployment an environment goes back to: the newest one older than its current
    deployment that did not fail."""
    current = env.get("current_deployment") or {}
    if env["name"] == DEVELOPMENT or not current:
        return None
    for dep in deployments:  # newest first
        if dep["is_development"] or dep["id"] == current["id"]:
            continue
        if dep["created_at"] < current["created_at"] and dep["status"] not in ("BUILD_FAILED", "DEPLOY_FAILED"):
            return dep
    return None
