"""Keys, secrets and the caller through the platform app in process (the routes of edge/management.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.baseten import validate
from tests.support.trusses import make_truss
from tests.unit.platform.test_api import KEY, platform, upload, wait_status  # noqa: F401  (the in-process platform)

pytestmark = pytest.mark.anyio


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


async def make_key(client: httpx.AsyncClient, key_type: str, name: str | None = None) -> str:
    response = await client.post("/v1/api_keys", json={"type": key_type, "name": name})
    assert response.status_code == 200, response.text
    validate(response.json(), "APIKeyV1")
    secret: str = response.json()["api_key"]
    return secret


async def test_keys_are_shown_once_listed_by_prefix_and_revoked_at_once(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    secret = await make_key(client, "WORKSPACE_INVOKE", "ci")
    listed = (await client.get("/v1/api_keys")).json()
    validate(listed, "APIKeysV1")
    assert secret not in str(listed)
    ours = [key for key in listed["keys"] if key["name"] == "ci"]
    assert len(ours) == 1
    assert ours[0]["type"] == "WORKSPACE_INVOKE"
    assert secret.startswith(f"trk_{ours[0]['prefix']}.")
    assert (await client.get("/v1/health", headers=auth(secret))).status_code == 200
    revoked = await client.delete(f"/v1/api_keys/{ours[0]['prefix']}")
    assert revoked.status_code == 200
    validate(revoked.json(), "APIKeyTombstoneV1")
    response = await client.get("/v1/health", headers=auth(secret))
    assert response.status_code == 401  # the very next request
    assert (await client.delete(f"/v1/api_keys/{ours[0]['prefix']}")).status_code == 404


async def test_bad_key_requests_are_clear_400s(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    response = await client.post("/v1/api_keys", json={"type": "ROOT"})
    assert response.status_code == 400
    assert "WORKSPACE_MANAGE_ALL" in response.json()["error"]
    response = await client.post("/v1/api_keys", json={"name": "x"})
    assert response.status_code == 400
    assert "type is required" in response.json()["error"]


async def test_the_last_manage_key_cannot_be_revoked_but_the_first_can_be_rotated(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    first = [key for key in (await client.get("/v1/api_keys")).json()["keys"] if key["name"] == "platform"][0]
    response = await client.delete(f"/v1/api_keys/{first['prefix']}")
    assert response.status_code == 409
    assert "last manage key" in response.json()["error"]
    replacement = await make_key(client, "WORKSPACE_MANAGE_ALL", "rotated")
    assert (await client.delete(f"/v1/api_keys/{first['prefix']}")).status_code == 200
    assert (await client.get("/v1/health")).status_code == 401  # the client still sends the first key
    assert (await client.get("/v1/models", headers=auth(replacement))).status_code == 200


async def test_an_invoke_key_calls_models_only(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    invoke = await make_key(client, "WORKSPACE_INVOKE")
    for method, path in [
        ("POST", "/v1/deployments"),
        ("PUT", f"/v1/artifacts/{'0' * 64}"),
        ("POST", "/v1/deployments/x/promote"),
        ("GET", "/v1/deployments/x/logs"),
        ("GET", "/v1/secrets"),
        ("POST", "/v1/secrets"),
        ("GET", "/v1/api_keys"),
        ("POST", "/v1/api_keys"),
        ("GET", "/v1/models"),
    ]:
        response = await client.request(method, path, headers=auth(invoke), json={})
        assert response.status_code == 403, (method, path)
        assert "WORKSPACE_INVOKE" in response.json()["error"]
        assert "call models" in response.json()["error"]
    # the gateway lets it through (404: no such model, not 403)
    response = await client.post("/models/nope/production/predict", headers=auth(invoke), json={})
    assert response.status_code == 404
    me = (await client.get("/v1/users/me", headers=auth(invoke))).json()
    validate(me, "UserInfoV1")
    assert me["api_key"]["type"] == "WORKSPACE_INVOKE"


async def test_a_metrics_key_and_a_key_manager(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    metrics = await make_key(client, "WORKSPACE_EXPORT_METRICS")
    assert (await client.post("/models/nope/production/predict", headers=auth(metrics))).status_code == 403
    assert (await client.get("/v1/models", headers=auth(metrics))).status_code == 403
    keys = await make_key(client, "WORKSPACE_MANAGE_API_KEYS")
    assert (await client.get("/v1/api_keys", headers=auth(keys))).status_code == 200
    assert (await client.get("/v1/secrets", headers=auth(keys))).status_code == 403


async def test_secrets_answer_names_and_dates_never_values(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    value = "s3cr3t-value-\u00e9"
    created = await client.post("/v1/secrets", json={"name": "hf_access_token", "value": value})
    assert created.status_code == 200
    validate(created.json(), "SecretV1")
    assert value not in created.text
    path = app.settings.secrets_dir / "hf_access_token"
    assert path.read_text() == value  # what replicas read (Truss's /secrets/<name>)
    assert path.stat().st_mode & 0o777 == 0o600
    updated = await client.post("/v1/secrets", json={"name": "hf_access_token", "value": "v2"})
    assert updated.json()["id"] == created.json()["id"]  # stable across rotation
    assert path.read_text() == "v2"
    listed = await client.get("/v1/secrets")
    validate(listed.json(), "SecretsV1")
    assert [s["name"] for s in listed.json()["secrets"]] == ["hf_access_token"]
    assert "v2" not in listed.text
    assert value.encode() not in (app.settings.data_dir / "platform.db").read_bytes()
    deleted = await client.delete("/v1/secrets/hf_access_token")
    assert deleted.status_code == 200
    validate(deleted.json(), "SecretTombstoneV1")
    assert not path.exists()
    assert (await client.delete("/v1/secrets/hf_access_token")).status_code == 404
    assert (await client.get("/v1/secrets")).json() == {"secrets": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "../etc/passwd", "value": "x"}, "invalid secret name"),
        ({"name": "", "value": "x"}, "name is required"),
        ({"name": "ok"}, "value is required"),
        ({"name": "ok", "value": 3}, "value is required"),
    ],
)
async def test_bad_secret_requests_are_clear_400s(platform: Any, body: dict[str, Any], message: str) -> None:  # noqa: F811
    client, _, _ = platform
    response = await client.post("/v1/secrets", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_gateway_made_errors_use_baseten_body(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    missing = await client.post("/models/nope/production/predict", json={})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "model_does_not_exist"
    assert missing.json()["detail"] == missing.json()["error"]
    refused = await client.get("/v1/models", headers=auth("wrong"))
    assert refused.json()["error_code"] == "unauthorized"
    invoke = await make_key(client, "WORKSPACE_INVOKE")
    forbidden = await client.get("/v1/models", headers=auth(invoke))
    assert forbidden.status_code == 403
    assert forbidden.json()["error_code"] == "unauthorized"


async def test_prometheus_metrics_with_baseten_names_for_a_metrics_key(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, dep["id"], "ACTIVE")
    metrics = await make_key(client, "WORKSPACE_EXPORT_METRICS")
    response = await client.get("/metrics", headers=auth(metrics))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    labels = f'model_id="{dep["model_id"]}",model_name="echo",deployment_id="{dep["id"]}",environment=""'
    assert f"baseten_replicas_active{{{labels}}} 1" in response.text
    assert f"baseten_concurrent_requests{{{labels}}} 0" in response.text
    assert "# TYPE baseten_inference_requests_total counter" in response.text
    invoke = await make_key(client, "WORKSPACE_INVOKE")
    assert (await client.get("/metrics", headers=auth(invoke))).status_code == 403


async def test_a_key_manager_cannot_mint_or_revoke_manage_keys(platform: Any) -> None:  # noqa: F811
    client, _, _ = platform
    manager = await make_key(client, "WORKSPACE_MANAGE_API_KEYS")
    escalate = await client.post("/v1/api_keys", json={"type": "WORKSPACE_MANAGE_ALL"}, headers=auth(manager))
    assert escalate.status_code == 403
    assert "cannot create a WORKSPACE_MANAGE_ALL key" in escalate.json()["error"]
    invoke = await client.post("/v1/api_keys", json={"type": "WORKSPACE_INVOKE"}, headers=auth(manager))
    assert invoke.status_code == 200
    first = [k for k in (await client.get("/v1/api_keys")).json()["keys"] if k["name"] == "platform"][0]
    await make_key(client, "WORKSPACE_MANAGE_ALL")  # so that the first is not the last manage key
    revoke = await client.delete(f"/v1/api_keys/{first['prefix']}", headers=auth(manager))
    assert revoke.status_code == 403
