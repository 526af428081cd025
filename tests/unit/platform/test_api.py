"""The control API and gateway in process, over an engine double that 'starts' replicas instantly."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.trusses import make_truss
from trestle.platform.control.controller import open_controller
from trestle.platform.edge.app import PlatformApp
from trestle.platform.engines.base import (
    HotReloadResult,
    LoadMeter,
    Replica,
    ReplicaEvent,
    ReplicaSet,
    ReplicaSpec,
    ReplicaState,
)
from trestle.platform.engines.builder import BuildResult
from trestle.platform.engines.gpu_allocator import GpuAllocator, GpuRequest, Holder
from trestle.platform.engines.gpu_inventory import parse_fake
from trestle.platform.settings import Settings
from trestle.platform.store import packaging

KEY = "k-test"
AUTH = {"Authorization": f"Api-Key {KEY}"}


class InstantEngine:
    name = "instant"

    def __init__(self) -> None:
        self.sets: dict[str, ReplicaSet] = {}
        self.events: Callable[[str, ReplicaEvent, str], None] = lambda *a: None
        self.fail_load = False
        self.stopped: list[str] = []
        self.now = 0.0  # the load meters' clock
        self.reloads: list[str] = []
        self.reload_results: list[list[HotReloadResult]] = []

    def _replicas(self, rset: ReplicaSet, count: int) -> None:
        while len(rset.replicas) < count:
            replica = Replica(f"{rset.deployment_id}-r{len(rset.replicas)}", 1, rset.meter)
            replica.ready = not self.fail_load
            rset.replicas.append(replica)
        del rset.replicas[count:]
        rset.refresh()

    async def start(self, spec: ReplicaSpec) -> None:
        rset = ReplicaSet(spec.deployment_id, spec.routes, LoadMeter(clock=lambda: self.now))
        self.sets[spec.deployment_id] = rset
        self.events(spec.deployment_id, ReplicaEvent.STARTED, "")
        self._replicas(rset, spec.replicas)
        if self.fail_load:
            self.events(spec.deployment_id, ReplicaEvent.FAILED, "load failed")
            return
        self.events(spec.deployment_id, ReplicaEvent.READY, "")

    async def scale(self, deployment_id: str, replicas: int) -> None:
        rset = self.sets.get(deployment_id)
        if rset is not None:
            self._replicas(rset, replicas)

    async def replace(self, spec: ReplicaSpec, timeout: float) -> bool:
        await self.start(spec)
        return True

    async def stop(self, deployment_id: str, *, drain: bool = True) -> None:
        self.sets.pop(deployment_id, None)
        self.stopped.append(deployment_id)

    def replica_set(self, deployment_id: str) -> ReplicaSet | None:
        return self.sets.get(deployment_id)

    async def terminate(self, deployment_id: str, replica_id: str) -> bool:
        rset = self.sets.get(deployment_id)
        if rset is None or replica_id not in [replica.id for replica in rset.replicas]:
            return False
        rset.replicas = [replica for replica in rset.replicas if replica.id != replica_id]
        replacement = Replica(f"{replica_id}.next", 1, rset.meter)
        replacement.ready = True
        rset.replicas.append(replacement)
        rset.refresh()
        return True

    async def hot_reload(self, deployment_id: str) -> list[HotReloadResult]:
        self.reloads.append(deployment_id)
        if self.reload_results:
            return self.reload_results.pop(0)
        return [HotReloadResult("r", True, "ok")]

    def attach(self, events: Callable[[str, ReplicaEvent, str], None]) -> None:
        self.events = events

    async def recover(self, keep: Collection[str]) -> None:
        self.recovered = list(keep)

    def report(self, deployment_id: str) -> list[ReplicaState]:
        rset = self.sets.get(deployment_id)
        return rset.states() if rset is not None else []

    async def close(self) -> None:
        pass


async def fake_build(
    requirements: list[str], truss_dir: Path, log: Callable[[str], None], python_version: str | None = None
) -> BuildResult:
    """The builder's stand-in: this interpreter, built at once."""
    return BuildResult(Path(sys.executable), "k", True, 0.0)


