"""The control REST API (under ``/v1``), a thin JSON layer over the controller.

GET  /v1/health
HEAD /v1/artifacts/{sha256}            PUT /v1/artifacts/{sha256}   (content-addressed upload)
POST /v1/deployments                   (push)
GET  /v1/deployments[?model=]          GET /v1/deployments/{id}
POST /v1/deployments/{id}/promote      POST /v1/deployments/{id}/deactivate   POST .../activate
POST /v1/deployments/{id}/scale        ({replicas} or autoscaling settings)
GET  /v1/deployments/{id}/logs[?tail=N&follow=1]
GET  /v1/deployments/{id}/manifest     POST /v1/deployments/{id}/patch
GET  /v1/models                        GET /v1/models/{ref}
GET  /v1/models/{ref}/deployments      GET /v1/models/{ref}/environments
GET  /v1/gpus                          GET /v1/metrics   (GPU gauges, Prometheus text format)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, Router

from trestle.errors import PlatformError
from trestle.platform.control.controller import Controller
from trestle.platform.control.patching import apply_patch
from trestle.platform.control.rules import PushRequest, check_environment_name
from trestle.platform.edge import urls
from trestle.platform.edge.errors import error_body, http_status
from trestle.platform.errors import InvalidRequest, NotFound
from trestle.platform.store import packaging
from trestle.platform.store.artifacts import check_digest, check_secrets_signature, check_signature
from trestle.platform.store.database import Deployment, Model
from trestle.platform.store.secrets import values_of
from trestle.platform.store.states import DEVELOPMENT, PRODUCTION
from trestle.platform.store.truss import raw_config

Handler = Callable[[Request], Awaitable[Response]]


def _errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except PlatformError as exc:
            return JSONResponse(error_body(exc), status_code=http_status(exc))

    return wrapped


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string")
    return value


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} must be true or false")
    return value


def _opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key} must be a whole number")
    return value


def _labels(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("labels")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidRequest("labels must be a JSON object")
    if len(str(value)) > 16384:
        raise InvalidRequest("labels must be at most 16 KiB")
    return value


def route(path: str, handler: Handler, methods: list[str]) -> Route:
    """A control-API route whose platform errors become HTTP answers in the one mapping (``edge/errors.py``)."""
    return Route(path, _errors(handler), methods=methods)


class ControlApi:
    def __init__(self, controller: Controller) -> None:
        self.ctrl = controller
        routes = [
            route("/v1/health", self.health, methods=["GET"]),
            route("/v1/artifacts/{digest}", self.artifact_exists, methods=["HEAD", "GET"]),
            route("/v1/artifacts/{digest}", self.upload_artifact, methods=["PUT"]),
            route("/v1/engine-artifacts/secrets/{deployment}/{signature}", self.engine_secrets, methods=["GET"]),
            route("/v1/engine-artifacts/{digest}/{file}", self.engine_artifact, methods=["GET"]),
            route("/v1/deployments", self.push, methods=["POST"]),
            route("/v1/deployments", self.list_deployments, methods=["GET"]),
            route("/v1/deployments/{id}", self.get_deployment, methods=["GET"]),
            route("/v1/deployments/{id}/promote", self.promote, methods=["POST"]),
            route("/v1/deployments/{id}/deactivate", self.deactivate, methods=["POST"]),
            route("/v1/deployments/{id}/activate", self.activate, methods=["POST"]),
            route("/v1/deployments/{id}/scale", self.scale, methods=["POST"]),
            route("/v1/deployments/{id}/logs", self.logs, methods=["GET"]),
            route("/v1/deployments/{id}/manifest", self.manifest, methods=["GET"]),
            route("/v1/deployments/{id}/patch", self.patch, methods=["POST"]),
            route("/v1/models", self.list_models, methods=["GET"]),
            route("/v1/models/{ref}", self.get_model, methods=["GET"]),
            route("/v1/models/{ref}/deployments", self.model_deployments, methods=["GET"]),
            route("/v1/models/{ref}/environments", self.model_environments, methods=["GET"]),
            route("/v1/gpus", self.gpus, methods=["GET"]),
            route("/v1/metrics", self.metrics, methods=["GET"]),
        ]
        self.router = Router(routes)

    # helpers ----------------------------------------------------------------------------------

    def urls(self, request: Request, dep: Deployment) -> dict[str, str]:
        base = str(request.base_url)
        root = urls.deployment_root(base, dep.model_id, dep.id, development=dep.is_development)
        return {
            "predict_url": f"{root}/predict",
            "sync_url": f"{root}/sync",
            "model_url": urls.model_url(base, dep.model_id),
            "logs_url": str(request.base_url).rstrip("/") + f"/v1/deployments/{dep.id}/logs",
        }

    def view(self, request: Request, dep: Deployment) -> dict[str, Any]:
        return {**self.ctrl.deployment_view(dep), **self.urls(request, dep)}

    def model_view(self, request: Request, model: Model) -> dict[str, Any]:
        base = urls.model_url(str(request.base_url), model.id)
        envs = {env.name: env.deployment_id for env in self.ctrl.store.environments(model.id)}
        dev = self.ctrl.store.development_deployment(model.id)
        return {
            "id": model.id,
            "name": model.name,
            "url": base,
            "environments": envs,
            "development_deployment_id": dev.id if dev else None,
            "production_deployment_id": envs.get(PRODUCTION),
        }

    # endpoints --------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def artifact_exists(self, request: Request) -> Response:
        digest = check_digest(request.path_params["digest"])
        return Response(status_code=200 if self.ctrl.artifacts.exists(digest) else 404)

    async def engine_artifact(self, request: Request) -> Response:
        """An artifact for a cluster engine: no API key, the path's signature authenticates it."""
        digest = check_digest(request.path_params["digest"])
        signature = str(request.path_params["file"]).removesuffix(".tar.gz")
        key = self.ctrl.artifact_key
        if not key or not check_signature(key, digest, signature) or not self.ctrl.artifacts.exists(digest):
            raise NotFound("no such artifact")
        return FileResponse(self.ctrl.artifacts.path(digest), media_type="application/gzip")

    async def engine_secrets(self, request: Request) -> Response:
        """A cluster replica's declared secrets, fetched once at its start (a replica on another host cannot
        read the secrets dir): no API key, the path's signature names the deployment; only the secrets its
        truss declares, never cached."""
        dep_id = str(request.path_params["deployment"])
        key = self.ctrl.artifact_key
        if not key or not check_secrets_signature(key, dep_id, str(request.path_params["signature"])):
            raise NotFound("no such artifact")
        dep = self.ctrl.store.get_deployment(dep_id)

        def read() -> dict[str, str]:
            declared = raw_config(self.ctrl.settings.truss_dir(dep.id)).get("secrets")
            names = [str(name) for name in declared] if isinstance(declared, dict) else []
            return values_of(self.ctrl.settings.secrets_dir, names)

        values = await asyncio.to_thread(read)
        return JSONResponse({"secrets": values}, headers={"Cache-Control": "no-store"})

    async def upload_artifact(self, request: Request) -> Response:
        digest = check_digest(request.path_params["digest"])
        created = await self.ctrl.artifacts.put(digest, request.stream())
        return JSONResponse({"digest": digest, "created": created}, status_code=201 if created else 200)

    async def push(self, request: Request) -> Response:
        body = await _json(request)
        artifact = _opt_str(body, "artifact")
        if not artifact:
            raise InvalidRequest("artifact (the sha256 of the uploaded truss) is required")
        check_digest(artifact)
        push = PushRequest(
            artifact=artifact,
            model_name=_opt_str(body, "model_name"),
            development=_bool(body, "development"),
            environment=_opt_str(body, "environment"),
            deployment_name=_opt_str(body, "deployment_name"),
            preserve_previous=_bool(body, "preserve_previous_production_deployment"),
            replicas=_opt_int(body, "replicas"),
            strict=_bool(body, "strict"),
            labels=_labels(body),
        )
        dep, warnings = await self.ctrl.push(push)
        return JSONResponse({**self.view(request, dep), "warnings": warnings}, status_code=201)

    async def list_deployments(self, request: Request) -> Response:
        ref = request.query_params.get("model")
        model_id = self.ctrl.store.find_model(ref).id if ref else None
        deps = self.ctrl.store.deployments(model_id)
        return JSONResponse({"deployments": [self.view(request, dep) for dep in deps]})

    async def get_deployment(self, request: Request) -> Response:
        dep = self.ctrl.store.get_deployment(request.path_params["id"])
        return JSONResponse(self.view(request, dep))

    async def promote(self, request: Request) -> Response:
        body = await _json(request) if await request.body() else {}
        env = _opt_str(body, "environment") or PRODUCTION
        check_environment_name(env)
        result = await self.ctrl.promote(
            request.path_params["id"], env, preserve_previous=_bool(body, "preserve_previous_production_deployment")
        )
        dep = self.ctrl.store.get_deployment(request.path_params["id"])
        return JSONResponse({**result, "deployment": self.view(request, dep)})

    async def deactivate(self, request: Request) -> Response:
        dep = await self.ctrl.deactivate(request.path_params["id"])
        return JSONResponse(self.view(request, dep))

    async def activate(self, request: Request) -> Response:
        dep = await self.ctrl.activate(request.path_params["id"])
        return JSONResponse(self.view(request, dep))

    async def scale(self, request: Request) -> Response:
        body = await _json(request)
        replicas = _opt_int(body, "replicas")
        changes = {key: value for key, value in body.items() if key != "replicas" and value is not None}
        dep = await self.ctrl.set_scaling(request.path_params["id"], replicas=replicas, changes=changes)
        return JSONResponse(self.view(request, dep))

    async def logs(self, request: Request) -> Response:
        dep = self.ctrl.store.get_deployment(request.path_params["id"])
        tail_param = request.query_params.get("tail")
        try:
            tail = int(tail_param) if tail_param else None
        except ValueError:
            raise InvalidRequest("tail must be an integer") from None
        if request.query_params.get("follow") in ("1", "true"):

            async def stream() -> AsyncIterator[bytes]:
                async for line in self.ctrl.logs.follow(dep.id, tail if tail is not None else 100):
                    yield line.encode()

            return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
        records = await asyncio.to_thread(self.ctrl.logs.tail, dep.id, tail)
        return Response("".join(records), media_type="text/plain; charset=utf-8")

    async def manifest(self, request: Request) -> Response:
        dep = self.ctrl.store.get_deployment(request.path_params["id"])
        files = await asyncio.to_thread(packaging.manifest, self.ctrl.settings.truss_dir(dep.id))
        return JSONResponse({"hash": packaging.manifest_hash(files), "files": files})

    async def patch(self, request: Request) -> Response:
        body = await _json(request)
        prev_hash = _opt_str(body, "prev_hash") or ""
        raw = body.get("files")
        if not isinstance(raw, dict):
            raise InvalidRequest("files must be an object of path → base64 content (or null to delete)")
        files: dict[str, bytes | None] = {}
        for rel, content in raw.items():
            if content is None:
                files[rel] = None
            elif isinstance(content, str):
                try:
                    files[rel] = base64.b64decode(content, validate=True)
                except binascii.Error:
                    raise InvalidRequest(f"content of {rel!r} is not valid base64") from None
            else:
                raise InvalidRequest(f"content of {rel!r} must be base64 text or null")
        result = await apply_patch(self.ctrl, request.path_params["id"], prev_hash, files)
        return JSONResponse(result)

    async def gpus(self, request: Request) -> Response:
        return JSONResponse(await self.ctrl.gpus_view())

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(await self.ctrl.gpu_metrics(), media_type="text/plain; version=0.0.4")

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"models": [self.model_view(request, m) for m in self.ctrl.store.models()]})

    async def get_model(self, request: Request) -> Response:
        model = self.ctrl.store.find_model(request.path_params["ref"])
        return JSONResponse(self.model_view(request, model))

    async def model_deployments(self, request: Request) -> Response:
        model = self.ctrl.store.find_model(request.path_params["ref"])
        deps = self.ctrl.store.deployments(model.id)
        return JSONResponse({"deployments": [self.view(request, dep) for dep in deps]})

    async def model_environments(self, request: Request) -> Response:
        model = self.ctrl.store.find_model(request.path_params["ref"])
        base = str(request.base_url)
        envs = []
        dev = self.ctrl.store.development_deployment(model.id)
        for env in self.ctrl.store.environments(model.id):
            status = None
            if env.deployment_id:
                status = self.ctrl.store.get_deployment(env.deployment_id).status.value
            envs.append(
                {
                    "name": env.name,
                    "deployment_id": env.deployment_id,
                    "status": status,
                    "predict_url": urls.environment_root(base, model.id, env.name) + "/predict",
                    "updated_at": env.updated_at,
                }
            )
        if dev is not None:
            envs.append(
                {
                    "name": DEVELOPMENT,
                    "deployment_id": dev.id,
                    "status": dev.status.value,
                    "predict_url": urls.environment_root(base, model.id, DEVELOPMENT) + "/predict",
                    "updated_at": dev.updated_at,
                }
            )
        return JSONResponse({"model": self.model_view(request, model), "environments": envs})
