"""Models, deployments and environments in Baseten's shapes (edge/resources.py), in process: each
answer validates against Baseten's public schema for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.baseten import validate
from tests.support.trusses import make_truss
from tests.unit.platform.test_api import platform, upload, wait_status  # noqa: F401  (fixture and helpers)

pytestmark = pytest.mark.anyio


async def push(client: httpx.AsyncClient, truss: Path, **body: Any) -> dict[str, Any]:
    digest = await upload(client, truss)
    response = await client.post("/v1/deployments", json={"artifact": digest, **body})
    assert response.status_code == 201, response.text
    dep: dict[str, Any] = response.json()
    await wait_status(client, dep["id"], "ACTIVE")
    for _ in range(200):  # a promotion on push switches the environment once the deployment is ACTIVE
        model = (await client.get(f"/v1/models/{dep['model_id']}")).json()
        if body.get("environment") != "production" or model["production_deployment_id"] == dep["id"]:
            break
        await asyncio.sleep(0.01)
    return dep


async def test_models_and_deployments_in_baseten_shapes(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    prod = await push(client, make_truss(tmp_path / "t"), environment="production")
    dev = await push(client, make_truss(tmp_path / "d", config="# dev\n"), development=True)
    model_id = prod["model_id"]
    models = (await client.get("/v1/models")).json()
    validate(models, "ModelsV1")
    model = (await client.get(f"/v1/models/{model_id}")).json()
    validate(model, "ModelV1")
    assert model["deployments_count"] == 2
    assert model["production_deployment_id"] == prod["id"]
    assert model["development_deployment_id"] == dev["id"]
    deps = (await client.get(f"/v1/models/{model_id}/deployments")).json()
    validate(deps, "DeploymentsV1")
    assert {d["id"] for d in deps["deployments"]} == {prod["id"], dev["id"]}
    for ref, want in (("production", prod["id"]), ("development", dev["id"]), (prod["id"], prod["id"])):
        body = (await client.get(f"/v1/models/{model_id}/deployments/{ref}")).json()
        validate(body, "DeploymentV1")
        assert body["id"] == want
    production = (await client.get(f"/v1/models/{model_id}/deployments/production")).json()
    assert production["is_production"]
    assert production["status"] == "ACTIVE"
    assert production["active_replica_count"] == 1
    assert production["autoscaling_settings"]["min_replica"] == 1
    renamed = await client.patch(f"/v1/models/{model_id}/deployments/{prod['id']}", json={"name": "v1.0"})
    assert renamed.json()["name"] == "v1.0"
    bad = await client.patch(f"/v1/models/{model_id}/deployments/{prod['id']}", json={"name": "bad name!"})
    assert bad.status_code == 400
    missing = await client.get(f"/v1/models/{model_id}/deployments/nope")
    assert missing.status_code == 404


async def test_autoscaling_settings_accepted_unchanged_and_range_errors(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, engine = platform
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    url = f"/v1/models/{dep['model_id']}/deployments/production/autoscaling_settings"
    first = await client.patch(url, json={"max_replica": 3, "concurrency_target": 2})
    validate(first.json(), "UpdateAutoscalingSettingsResponseV1")
    assert first.json()["status"] == "ACCEPTED"
    assert "max_replica 1 -> 3" in first.json()["message"]
    again = await client.patch(url, json={"max_replica": 3, "concurrency_target": 2})
    assert again.json()["status"] == "UNCHANGED"
    shown = (await client.get(f"/v1/models/{dep['model_id']}/deployments/{dep['id']}")).json()
    assert shown["autoscaling_settings"]["max_replica"] == 3
    assert shown["autoscaling_settings"]["concurrency_target"] == 2
    assert (await client.get(f"/v1/deployments/{dep['id']}")).json()["autoscaling"]["max_replicas"] == 3  # applied
    for body, field, words in [
        ({"autoscaling_window": 5}, "autoscaling_window", "between 10 and 3600"),
        ({"scale_down_delay": 4000}, "scale_down_delay", "between 0 and 3600"),
        ({"target_utilization_percentage": 101}, "target_utilization_percentage", "between 1 and 100"),
        ({"concurrency_target": 0}, "concurrency_target", "at least 1"),
        ({"min_replica": -1}, "min_replica", "between 0 and 64"),
        ({"max_replica": 1.5}, "max_replica", "whole number"),
    ]:
        response = await client.patch(url, json=body)
        assert response.status_code == 400, body
        assert field in response.json()["error"]
        assert words in response.json()["error"]
    utilization = await client.patch(url, json={"target_utilization_percentage": 50})
    assert utilization.json()["status"] == "ACCEPTED"


async def test_backpressure_settings(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/request_backpressure_settings"
    response = await client.patch(url, json={"policy": "REJECT_ON_FULL"})
    validate(response.json(), "DeploymentV1")
    assert response.json()["request_backpressure_settings"] == {"policy": "REJECT_ON_FULL"}
    bad = await client.patch(url, json={"policy": "DROP"})
    assert bad.status_code == 400
    assert "QUEUE_ON_FULL" in bad.json()["error"]


async def test_reject_on_full_answers_429_with_retry_after(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, engine = platform
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/request_backpressure_settings"
    await client.patch(url, json={"policy": "REJECT_ON_FULL"})
    for replica in engine.sets[dep["id"]].replicas:
        replica.outstanding = 1  # predict_concurrency 1: every replica is full
    full = await client.post(f"/models/{dep['model_id']}/production/predict", json={})
    assert full.status_code == 429
    assert full.headers["retry-after"] == "1"
    assert full.json()["error_code"] == "rate_limited"
    assert "REJECT_ON_FULL" in full.json()["error"]
    await client.patch(url, json={"policy": "QUEUE_ON_FULL"})
    queued = await client.post(f"/models/{dep['model_id']}/production/predict", json={})
    assert queued.status_code != 429  # queued for the replica instead (which the test engine cannot serve)


async def test_environments_promote_and_delete(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, engine = platform
    first = await push(client, make_truss(tmp_path / "t"), environment="production")
    model_id = first["model_id"]
    second = await push(client, make_truss(tmp_path / "u", config="# v2\n"))
    created = await client.post(f"/v1/models/{model_id}/environments", json={"name": "staging"})
    assert created.status_code == 201
    validate(created.json(), "EnvironmentV1")
    assert created.json()["current_deployment"] is None
    again = await client.post(f"/v1/models/{model_id}/environments", json={"name": "staging"})
    assert again.status_code == 409
    envs = (await client.get(f"/v1/models/{model_id}/environments")).json()
    validate(envs, "EnvironmentsV1")
    assert {e["name"] for e in envs["environments"]} == {"production", "staging"}
    promoted = await client.post(
        f"/v1/models/{model_id}/environments/staging/promote",
        json={"deployment_id": second["id"], "scale_down_previous_deployment": True},
    )
    assert promoted.status_code == 200, promoted.text
    validate(promoted.json(), "DeploymentV1")
    staging = (await client.get(f"/v1/models/{model_id}/environments/staging")).json()
    validate(staging, "EnvironmentV1")
    assert staging["current_deployment"]["id"] == second["id"]
    patched = await client.patch(
        f"/v1/models/{model_id}/environments/staging", json={"autoscaling_settings": {"max_replica": 2}}
    )
    assert patched.json()["status"] == "ACCEPTED"
    validate(patched.json()["environment"], "EnvironmentV1")
    assert patched.json()["environment"]["autoscaling_settings"]["max_replica"] == 2
    refused = await client.delete(f"/v1/models/{model_id}/deployments/{second['id']}")
    assert refused.status_code == 409
    assert "serves staging" in refused.json()["error"]
    gone = await client.delete(f"/v1/models/{model_id}/environments/staging")
    assert gone.json() == {"name": "staging", "model_id": model_id, "deleted": True}
    deleted = await client.delete(f"/v1/models/{model_id}/deployments/{second['id']}")
    validate(deleted.json(), "DeploymentTombstoneV1")
    assert second["id"] in engine.stopped
    assert (await client.get(f"/v1/deployments/{second['id']}")).status_code == 404
    assert (await client.delete(f"/v1/models/{model_id}/environments/production")).status_code == 409
    tomb = await client.delete(f"/v1/models/{model_id}")
    validate(tomb.json(), "ModelTombstoneV1")
    assert (await client.get(f"/v1/models/{model_id}")).status_code == 404
    predict = await client.post(f"/models/{model_id}/production/predict", json={})
    assert predict.status_code == 404


async def test_wake_answers_202_and_wakes_a_scaled_to_zero_deployment(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    await app.controller.scale_to_zero(dep["id"], "test")
    assert (await client.get(f"/v1/deployments/{dep['id']}")).json()["status"] == "SCALED_TO_ZERO"
    woke = await client.post(f"/models/{dep['model_id']}/production/wake")
    assert woke.status_code == 202
    await wait_status(client, dep["id"], "ACTIVE")
    again = await client.post(f"/models/{dep['model_id']}/deployment/{dep['id']}/wake")
    assert again.status_code == 202  # awake already: nothing to do
    assert (await client.get(f"/models/{dep['model_id']}/production/wake")).status_code == 405


async def test_a_newer_published_deployment_scales_older_unpromoted_ones_to_zero(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, engine = platform
    prod = await push(client, make_truss(tmp_path / "p"), environment="production")
    older = await push(client, make_truss(tmp_path / "o", config="# older\n"))
    newer = await push(client, make_truss(tmp_path / "n", config="# newer\n"))
    await wait_status(client, older["id"], "SCALED_TO_ZERO")  # the cleanup rule: SCALE_TO_ZERO
    assert (await client.get(f"/v1/deployments/{prod['id']}")).json()["status"] == "ACTIVE"  # serves production
    assert (await client.get(f"/v1/deployments/{newer['id']}")).json()["status"] == "ACTIVE"
    assert older["id"] in engine.stopped
    woke = await client.post(f"/models/{older['model_id']}/deployment/{older['id']}/wake")
    assert woke.status_code == 202
    await wait_status(client, older["id"], "ACTIVE")  # still there: it comes back when asked for


async def test_retry_a_failed_deployment(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, engine = platform
    engine.fail_load = True
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, dep["id"], "DEPLOY_FAILED")
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/retry"
    engine.fail_load = False
    retried = await client.post(url)
    validate(retried.json(), "RetryDeploymentResponseV1")
    assert retried.json()["retried"] is True
    await wait_status(client, dep["id"], "ACTIVE")
    again = await client.post(url)
    assert again.json()["retried"] is False
    assert "ACTIVE" in again.json()["reason"]


async def test_metrics_api_current_mode(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    app.controller.traffic.of(dep["id"]).finish(200, 0.01, 0.005)
    app.controller.traffic.of(dep["id"]).finish(503, 0.02, 0.02)
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/metrics"
    body = (await client.get(url)).json()
    validate(body, "GetModelMetricsResponseV1")
    names = [d["name"] for d in body["metric_descriptors"]]
    assert names == [  # Baseten's default set
        "baseten_replicas_active",
        "baseten_inference_requests_total",
        "baseten_end_to_end_response_time_seconds",
    ]
    values = body["metric_values"][0]["values"]
    assert values[0] == [1]
    assert values[1] == [1, 0, 0, 1]  # since the start, by status class 2xx..5xx
    picked = (
        await client.get(url, params={"metrics": "baseten_concurrent_requests,baseten_request_size_bytes"})
    ).json()
    assert [d["name"] for d in picked["metric_descriptors"]] == ["baseten_concurrent_requests"]  # known, not measured
    for params, words in [
        ({"mode": "HOURLY"}, "mode must be"),
        ({"metrics": "nope"}, "unknown metrics"),
        ({"start_epoch_millis": "1"}, "snapshot"),
        ({"mode": "SERIES", "start_epoch_millis": "5", "end_epoch_millis": "4"}, "must be after"),
        ({"mode": "SERIES", "start_epoch_millis": "0", "end_epoch_millis": str(8 * 86400 * 1000)}, "7 days"),
        ({"mode": "SUMMARY", "end_epoch_millis": "soon"}, "integers"),
    ]:
        response = await client.get(url, params=params)
        assert response.status_code == 400, params
        assert words in response.json()["error"]


async def test_terminate_replica(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, _, _ = platform
    dep = await push(client, make_truss(tmp_path / "t"))
    replica = (await client.get(f"/v1/deployments/{dep['id']}")).json()["replica_states"][0]["id"]
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/replicas/{replica}"
    done = await client.delete(url)
    assert done.status_code == 200
    validate(done.json(), "TerminateReplicaResponseV1")
    states = (await client.get(f"/v1/deployments/{dep['id']}")).json()["replica_states"]
    assert [s["id"] for s in states] == [f"{replica}.next"]
    missing = await client.delete(url)
    assert missing.status_code == 404 and replica in missing.json()["error"]
    invoke = (await client.post("/v1/api_keys", json={"type": "WORKSPACE_INVOKE"})).json()["api_key"]
    auth = {"Authorization": f"Api-Key {invoke}"}
    refused = await client.delete(url.replace(replica, f"{replica}.next"), headers=auth)
    assert refused.status_code == 403