async def started_platform(settings: Settings, engine: Any) -> tuple[PlatformApp, httpx.AsyncClient]:
    """A platform app on ``engine`` with the fake builder and ``KEY``, started, and an in-process client."""
    ctrl = open_controller(settings, engine=engine)
    ctrl.builder.build = fake_build  # type: ignore[method-assign]
    app = PlatformApp(settings, ctrl)
    app.ensure_key(KEY)
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    return app, httpx.AsyncClient(transport=transport, base_url="http://platform", headers=AUTH)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, PlatformApp, InstantEngine]]:
    engine = InstantEngine()
    app, client = await started_platform(Settings(data_dir=tmp_path / "data", gateway_wait_seconds=0.2), engine)
    async with client:
        yield client, app, engine
    await app.shutdown()


async def upload(client: httpx.AsyncClient, truss: Path) -> str:
    data = packaging.pack(truss)
    digest = packaging.digest(data)
    response = await client.put(f"/v1/artifacts/{digest}", content=data)
    assert response.status_code in (200, 201), response.text
    return digest


async def wait_status(client: httpx.AsyncClient, dep_id: str, status: str) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await client.get(f"/v1/deployments/{dep_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"{dep_id} never reached {status}: {body}")


pytestmark = pytest.mark.anyio


async def test_auth_is_required_everywhere(platform: Any) -> None:
    client, _, _ = platform
    for path in ("/v1/health", "/v1/models", "/models/x/production/predict"):
        response = await client.get(path, headers={"Authorization": "Api-Key wrong"})
        assert response.status_code == 401
        assert "API key" in response.json()["error"]
    assert (await client.get("/v1/health")).status_code == 200


async def test_upload_is_content_addressed(platform: Any, tmp_path: Path) -> None:
    client, _, _ = platform
    data = packaging.pack(make_truss(tmp_path / "t"))
    digest = packaging.digest(data)
    assert (await client.head(f"/v1/artifacts/{digest}")).status_code == 404
    assert (await client.put(f"/v1/artifacts/{digest}", content=data)).status_code == 201
    assert (await client.head(f"/v1/artifacts/{digest}")).status_code == 200
    assert (await client.put(f"/v1/artifacts/{digest}", content=data)).status_code == 200
    bad = await client.put(f"/v1/artifacts/{'0' * 64}", content=data)
    assert bad.status_code == 400
    assert "does not match" in bad.json()["error"]
    assert (await client.put("/v1/artifacts/not-a-digest", content=data)).status_code == 400


async def test_push_errors_are_clear_4xx(platform: Any, tmp_path: Path) -> None:
    client, _, _ = platform
    garbage = b"this is not a tarball"
    digest = packaging.digest(garbage)
    await client.put(f"/v1/artifacts/{digest}", content=garbage)
    response = await client.post("/v1/deployments", json={"artifact": digest})
    assert response.status_code == 400
    assert "malformed truss archive" in response.json()["error"]
    response = await client.post("/v1/deployments", json={"artifact": "1" * 64})
    assert response.status_code == 400
    assert "upload it first" in response.json()["error"]
    response = await client.post("/v1/deployments", content=b"{nope")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    unknown = await upload(client, make_truss(tmp_path / "u", config="not_a_key: 1\n"))
    response = await client.post("/v1/deployments", json={"artifact": unknown})
    assert response.status_code == 400
    assert "not_a_key" in response.json()["error"]
    good = await upload(client, make_truss(tmp_path / "g"))
    response = await client.post("/v1/deployments", json={"artifact": good, "environment": "Bad Name!"})
    assert response.status_code == 400
    assert "invalid environment name" in response.json()["error"]
    response = await client.post("/v1/deployments", json={"artifact": good, "development": True, "environment": "x"})
    assert response.status_code == 400
    for path in ("/v1/deployments/nope", "/v1/models/nope", "/v1/models/nope/environments"):
        response = await client.get(path)
        assert response.status_code == 404, path
    response = await client.post("/v1/deployments/nope/promote", json={})
    assert response.status_code == 404


async def test_push_promote_scale_down_and_rollback(platform: Any, tmp_path: Path) -> None:
    client, app, engine = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    first = (await client.post("/v1/deployments", json={"artifact": digest, "environment": "production"})).json()
    assert first["predict_url"].endswith(f"/deployment/{first['id']}/predict")
    await wait_status(client, first["id"], "ACTIVE")
    for _ in range(100):
        if "production" in (await client.get(f"/v1/deployments/{first['id']}")).json()["environments"]:
            break
        await asyncio.sleep(0.01)
    env_file = app.settings.environment_file(first["id"])
    assert json.loads(env_file.read_text()) == {"name": "production"}

    second = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, second["id"], "ACTIVE")
    assert env_file.read_text() == json.dumps({"name": "production"})
    assert app.settings.environment_file(second["id"]).read_text() == ""
    result = (await client.post(f"/v1/deployments/{second['id']}/promote", json={})).json()
    assert result["promoted"]
    assert result["previous"] == first["id"]
    assert result["previous_scaled_down"]
    assert (await client.get(f"/v1/deployments/{first['id']}")).json()["status"] == "SCALED_TO_ZERO"
    assert env_file.read_text() == ""

    # rollback: promoting the old one wakes it up and switches once it is ACTIVE
    result = (await client.post(f"/v1/deployments/{first['id']}/promote", json={})).json()
    assert result["pending"]
    await wait_status(client, first["id"], "ACTIVE")
    for _ in range(100):
        envs = (await client.get("/v1/models/echo/environments")).json()["environments"]
        if envs[0]["deployment_id"] == first["id"]:
            break
        await asyncio.sleep(0.01)
    assert envs[0]["deployment_id"] == first["id"]
    assert (await client.get(f"/v1/deployments/{second['id']}")).json()["status"] == "SCALED_TO_ZERO"


