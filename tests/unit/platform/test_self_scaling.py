"""An engine that scales itself (Ray Serve) reports a scale to zero and back as events; the controller
shows SCALED_TO_ZERO, a request makes it WAKING_UP without placing the deployment again (the engine's
proxy holds the request and starts a replica), and the engine's READY makes it ACTIVE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.trusses import make_truss
from tests.unit.platform.test_api import platform, wait_status  # noqa: F401  (fixture and helpers)
from tests.unit.platform.test_resources import push
from trestle.platform.engines.base import ReplicaEvent

pytestmark = pytest.mark.anyio


async def test_scaled_to_zero_by_the_engine_then_woken_by_a_request(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, engine = platform
    engine.autoscales = True  # as the Ray engine
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    starts = []
    original = engine.start

    async def counting_start(spec: Any) -> None:
        starts.append(spec.deployment_id)
        await original(spec)

    engine.start = counting_start
    engine.events(dep["id"], ReplicaEvent.SCALED_TO_ZERO, "Serve scaled the application to zero replicas")
    await wait_status(client, dep["id"], "SCALED_TO_ZERO")
    app.controller.wake(dep["id"])  # what the gateway does on a request
    await wait_status(client, dep["id"], "WAKING_UP")
    assert starts == []  # not placed again: the engine wakes it itself
    engine.events(dep["id"], ReplicaEvent.READY, "Serve runs 1 replica(s) again")
    await wait_status(client, dep["id"], "ACTIVE")
    events = (await client.get("/v1/events")).json()
    assert any("zero replicas" in e.get("message", "") for e in events.get("events", [])), events


async def test_a_replica_fetches_only_its_declared_secrets(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    from trestle.platform.store.artifacts import signed_secrets_path

    client, app, _ = platform
    for name, value in (("hf_token", "declared-value"), ("other_team", "not-yours")):
        assert (await client.post("/v1/secrets", json={"name": name, "value": value})).status_code == 200
    dep = await push(client, make_truss(tmp_path / "t", config="secrets:\n  hf_token: null\n  unset_one: null\n"))
    other = await push(client, make_truss(tmp_path / "o", name="other"))
    key = app.controller.artifact_key
    anonymous = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))  # no API key
    async with anonymous:
        answer = await anonymous.get(signed_secrets_path(key, dep["id"]))
        assert answer.status_code == 200
        assert answer.json() == {"secrets": {"hf_token": "declared-value"}}
        assert answer.headers["cache-control"] == "no-store"
        wrong = signed_secrets_path(key, other["id"]).replace(other["id"], dep["id"], 1)
        assert (await anonymous.get(wrong)).status_code == 404  # another deployment's signature
        assert (await anonymous.get(signed_secrets_path("not-the-key", dep["id"]))).status_code == 404
