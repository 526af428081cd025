"""Baseten's management routes for keys, secrets and the caller (``/v1``), in Baseten's shapes.

POST /v1/api_keys {type, name}          -> APIKeyV1 {api_key} (the only time the key is shown)
GET  /v1/api_keys                       -> APIKeysV1 {keys: [{prefix, name, type, model_ids}]}
DELETE /v1/api_keys/{prefix}            -> APIKeyTombstoneV1 {prefix}; refused for the last manage key
GET  /v1/secrets                        -> SecretsV1 {secrets: [{id, created_at, name, team_name}]}
POST /v1/secrets {name, value}          -> SecretV1 (upsert; the value is never answered)
DELETE /v1/secrets/{name}               -> SecretTombstoneV1 {name}
GET  /v1/users/me                       -> UserInfoV1 plus the calling key's info (``trestle whoami``)

Which key types may call which route is decided before routing (``edge/auth.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trestle.platform.edge.api import _json, route
from trestle.platform.edge.auth import SCOPE_KEY
from trestle.platform.errors import Forbidden, InvalidRequest
from trestle.platform.store.keys import MANAGING, ApiKey, KeyStore, KeyType, check_name, parse_type
from trestle.platform.store.secrets import TEAM_NAME, SecretStore
from trestle.platform.store.secrets import check_name as check_secret_name

WORKSPACE = "trestle"


def caller(request: Request) -> ApiKey | None:
    key = request.scope.get(SCOPE_KEY)
    return key if isinstance(key, ApiKey) else None


def _check_escalation(key: ApiKey | None, wanted: KeyType, verb: str) -> None:
    """A key-manager key (``WORKSPACE_MANAGE_API_KEYS``) cannot make or revoke keys that can do more
    than it can: only a manage key handles manage keys."""
    if key is not None and key.type not in MANAGING and wanted in MANAGING:
        raise Forbidden(
            f"this API key ({key.type.value}) cannot {verb} a {wanted.value} key: use a "
            f"{KeyType.WORKSPACE_MANAGE_ALL.value} key"
        )


class ManagementApi:
    def __init__(self, keys: KeyStore, secrets: SecretStore) -> None:
        self.keys = keys
        self.secrets = secrets
        self.routes = [
            route("/v1/api_keys", self.create_key, methods=["POST"]),
            route("/v1/api_keys", self.list_keys, methods=["GET"]),
            route("/v1/api_keys/{prefix}", self.revoke_key, methods=["DELETE"]),
            route("/v1/secrets", self.list_secrets, methods=["GET"]),
            route("/v1/secrets", self.upsert_secret, methods=["POST"]),
            route("/v1/secrets/{name}", self.delete_secret, methods=["DELETE"]),
            route("/v1/users/me", self.me, methods=["GET"]),
        ]

    # API keys --------------------------------------------------------------------------------

    async def create_key(self, request: Request) -> Response:
        body = await _json(request)
        if body.get("model_ids"):
            raise InvalidRequest("model_ids (keys scoped to some models) are not supported: leave it out")
        key_type = parse_type(body.get("type"))
        _check_escalation(caller(request), key_type, "create")
        secret, _ = self.keys.create(key_type, check_name(body.get("name")))
        return JSONResponse({"api_key": secret})

    async def list_keys(self, request: Request) -> Response:
        return JSONResponse({"keys": [key.info() for key in self.keys.live()]})

    async def revoke_key(self, request: Request) -> Response:
        prefix = request.path_params["prefix"]
        target = next((k for k in self.keys.live() if k.prefix == prefix.removeprefix("trk_").split(".")[0]), None)
        if target is not None:
            _check_escalation(caller(request), target.type, "revoke")
        key = self.keys.revoke(prefix)
        return JSONResponse({"prefix": key.prefix})

    # secrets ---------------------------------------------------------------------------------

    async def list_secrets(self, request: Request) -> Response:
        return JSONResponse({"secrets": [secret.view() for secret in self.secrets.secrets()]})

    async def upsert_secret(self, request: Request) -> Response:
        body = await _json(request)
        name = check_secret_name(body.get("name"))
        value = body.get("value")
        if not isinstance(value, str):
            raise InvalidRequest("value is required (a string)")
        secret = await asyncio.to_thread(self.secrets.upsert, name, value)
        return JSONResponse(secret.view())

    async def delete_secret(self, request: Request) -> Response:
        name = request.path_params["name"]
        await asyncio.to_thread(self.secrets.delete, name)
        return JSONResponse({"name": name})

    # the caller ------------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        key = caller(request)
        body: dict[str, Any] = {
            "user_id": "platform",
            "email": None,
            "name": None,
            "workspace_name": WORKSPACE,
            "team_name": TEAM_NAME,
            "api_key": key.info() if key else None,
        }
        return JSONResponse(body)