async def test_failed_load_is_deploy_failed_and_gateway_says_so(platform: Any, tmp_path: Path) -> None:
    client, _, engine = platform
    engine.fail_load = True
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    body = await wait_status(client, dep["id"], "DEPLOY_FAILED")
    assert body["error"] == "load failed"
    response = await client.post(f"/models/echo/deployment/{dep['id']}/predict", json={})
    assert response.status_code == 503
    assert "DEPLOY_FAILED" in response.json()["error"]
    response = await client.post(f"/v1/deployments/{dep['id']}/promote", json={})
    assert response.status_code == 409


async def test_deactivate_and_bad_promotions(platform: Any, tmp_path: Path) -> None:
    client, _, _ = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dev = (await client.post("/v1/deployments", json={"artifact": digest, "development": True})).json()
    await wait_status(client, dev["id"], "ACTIVE")
    response = await client.post(f"/v1/deployments/{dev['id']}/promote", json={})
    assert response.status_code == 400
    assert "development deployment cannot be promoted" in response.json()["error"]
    pub = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, pub["id"], "ACTIVE")
    response = await client.post(f"/v1/deployments/{pub['id']}/promote", json={"environment": "UPPER"})
    assert response.status_code == 400
    assert (await client.post(f"/v1/deployments/{pub['id']}/deactivate")).json()["status"] == "INACTIVE"
    response = await client.post(f"/models/echo/deployment/{pub['id']}/predict", json={})
    assert response.status_code == 409
    assert "INACTIVE" in response.json()["error"]
    response = await client.post("/models/echo/environments/production/predict", json={})
    assert response.status_code == 404
    assert "no deployment yet" in response.json()["error"]
    listing = (await client.get("/v1/deployments", params={"model": "echo"})).json()["deployments"]
    assert [d["id"] for d in listing] == [dev["id"], pub["id"]]


