"""The Ray engine against a fake Ray dashboard (httpx MockTransport): no Ray needed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from trestle.platform.engines import registry
from trestle.platform.engines.base import EngineContext, ReplicaEvent, ReplicaSpec
from trestle.platform.engines.ray import RayEngine
from trestle.platform.engines.ray_config import DEPLOYMENT_NAME
from trestle.platform.engines.ray_logs import ReplicaActor, ReplicaLogs
from trestle.platform.errors import InvalidRequest, Unavailable
from trestle.platform.store.artifacts import check_signature, signed_path
from trestle.platform.store.logs import LogHub
from trestle.platform.store.scaling import Autoscaling

pytestmark = pytest.mark.anyio
DIGEST = "a" * 64


class Dashboard:
    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.status = "DEPLOYING"
        self.down = False
        self.puts = 0
        self.auth: list[str | None] = []
        self.replicas: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.auth.append(request.headers.get("authorization"))
        if self.down:
            raise httpx.ConnectError("connection refused")
        if request.method == "PUT":
            self.puts += 1
            self.config = json.loads(request.content)
            return httpx.Response(200)
        apps = {}
        for app in (self.config or {}).get("applications", []):
            deployments = {DEPLOYMENT_NAME: {"replicas": self.replicas}}
            apps[app["name"]] = {
                "status": self.status,
                "message": "",
                "deployed_app_config": app,
                "deployments": deployments,
            }
        return httpx.Response(200, json={"applications": apps})


def engine(tmp_path: Path, dashboard: Dashboard) -> tuple[RayEngine, list[tuple[str, ReplicaEvent]]]:
    ctx = EngineContext(run_dir=tmp_path / "run", logs=LogHub(tmp_path / "deps"))
    eng = RayEngine(
        ctx,
        address="http://ray:8265",
        token="tok",
        proxy_url="http://127.0.0.1:18000",
        artifact_url=lambda digest: f"http://platform{signed_path('k', digest)}",
        transport=httpx.MockTransport(dashboard.handler),
        poll_seconds=0.01,
    )
    events: list[tuple[str, ReplicaEvent]] = []
    eng.attach(lambda dep, event, detail: events.append((dep, event)))
    return eng, events


def spec(dep: str = "d1") -> ReplicaSpec:
    return ReplicaSpec(deployment_id=dep, argv=[], cwd=Path("."), env={}, artifact=DIGEST)


async def test_start_puts_the_application_and_routes_through_the_proxy(tmp_path: Path) -> None:
    dash = Dashboard()
    eng, events = engine(tmp_path, dash)
    await eng.start(spec())
    assert dash.auth[-1] == "Bearer tok"
    assert dash.config is not None
    [app] = dash.config["applications"]
    assert app["name"] == "trestle-d1"
    assert app["runtime_env"]["working_dir"].startswith(f"http://platform/v1/engine-artifacts/{DIGEST}/")
    rset = eng.replica_set("d1")
    assert rset is not None
    assert rset.replicas[0].url == "http://127.0.0.1:18000/trestle-d1"
    assert not rset.any_ready
    dash.status = "RUNNING"
    await eng.poll_once()
    assert rset.any_ready
    assert [e for _, e in events] == [ReplicaEvent.STARTED, ReplicaEvent.READY]
    await eng.close()


async def test_serve_scaling_to_zero_and_back_are_events(tmp_path: Path) -> None:
    dash = Dashboard()
    dash.status = "RUNNING"
    dash.replicas = [{"replica_id": "r1", "state": "RUNNING", "actor_id": "a1"}]
    eng, events = engine(tmp_path, dash)
    await eng.start(ReplicaSpec("d1", [], Path("."), {}, artifact=DIGEST, scaling=Autoscaling(0, 2)))
    await eng.poll_once()
    dash.replicas = []  # Serve's autoscaler took the last replica away; the application stays RUNNING
    await eng.poll_once()
    await eng.poll_once()
    dash.replicas = [{"replica_id": "r2", "state": "STARTING", "actor_id": "a2"}]
    await eng.poll_once()  # a request reached the proxy, which holds it while the replica starts
    dash.replicas = [{"replica_id": "r2", "state": "RUNNING", "actor_id": "a2"}]
    await eng.poll_once()
    assert [e for _, e in events] == [
        ReplicaEvent.STARTED,
        ReplicaEvent.READY,
        ReplicaEvent.SCALED_TO_ZERO,  # once
        ReplicaEvent.READY,
    ]
    rset = eng.replica_set("d1")
    assert rset is not None and rset.any_ready  # routable throughout: the proxy wakes it
    await eng.close()


async def test_a_fixed_count_at_zero_running_is_not_scaled_to_zero(tmp_path: Path) -> None:
    dash = Dashboard()
    dash.status = "RUNNING"
    eng, events = engine(tmp_path, dash)
    await eng.start(spec())  # min_replicas 1: zero running replicas is a restart, not a scale to zero
    await eng.poll_once()
    assert ReplicaEvent.SCALED_TO_ZERO not in [e for _, e in events]
    await eng.close()


async def test_ray_unreachable_at_push_is_a_clear_error_and_registers_nothing(tmp_path: Path) -> None:
    dash = Dashboard()
    dash.down = True
    eng, events = engine(tmp_path, dash)
    with pytest.raises(Unavailable, match="cannot reach the Ray cluster at http://ray:8265"):
        await eng.start(spec())
    assert eng.replica_set("d1") is None
    assert events == []
    dash.down = False
    await eng.start(spec("d2"))
    assert dash.config is not None
    assert [a["name"] for a in dash.config["applications"]] == ["trestle-d2"]
    await eng.close()


async def test_a_failed_deploy_is_reported_and_stop_removes_the_application(tmp_path: Path) -> None:
    dash = Dashboard()
    eng, events = engine(tmp_path, dash)
    await eng.start(spec())
    dash.status = "DEPLOY_FAILED"
    await eng.poll_once()
    assert events[-1] == ("d1", ReplicaEvent.FAILED)
    await eng.stop("d1")
    assert dash.config is not None
    assert dash.config["applications"] == []
    assert eng.replica_set("d1") is None
    await eng.close()


async def test_recovery_adopts_kept_applications_and_drops_the_rest(tmp_path: Path) -> None:
    dash = Dashboard()
    first, _ = engine(tmp_path, dash)
    await first.start(spec("keep"))
    await first.start(spec("gone"))
    await first.close()
    puts = dash.puts
    again, _ = engine(tmp_path, dash)
    await again.recover(keep=["keep"])
    assert dash.puts == puts + 1
    assert dash.config is not None
    assert [a["name"] for a in dash.config["applications"]] == ["trestle-keep"]
    await again.start(spec("keep"))  # the pipeline places it again: the same config, no duplicate
    assert [a["name"] for a in dash.config["applications"]] == ["trestle-keep"]
    await again.close()


async def test_an_application_the_cluster_lost_is_applied_again(tmp_path: Path) -> None:
    dash = Dashboard()
    eng, _ = engine(tmp_path, dash)
    await eng.start(spec())
    dash.config = None  # a Ray head restart
    await eng.poll_once()
    assert dash.config is not None
    assert [a["name"] for a in dash.config["applications"]] == ["trestle-d1"]
    await eng.close()


def test_the_ray_engine_needs_an_address_and_refuses_no_token(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    base = {"artifact_base": "http://platform", "artifact_key": "k"}
    ctx = EngineContext(run_dir=tmp_path / "run", logs=LogHub(tmp_path / "deps"), options=base)
    with pytest.raises(InvalidRequest, match="--ray-address"):
        registry.create("ray", ctx)
    ctx = EngineContext(tmp_path / "run", LogHub(tmp_path / "deps"), options={**base, "address": "http://r:8265"})
    with pytest.raises(InvalidRequest, match="--ray-insecure"):
        registry.create("ray", ctx)
    insecure = {**base, "address": "http://r:8265", "insecure": "1"}
    assert (
        registry.create("ray", EngineContext(tmp_path / "run", LogHub(tmp_path / "d"), options=insecure)).name == "ray"
    )
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    assert registry.create(
        "ray", EngineContext(tmp_path / "run", LogHub(tmp_path / "d"), options={**base, "address": "http://r:8265"})
    )


def test_artifact_urls_are_signed() -> None:
    path = signed_path("key", DIGEST)
    signature = path.rsplit("/", 1)[1].removesuffix(".tar.gz")
    assert check_signature("key", DIGEST, signature)
    assert not check_signature("other", DIGEST, signature)


async def test_platforms_sharing_a_cluster_never_delete_each_others_applications(tmp_path: Path) -> None:
    dash = Dashboard()
    ours, _ = engine(tmp_path, dash)
    ours.owner = "ours"
    theirs, _ = engine(tmp_path, dash)
    theirs.owner = "theirs"
    await ours.start(spec("a"))
    await theirs.start(spec("b"))  # its PUT carries ours over
    assert dash.config is not None
    assert sorted(a["name"] for a in dash.config["applications"]) == ["trestle-a", "trestle-b"]
    assert {a["args"]["platform"] for a in dash.config["applications"]} == {"ours", "theirs"}
    # a restart of ours that keeps nothing drops only its own
    await ours.close()
    again, _ = engine(tmp_path, dash)
    again.owner = "ours"
    await again.recover(keep=[])
    assert [a["name"] for a in dash.config["applications"]] == ["trestle-b"]
    await again.close()
    await theirs.close()


async def test_replica_output_reaches_the_deployment_log(tmp_path: Path) -> None:
    body = b":job_id:01000000\n:actor_name:ServeReplica:trestle-d1:TrestleReplica\nmodel loaded\npredict got x\n"
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, content=body if request.url.params["suffix"] == "err" else b"")

    hub = LogHub(tmp_path / "deps")
    async with httpx.AsyncClient(base_url="http://ray", transport=httpx.MockTransport(handler)) as http:
        logs = ReplicaLogs(http, hub)
        logs.sync("d1", [ReplicaActor("r1", "actor1")])
        for _ in range(100):
            if "predict got x" in "".join(hub.tail("d1")):
                break
            await asyncio.sleep(0.01)
        text = "".join(hub.tail("d1"))
        assert "[replica r1] model loaded" in text
        assert "[replica r1] predict got x" in text
        assert ":job_id:" not in text  # Ray's own marker lines are not the model's output
        assert {p["actor_id"] for p in asked} == {"actor1"}
        assert {p["suffix"] for p in asked} == {"out", "err"}
        logs.sync("d1", [])  # the replica is gone: no longer followed
        await logs.close()
