"""Chains on the platform, in process: the chain push API, the store, the per-replica hook, the routes and
the chain key's scope (no truss needed: the chainlets here are plain trusses)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.trusses import make_truss
from tests.unit.platform.test_api import KEY, InstantEngine, started_platform, upload
from trestle.platform.control.chains import chain_status
from trestle.platform.edge.app import PlatformApp
from trestle.platform.edge.chain_gateway import chain_from_host, parse_chain_route, split_chain_path
from trestle.platform.edge.gateway import GatewayError
from trestle.platform.engines.base import ReplicaSpec
from trestle.platform.errors import InvalidRequest, NotFound
from trestle.platform.settings import Settings
from trestle.platform.store.chains import ChainDeployment, Chainlet, ChainStore
from trestle.platform.store.database import Store
from trestle.platform.store.keys import KeyStore, KeyType
from trestle.platform.store.states import DeploymentStatus as S

pytestmark = pytest.mark.anyio


class RecordingEngine(InstantEngine):
    def __init__(self) -> None:
        super().__init__()
        self.specs: dict[str, ReplicaSpec] = {}

    async def start(self, spec: ReplicaSpec) -> None:
        self.specs[spec.deployment_id] = spec
        await super().start(spec)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, PlatformApp, RecordingEngine]]:
    engine = RecordingEngine()
    app, client = await started_platform(Settings(data_dir=tmp_path / "data", gateway_wait_seconds=0.2), engine)
    async with client:
        yield client, app, engine
    await app.shutdown()


async def push_chain(client: httpx.AsyncClient, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    a = await upload(client, make_truss(tmp_path / "a", "a"))
    b = await upload(client, make_truss(tmp_path / "b", "b"))
    body = {
        "chain_name": "pair",
        "entrypoint": "Front",
        "chainlets": [
            {"name": "Back", "artifact": a, "dependencies": []},
            {"name": "Front", "artifact": b, "dependencies": ["Back"]},
        ],
        **extra,
    }
    response = await client.post("/v1/chains/deployments", json=body)
    assert response.status_code == 201, response.text
    pushed: dict[str, Any] = response.json()
    return pushed


async def active(client: httpx.AsyncClient, chain: str, cdep: str) -> dict[str, Any]:
    for _ in range(200):
        view: dict[str, Any] = (await client.get(f"/v1/chains/{chain}/deployments/{cdep}")).json()
        if view["status"] == "ACTIVE":
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"not ACTIVE: {view}")


async def test_a_chain_push_gives_each_chainlet_its_urls_and_the_chains_key(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, app, engine = platform
    pushed = await push_chain(client, tmp_path)
    chain_id, cdep = pushed["chain"]["id"], pushed["deployment"]["id"]
    view = await active(client, chain_id, cdep)
    assert [c["name"] for c in view["chainlets"]] == ["Back", "Front"]
    key_file = app.settings.data_dir / "chains" / chain_id / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    base = f"http://127.0.0.1:{app.settings.port}/chains/{chain_id}/deployment/{cdep}/chainlet"
    for chainlet in view["chainlets"]:
        spec = engine.specs[chainlet["id"]]
        assert spec.env["TRUSS_SECRET_baseten_chain_api_key"] == key
        assert key not in json.dumps(dict(spec.environment_variables))  # not what a cluster engine ships
        config = json.loads(
            (app.settings.environment_file(chainlet["id"]).parent / "dynamic_chainlet_config").read_text()
        )
        assert config == {name: {"predict_url": f"{base}/{name}/run_remote"} for name in ("Back", "Front")}
    scoped = app.keys.lookup(key)
    assert scoped is not None
    assert scoped.chain_id == chain_id
    assert scoped.type is KeyType.WORKSPACE_INVOKE
    # an ordinary deployment gets neither
    plain = await client.post("/v1/deployments", json={"artifact": await upload(client, make_truss(tmp_path / "p"))})
    plain_id = plain.json()["id"]
    for _ in range(100):
        if plain_id in engine.specs:
            break
        await asyncio.sleep(0.02)
    assert "TRUSS_SECRET_baseten_chain_api_key" not in engine.specs[plain_id].env


async def test_a_second_push_reuses_the_chain_and_its_key(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, app, _ = platform
    first = await push_chain(client, tmp_path)
    key = (app.settings.data_dir / "chains" / first["chain"]["id"] / "api_key").read_text()
    second = await push_chain(client, tmp_path, environment="staging")
    assert second["chain"]["id"] == first["chain"]["id"]
    assert second["deployment"]["id"] != first["deployment"]["id"]
    assert (app.settings.data_dir / "chains" / first["chain"]["id"] / "api_key").read_text() == key
    await active(client, "pair", second["deployment"]["id"])
    for _ in range(100):
        envs = (await client.get("/v1/chains/pair/environments")).json()["environments"]
        if {e["name"]: e["chain_deployment_id"] for e in envs}.get("staging") == second["deployment"]["id"]:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(envs)
    listed = (await client.get("/v1/chains")).json()["chains"]
    assert [(c["name"], c["deployments_count"], c["team_name"]) for c in listed] == [("pair", 2, "default")]
    promoted = await client.post(
        "/v1/chains/pair/environments/production/promote", json={"chain_deployment_id": first["deployment"]["id"]}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["environment"] == "production"
    # the first chain deployment's chainlets kept running while the second one deployed
    assert all(c["status"] == "ACTIVE" for c in promoted.json()["chainlets"])


async def test_a_development_push_is_the_chains_development_at_once(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, app, _ = platform
    pushed = await push_chain(client, tmp_path, development=True)
    envs = (await client.get("/v1/chains/pair/environments")).json()["environments"]
    assert {e["name"]: e["chain_deployment_id"] for e in envs}["development"] == pushed["deployment"]["id"]
    for chainlet in pushed["deployment"]["chainlets"]:
        assert app.controller.store.get_deployment(chainlet["id"]).is_development
    both = await push_chain_body(client, tmp_path, development=True, environment="staging")
    assert both.status_code == 400
    assert "cannot go to an environment" in both.json()["error"]


async def push_chain_body(client: httpx.AsyncClient, tmp_path: Path, **extra: Any) -> httpx.Response:
    a = await upload(client, make_truss(tmp_path / "a", "a"))
    body = {"chain_name": "pair", "entrypoint": "A", "chainlets": [{"name": "A", "artifact": a}], **extra}
    return await client.post("/v1/chains/deployments", json=body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entrypoint": "Nope"}, "the entrypoint 'Nope' is not one of the chainlets"),
        ({"chain_name": "bad name"}, "invalid chain name"),
        ({"chainlets": []}, "chainlets is required"),
        ({"environment": "Bad Env"}, "invalid environment name"),
    ],
)
async def test_a_bad_chain_push_is_400(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], change: dict[str, Any], message: str
) -> None:
    client, _, _ = platform
    body = {"chain_name": "c", "entrypoint": "A", "chainlets": [{"name": "A", "artifact": "0" * 64}], **change}
    response = await client.post("/v1/chains/deployments", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_unknown_dependency_and_duplicate_names_are_refused(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine],
) -> None:
    client, _, _ = platform
    art = "0" * 64
    dup = {"chain_name": "c", "entrypoint": "A", "chainlets": [{"name": "A", "artifact": art}] * 2}
    assert "unique" in (await client.post("/v1/chains/deployments", json=dup)).json()["error"]
    missing = {
        "chain_name": "c",
        "entrypoint": "A",
        "chainlets": [{"name": "A", "artifact": art, "dependencies": ["B"]}],
    }
    assert "depends on ['B']" in (await client.post("/v1/chains/deployments", json=missing)).json()["error"]


async def test_the_chain_key_only_reaches_its_chain(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, app, _ = platform
    pushed = await push_chain(client, tmp_path)
    chain_id, cdep = pushed["chain"]["id"], pushed["deployment"]["id"]
    await active(client, chain_id, cdep)
    key = (app.settings.data_dir / "chains" / chain_id / "api_key").read_text()
    scoped = {"Authorization": f"Api-Key {key}"}
    assert (await client.get("/v1/chains", headers=scoped)).status_code == 403
    assert (await client.get("/v1/deployments", headers=scoped)).status_code == 403
    back = f"/models/pair.Back.{cdep}/production/predict"
    assert (await client.post(back, json={}, headers=scoped)).status_code == 403
    other = await client.post(
        "/v1/chains/deployments",
        json={**_one("other", pushed["deployment"]["chainlets"][0]["id"], app), "chain_name": "other"},
    )
    assert other.status_code == 201, other.text
    other_id = other.json()["chain"]["id"]
    refused = await client.post(f"/chains/{other_id}/development/run_remote", json={}, headers=scoped)
    assert refused.status_code == 404
    assert refused.json()["error"] == f"no chain with id or name {other_id!r}"
    # its own chain, as far as the chain routes go (then the gateway's own answers)
    mine = await client.post(f"/chains/{chain_id}/production/run_remote", json={}, headers=scoped)
    assert mine.status_code == 404
    assert "has no deployment in 'production'" in mine.json()["error"]


def _one(name: str, deployment_id: str, app: PlatformApp) -> dict[str, Any]:
    artifact = app.controller.store.get_deployment(deployment_id).artifact
    return {"chain_name": name, "entrypoint": "A", "chainlets": [{"name": "A", "artifact": artifact}]}


@pytest.mark.parametrize(
    ("rest", "environment", "cdep", "chainlet", "tail"),
    [
        ("/production/run_remote", "production", None, None, "predict"),
        ("/development/websocket", "development", None, None, "sync/v1/websocket"),
        ("/environments/staging/run_remote", "staging", None, None, "predict"),
        ("/deployment/d1/run_remote", None, "d1", None, "predict"),
        ("/deployment/d1/chainlet/Back/run_remote", None, "d1", "Back", "predict"),
        ("/deployment/d1/chainlet/Back/sync/health", None, "d1", "Back", "sync/health"),
        ("/production/async_run_remote", "production", None, None, "async_predict"),
    ],
)
def test_chain_routes(rest: str, environment: str | None, cdep: str | None, chainlet: str | None, tail: str) -> None:
    route = parse_chain_route(rest)
    assert (route.environment, route.chain_deployment_id, route.chainlet, route.tail) == (
        environment,
        cdep,
        chainlet,
        tail,
    )


@pytest.mark.parametrize("rest", ["/production/predict", "/environments/x", "/deployment/d1", "/other/run_remote"])
def test_unknown_chain_routes_are_404(rest: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_chain_route(rest)
    assert info.value.status == 404


def test_chain_hosts_and_paths() -> None:
    assert chain_from_host("chain-abc123.localhost:8000") == "abc123"
    assert chain_from_host("chain-.x") is None
    assert chain_from_host("model-abc.x") is None
    assert chain_from_host("chain-abc") is None
    assert split_chain_path("/chains/word-stats/production/run_remote") == ("word-stats", "/production/run_remote")
    assert split_chain_path("/chains/word-stats") is None
    assert split_chain_path("/models/x/production/predict") is None


def test_chain_status_is_active_when_every_chainlet_is() -> None:
    cdep = ChainDeployment("c1", "ch", "A", ("A", "B"), None, 0.0, (Chainlet("A", "d1", ()), Chainlet("B", "d2", ())))
    assert chain_status(cdep, {"d1": S.ACTIVE, "d2": S.ACTIVE}) == "ACTIVE"
    assert chain_status(cdep, {"d1": S.ACTIVE, "d2": S.LOADING_MODEL}) == "LOADING_MODEL"
    assert chain_status(cdep, {"d1": S.DEPLOY_FAILED, "d2": S.ACTIVE}) == "DEPLOY_FAILED"
    half = ChainDeployment("c1", "ch", "A", ("A", "B"), None, 0.0, (Chainlet("A", "d1", ()),))
    assert chain_status(half, {"d1": S.ACTIVE}) == "BUILDING"


def test_chain_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    chains = ChainStore(store)
    chain, created = chains.get_or_create_chain("word-stats")
    assert created
    assert chains.get_or_create_chain("word-stats") == (chain, False)
    assert chains.find_chain(chain.id) == chains.find_chain("word-stats") == chain
    assert chains.environments(chain.id) == {"production": None}
    with pytest.raises(NotFound):
        chains.find_chain("nope")
    with pytest.raises(InvalidRequest):
        chains.get_or_create_chain("no spaces")
    with pytest.raises(InvalidRequest):
        chains.create_deployment(chain.id, "X", ["A"], None)
    cdep = chains.create_deployment(chain.id, "A", ["A"], "production")
    assert cdep.chainlets == ()
    assert cdep.target_environment == "production"
    chains.promote(chain.id, "production", cdep.id)
    assert chains.environments(chain.id) == {"production": cdep.id}
    assert chains.get_deployment(cdep.id).target_environment is None
    assert chains.chainlet_of("nothing") is None


def test_chain_keys_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    secret, record = KeyStore(store).create(KeyType.WORKSPACE_INVOKE, "chain x", chain_id="ch1")
    assert record.chain_id == "ch1"
    again = KeyStore(Store(tmp_path / "p.db")).lookup(secret)
    assert again is not None
    assert again.chain_id == "ch1"
    plain, _ = KeyStore(store).create(KeyType.WORKSPACE_INVOKE, "plain")
    found = KeyStore(Store(tmp_path / "p.db")).lookup(plain)
    assert found is not None
    assert found.chain_id is None


def test_the_key_value_is_never_in_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    secret, _ = KeyStore(store).create(KeyType.WORKSPACE_INVOKE, "chain x", chain_id="ch1")
    assert secret not in (tmp_path / "p.db").read_bytes().decode(errors="replace")
    assert secret != KEY


async def test_a_push_refused_midway_leaves_no_half_chain_deployment(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, _, _ = platform
    good = await upload(client, make_truss(tmp_path / "a", "a"))
    body = {
        "chain_name": "half",
        "entrypoint": "A",
        "chainlets": [{"name": "A", "artifact": good}, {"name": "B", "artifact": "0" * 64}],
    }
    response = await client.post("/v1/chains/deployments", json=body)
    assert response.status_code == 400, response.text
    assert "upload it first" in response.json()["error"]
    assert (await client.get("/v1/chains/half/deployments")).json() == {"deployments": []}


async def test_deactivate_a_chain_deployment_no_environment_serves(
    platform: tuple[httpx.AsyncClient, PlatformApp, RecordingEngine], tmp_path: Path
) -> None:
    client, app, engine = platform
    first = await push_chain(client, tmp_path, environment="production")
    cdep = first["deployment"]["id"]
    await active(client, "pair", cdep)
    for _ in range(100):
        if (await client.get(f"/v1/chains/pair/deployments/{cdep}")).json()["environment"] == "production":
            break
        await asyncio.sleep(0.02)
    refused = await client.post(f"/v1/chains/pair/deployments/{cdep}/deactivate")
    assert refused.status_code == 409
    assert "serves production" in refused.json()["error"]
    second = await push_chain(client, tmp_path)
    other = second["deployment"]["id"]
    await active(client, "pair", other)
    done = await client.post(f"/v1/chains/pair/deployments/{other}/deactivate")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "INACTIVE"
    for chainlet in done.json()["chainlets"]:
        assert chainlet["status"] == "INACTIVE"
        assert chainlet["id"] not in engine.sets
    assert (await client.get(f"/v1/chains/pair/deployments/{cdep}")).json()["status"] == "ACTIVE"