async def test_patch_endpoint(platform: Any, tmp_path: Path) -> None:
    client, _, _ = platform
    truss = make_truss(tmp_path / "t")
    digest = await upload(client, truss)
    dev = (await client.post("/v1/deployments", json={"artifact": digest, "development": True})).json()
    await wait_status(client, dev["id"], "ACTIVE")
    manifest = (await client.get(f"/v1/deployments/{dev['id']}/manifest")).json()
    assert set(manifest["files"]) == {"config.yaml", "model/model.py"}
    import base64

    new_code = base64.b64encode(b"class Model:\n    def predict(self, x):\n        return 2\n").decode()
    stale = await client.post(f"/v1/deployments/{dev['id']}/patch", json={"prev_hash": "x", "files": {}})
    assert stale.status_code == 409
    response = await client.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={"prev_hash": manifest["hash"], "files": {"model/model.py": new_code}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "hot_reload"
    escape = await client.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={"prev_hash": response.json()["hash"], "files": {"../x.py": new_code}},
    )
    assert escape.status_code == 400
    bad = await client.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={
            "prev_hash": response.json()["hash"],
            "files": {"config.yaml": base64.b64encode(b"model_name: echo\nsystem_packages: [ffmpeg]\n").decode()},
        },
    )
    assert bad.status_code == 409
    assert bad.json()["type"] == "needs_full_deploy"


async def test_replicas_on_push_and_scale(platform: Any, tmp_path: Path) -> None:
    client, _, engine = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest, "replicas": 2})).json()
    body = await wait_status(client, dep["id"], "ACTIVE")
    assert (body["replicas"], body["ready_replicas"]) == (2, 2)
    assert len(body["replica_states"]) == 2
    assert body["autoscaling"]["min_replicas"] == body["autoscaling"]["max_replicas"] == 2

    scaled = await client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 3})
    assert scaled.status_code == 200, scaled.text
    assert (scaled.json()["replicas"], scaled.json()["ready_replicas"]) == (3, 3)
    assert len(engine.sets[dep["id"]].replicas) == 3

    ranged = await client.post(f"/v1/deployments/{dep['id']}/scale", json={"min_replicas": 1, "max_replicas": 2})
    assert ranged.json()["replicas"] == 2  # clamped into the new range at once
    assert ranged.json()["autoscaling"]["concurrency_target"] == 1.0

    for bad, needle in [
        ({"replicas": 0}, "between 1 and"),
        ({"replicas": 2, "min_replicas": 1}, "pass one or the others"),
        ({"min_replicas": 5}, "more than max_replicas"),
        ({"replicas": "2"}, "whole number"),
        ({"speed": 3}, "unknown scaling setting"),
    ]:
        response = await client.post(f"/v1/deployments/{dep['id']}/scale", json=bad)
        assert response.status_code == 400, bad
        assert needle in response.json()["error"]
    response = await client.post("/v1/deployments", json={"artifact": digest, "replicas": 0})
    assert response.status_code == 400
    assert (await client.post("/v1/deployments/nope/scale", json={"replicas": 1})).status_code == 404

    # a docker_server truss listens on one fixed port: one replica only
    docker = (
        "docker_server:\n  start_command: x\n  server_port: 9\n  predict_endpoint: /p\n"
        "  readiness_endpoint: /r\n  liveness_endpoint: /l\n"
    )
    custom = make_truss(tmp_path / "c", name="custom", config=docker)
    custom_digest = await upload(client, custom)
    response = await client.post("/v1/deployments", json={"artifact": custom_digest, "replicas": 2})
    assert response.status_code == 400
    assert "one replica" in response.json()["error"]


async def test_autoscaler_scales_up_down_and_to_zero(platform: Any, tmp_path: Path) -> None:
    client, app, engine = platform
    ctrl = app.controller
    digest = await upload(client, make_truss(tmp_path / "t"))
    dev = (await client.post("/v1/deployments", json={"artifact": digest, "development": True})).json()
    body = await wait_status(client, dev["id"], "ACTIVE")
    assert body["autoscaling"]["min_replicas"] == 0  # development deployments may scale to zero
    settings = {
        "max_replicas": 3,
        "autoscaling_window": 2,
        "scale_down_delay": 5,
        "scale_to_zero_delay": 10,
    }
    assert (await client.post(f"/v1/deployments/{dev['id']}/scale", json=settings)).status_code == 200
    meter = engine.sets[dev["id"]].meter

    async def tick(seconds: int) -> dict[str, Any]:
        for _ in range(seconds):
            engine.now += 1
            ctrl.autoscaler.tick()
            await asyncio.sleep(0.01)  # let the spawned scaling run
        body: dict[str, Any] = (await client.get(f"/v1/deployments/{dev['id']}")).json()
        return body

    for _ in range(3):
        meter.begin()  # three requests in flight, target 1 per replica
    assert (await tick(3))["replicas"] == 3
    for _ in range(3):
        meter.end()
    assert (await tick(3))["replicas"] == 3  # within the scale-down delay
    assert (await tick(3))["replicas"] == 1
    assert "autoscaler: 3 → 1 replicas" in (await client.get(f"/v1/deployments/{dev['id']}/logs")).text
    body = await tick(11)
    assert body["status"] == "SCALED_TO_ZERO"
    assert body["replicas"] == 0
    assert dev["id"] in engine.stopped
    # the next request wakes it (the instant engine's replicas do not listen: a clear 503)
    response = await client.post("/models/echo/development/predict", json={})
    assert response.status_code == 503
    body = await wait_status(client, dev["id"], "ACTIVE")
    assert body["replicas"] == 1


async def test_a_hot_reload_failing_on_one_replica_reloads_the_others_back(platform: Any, tmp_path: Path) -> None:
    import base64

    client, app, engine = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dev = (await client.post("/v1/deployments", json={"artifact": digest, "development": True, "replicas": 2})).json()
    await wait_status(client, dev["id"], "ACTIVE")
    manifest = (await client.get(f"/v1/deployments/{dev['id']}/manifest")).json()
    engine.reload_results = [[HotReloadResult("r0", True, "ok"), HotReloadResult("r1", False, "ImportError: x")]]
    new_code = base64.b64encode(b"class Model:\n    def predict(self, x):\n        return 2\n").decode()
    response = await client.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={"prev_hash": manifest["hash"], "files": {"model/model.py": new_code}},
    )
    assert response.status_code == 422
    assert "ImportError" in response.json()["error"]
    # r0 took the new code: after the files are restored, every replica reloads the old code
    assert engine.reloads == [dev["id"], dev["id"]]
    model_py = app.settings.truss_dir(dev["id"]) / "model" / "model.py"
    assert "return x" in model_py.read_text()


async def test_a_save_wakes_a_development_deployment_scaled_to_zero(platform: Any, tmp_path: Path) -> None:
    import base64

    client, app, _ = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    dev = (await client.post("/v1/deployments", json={"artifact": digest, "development": True})).json()
    await wait_status(client, dev["id"], "ACTIVE")
    await app.controller.scale_to_zero(dev["id"], "idle")
    body = (await client.get(f"/v1/deployments/{dev['id']}")).json()
    assert (body["status"], body["replicas"]) == ("SCALED_TO_ZERO", 0)
    manifest = (await client.get(f"/v1/deployments/{dev['id']}/manifest")).json()
    new_code = base64.b64encode(b"class Model:\n    def predict(self, x):\n        return 2\n").decode()
    response = await client.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={"prev_hash": manifest["hash"], "files": {"model/model.py": new_code}},
    )
    assert response.status_code == 200, response.text
    body = await wait_status(client, dev["id"], "ACTIVE")
    assert (body["replicas"], body["ready_replicas"]) == (1, 1)


async def test_recovery_is_an_explicit_start_step_that_reconciles_the_engine(platform: Any, tmp_path: Path) -> None:
    client, app, engine = platform
    assert engine.recovered == []  # startup ran recovery once, with nothing to keep
    digest = await upload(client, make_truss(tmp_path / "t"))
    dep = (await client.post("/v1/deployments", json={"artifact": digest})).json()
    await wait_status(client, dep["id"], "ACTIVE")
    from trestle.platform.control.recovery import recover

    assert await recover(app.controller) == [dep["id"]]
    assert engine.recovered == [dep["id"]]
    await wait_status(client, dep["id"], "ACTIVE")


async def test_engine_artifacts_are_served_on_a_signed_path_without_an_api_key(platform: Any, tmp_path: Path) -> None:
    from trestle.platform.store.artifacts import signed_path

    client, app, _ = platform
    digest = await upload(client, make_truss(tmp_path / "t"))
    path = signed_path(app.controller.artifact_key, digest)
    response = await client.get(path, headers={"Authorization": ""})
    assert response.status_code == 200
    assert packaging.digest(response.content) == digest
    forged = signed_path("not-the-key", digest)
    assert (await client.get(forged, headers={"Authorization": ""})).status_code == 404


async def test_concurrent_development_pushes_leave_the_record_equal_to_what_is_served(
    platform: Any, tmp_path: Path
) -> None:
    client, app, engine = platform
    stop = engine.stop
    delays = iter([0.05, 0.0, 0.03, 0.01, 0.04, 0.02] * 10)

    async def uneven_stop(deployment_id: str, *, drain: bool = True) -> None:
        await asyncio.sleep(next(delays))  # stopping a replica takes longer some times than others
        await stop(deployment_id, drain=drain)

    engine.stop = uneven_stop
    digests = []
    for i in range(6):
        model = f"class Model:\n    def predict(self, x):\n        return {i}\n"
        digests.append(await upload(client, make_truss(tmp_path / f"v{i}", model=model)))
    first = (await client.post("/v1/deployments", json={"artifact": digests[0], "development": True})).json()
    await wait_status(client, first["id"], "ACTIVE")
    for round_ in range(3):
        batch = digests[1:] if round_ % 2 == 0 else list(reversed(digests))
        answers = await asyncio.gather(
            *(client.post("/v1/deployments", json={"artifact": d, "development": True}) for d in batch)
        )
        assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
        await wait_status(client, first["id"], "ACTIVE")
        deployments = app.controller.settings.deployments_dir
        for _ in range(500):  # until every push's replace task has run (or been dropped, its staging removed)
            locks = app.controller._replace_locks.values()
            if not any(lock.locked() for lock in locks) and not list(deployments.glob(".staging-*")):
                break
            await asyncio.sleep(0.01)
        record = (await client.get(f"/v1/deployments/{first['id']}")).json()
        served = (app.controller.settings.truss_dir(first["id"]) / "model" / "model.py").read_text()
        version = digests.index(record["artifact"])
        assert served == f"class Model:\n    def predict(self, x):\n        return {version}\n"


async def test_a_config_alias_bomb_is_refused_at_push(platform: Any, tmp_path: Path) -> None:
    client, _, _ = platform
    bomb = "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}' if prev else '1'] * 9)}]\n"
        for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
    )  # 9**9 values from a few hundred bytes
    digest = await upload(client, make_truss(tmp_path / "bomb", config=bomb))
    response = await client.post("/v1/deployments", json={"artifact": digest})
    assert response.status_code == 400
    assert "expands to more than 100000 values" in response.json()["error"]


async def test_gpus_view_metrics_and_a_missing_type_refused_at_push(tmp_path: Path) -> None:
    fake = '[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "uuid": "GPU-aaaa"}]'
    gpus = GpuAllocator(parse_fake(fake))
    settings = Settings(data_dir=tmp_path / "data")
    app = PlatformApp(settings, open_controller(settings, engine=InstantEngine(), gpus=gpus))
    app.ensure_key(KEY)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform", headers=AUTH) as client:
        truss = make_truss(tmp_path / "l4", "needs-l4", config="resources:\n  accelerator: L4:2\n")
        response = await client.post("/v1/deployments", json={"artifact": await upload(client, truss)})
        assert response.status_code == 400
        assert response.json()["error"] == (
            "resources ask for 2 x L4 but this platform has no L4 GPU; its GPUs: 1 x H100 (NVIDIA H100 80GB HBM3)"
        )
        assert (await client.get("/v1/models")).json()["models"] == []  # nothing was created

        assert gpus.try_acquire(Holder("dep1", "dep1-r0.0"), GpuRequest(1, "H100")) is not None
        view = (await client.get("/v1/gpus")).json()
        assert view["source"] == "TRESTLE_FAKE_GPUS"
        assert view["gpus"][0]["accelerator"] == "H100" and view["gpus"][0]["replica_id"] == "dep1-r0.0"
        metrics = (await client.get("/v1/metrics")).text
        assert 'trestle_gpu_allocated{index="0",uuid="GPU-aaaa",name="NVIDIA H100 80GB HBM3",deployment="dep1"} 1' in (
            metrics
        )
        assert 'trestle_gpu_memory_total_bytes{index="0"' in metrics
    app.controller.store.close()
