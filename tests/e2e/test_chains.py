"""Truss Chains end to end: real chain files (tests/e2e/chains/) pushed with ``trestle chains push`` to a
real platform and called over HTTP. Needs the ``chains`` extra (``truss``): skipped without it."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import KEY, PYTHON, Platform

pytest.importorskip("truss_chains", reason="needs the chains extra (truss): pip install -e '.[chains]'")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHAINS = Path(__file__).parent / "chains"
WORD_STATS = CHAINS / "word_stats" / "word_stats.py"


def push(platform: Platform, source: Path, *args: str) -> dict[str, Any]:
    out = platform.run_cli("chains", "push", str(source), *args, "--output", "json", timeout=400)
    assert out.returncode == 0, f"chains push failed:\n{out.stdout}\n{out.stderr}"
    view: dict[str, Any] = json.loads(out.stdout)
    return view


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("chains")
    (root / "home").mkdir()
    plat = Platform(root / "data", root / "home")
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


@pytest.fixture(scope="module")
def word_stats(platform: Platform) -> dict[str, Any]:
    return push(platform, WORD_STATS, "--promote")


def run_remote(platform: Platform, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return platform.http.post(path, json=body, **kwargs)


def test_dryrun_writes_the_trusses_and_deploys_nothing(platform: Platform) -> None:
    out = platform.run_cli("chains", "push", str(WORD_STATS), "--dryrun", "--output", "json")
    assert out.returncode == 0, out.stderr
    chain = json.loads(out.stdout)
    assert chain["chain_name"] == "word-stats"
    assert chain["entrypoint"] == "WordStats"
    assert [c["display_name"] for c in chain["chainlets"]] == ["Splitter", "Counter", "WordStats"]
    for c in chain["chainlets"]:
        config = (Path(c["dir"]) / "config.yaml").read_text()
        assert "bdn:" in config  # the key newer Truss releases write; the push below accepts it
        assert "baseten_chain_api_key" in config
    assert platform.http.get("/v1/chains").json() == {"chains": []}


def test_chains_own_validation_errors(platform: Platform, tmp_path: Path) -> None:
    bad = tmp_path / "bad_chain.py"
    bad.write_text(
        "import truss_chains as chains\n\n\nclass Bad(chains.ChainletBase):\n"
        "    async def run_remote(self, text):\n        return text\n"
    )
    out = platform.run_cli("chains", "push", str(bad))
    assert out.returncode == 1
    assert "does not comply with the required spec" in out.stderr
    assert "Parameter `text` has no type annotation" in out.stderr


def test_engine_builder_chainlets_are_refused_by_name(platform: Platform, tmp_path: Path) -> None:
    source = tmp_path / "llm_chain.py"
    source.write_text(
        "import truss_chains as chains\nfrom truss.base import trt_llm_config as trt\n\n\n"
        "class LLM(chains.EngineBuilderLLMChainlet):\n"
        "    engine_builder_config = trt.TRTLLMConfiguration(build=trt.TrussTRTLLMBuildConfiguration(\n"
        "        base_model='llama', checkpoint_repository=trt.CheckpointRepository(source='HF', repo='o/m')))\n\n\n"
        "@chains.mark_entrypoint\nclass Front(chains.ChainletBase):\n"
        "    def __init__(self, llm: LLM = chains.depends(LLM)) -> None:\n        self._llm = llm\n\n"
        "    async def run_remote(self, prompt: str) -> str:\n        return prompt\n"
    )
    out = platform.run_cli("chains", "push", str(source))
    assert out.returncode == 1
    assert "`LLM` is an engine builder (TRT-LLM) chainlet" in out.stderr


def test_push_makes_one_deployment_per_chainlet(platform: Platform, word_stats: dict[str, Any]) -> None:
    assert word_stats["status"] == "ACTIVE"
    assert word_stats["environment"] == "production"
    names = {c["name"]: c for c in word_stats["chainlets"]}
    assert set(names) == {"Splitter", "Counter", "WordStats"}
    assert all(c["status"] == "ACTIVE" for c in names.values())
    assert names["WordStats"]["dependencies"] == ["Counter", "Splitter"]
    for c in names.values():  # each one an ordinary deployment
        assert platform.deployment(c["id"])["status"] == "ACTIVE"
    chains = platform.http.get("/v1/chains").json()["chains"]
    assert [(c["name"], c["deployments_count"]) for c in chains] == [("word-stats", 1)]
    listing = platform.cli("chains", "deployments", "word-stats")
    assert word_stats["id"] in listing
    assert "Splitter" in listing


def test_two_hops_and_the_routes(platform: Platform, word_stats: dict[str, Any]) -> None:
    chain_id, cdep = word_stats["chain_id"], word_stats["id"]
    body = {"text": "the cat and the hat"}
    response = run_remote(platform, "/chains/word-stats/environments/production/run_remote", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == [5, ["the", "and"]]
    assert run_remote(platform, "/chains/word-stats/production/run_remote", {**body, "top": 3}).json() == [
        5,
        ["the", "and", "cat"],
    ]
    assert run_remote(platform, f"/chains/{chain_id}/deployment/{cdep}/run_remote", body).json() == [5, ["the", "and"]]
    on_host = run_remote(platform, "/environments/production/run_remote", body, headers={"Host": f"chain-{chain_id}.x"})
    assert on_host.json() == [5, ["the", "and"]]
    # what chainlets call: one chainlet of the chain deployment
    internal = f"/chains/{chain_id}/deployment/{cdep}/chainlet/Splitter/run_remote"
    assert run_remote(platform, internal, {"text": "a b"}).json() == {"words": ["a", "b"]}
    assert httpx.post(platform.url + internal, json={"text": "a b"}).status_code == 401
    assert run_remote(platform, "/chains/nope/production/run_remote", body).status_code == 404


def test_an_error_two_hops_down(platform: Platform, word_stats: dict[str, Any]) -> None:
    response = run_remote(platform, "/chains/word-stats/production/run_remote", {"text": "   "})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["exception_cls_name"] == "ValueError"
    message = error["exception_message"]
    assert message.startswith("(showing chained remote errors, root error at the bottom)")
    assert "Error calling dependency Chainlet `Counter`, HTTP status=500" in message
    assert 'raise ValueError("no words")' in message
    assert message.rstrip().endswith("ValueError: no words")
    frame = error["user_stack_trace"][-1]
    assert frame["name"] == "run_remote"
    assert frame["filename"].endswith("word_stats.py")
    assert frame["line"] == "counts = await self._counter.run_remote(words)"


def test_a_user_http_status_survives_two_hops(platform: Platform) -> None:
    push(platform, CHAINS / "errors" / "errors_chain.py", "--promote")
    path = "/chains/errors/production/run_remote"
    assert run_remote(platform, path, {"status": 200}).json() == "fine"
    response = run_remote(platform, path, {"status": 418})
    assert response.status_code == 418, response.text
    assert "leaf says 418" in json.dumps(response.json())


def test_input_validation_is_400(platform: Platform, word_stats: dict[str, Any]) -> None:
    response = run_remote(platform, "/chains/word-stats/production/run_remote", {"top": 1})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Input Parsing Error")


def test_the_request_id_reaches_every_chainlet(platform: Platform, word_stats: dict[str, Any]) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"x-baseten-request-id": "acc-123", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    response = run_remote(platform, "/chains/word-stats/production/run_remote", {"text": "  "}, headers=headers)
    assert response.status_code == 500
    ids = {c["name"]: c["id"] for c in word_stats["chainlets"]}
    for name in ("Splitter", "Counter", "WordStats"):
        platform.wait_for(lambda name=name: "[acc-123]" in platform.logs(ids[name]), timeout=10)
    for name in ("Splitter", "Counter", "WordStats"):  # the trace and the entry request id in every log
        logs = platform.logs(ids[name])
        assert trace_id in logs, logs
        assert "x-baseten-chain-request-id=acc-123" in logs, logs
    # without one, the gateway makes one id for the whole chain request
    run_remote(platform, "/chains/word-stats/production/run_remote", {"text": " "})
    logs = platform.logs(ids["Splitter"])
    made = re.findall(r"\[([0-9a-f]{32})\] word_stats: splitting 1 characters", logs)
    assert made, logs
    platform.wait_for(lambda: f"[{made[-1]}]" in platform.logs(ids["Counter"]), timeout=10)
    chainlet_logs = platform.cli("chains", "logs", "word-stats", "Splitter")
    assert "splitting" in chainlet_logs


def test_async_run_remote(platform: Platform, word_stats: dict[str, Any]) -> None:
    body = {"model_input": {"text": "x y x"}}
    response = platform.http.post("/chains/word-stats/production/async_run_remote", json=body)
    assert response.status_code == 201, response.text
    request_id = response.json()["request_id"]
    done = platform.wait_for(
        lambda: platform.http.get(f"/async_request/{request_id}").json()["status"] in ("SUCCEEDED", "FAILED"),
        timeout=60,
    )
    assert done
    assert platform.http.get(f"/async_request/{request_id}").json()["status"] == "SUCCEEDED"


def test_two_chains_side_by_side_and_their_keys(platform: Platform, word_stats: dict[str, Any]) -> None:
    other = push(platform, WORD_STATS, "--name", "word-stats-2")
    assert other["status"] == "ACTIVE"
    assert other["chain_id"] != word_stats["chain_id"]
    mine = {c["name"]: c["id"] for c in word_stats["chainlets"]}
    theirs = {c["name"]: c["id"] for c in other["chainlets"]}
    assert not set(mine.values()) & set(theirs.values())  # a Splitter each
    path = f"/chains/word-stats-2/deployment/{other['id']}/run_remote"
    assert run_remote(platform, path, {"text": "b a b"}).json() == [3, ["b", "a"]]
    # the per-chain key: its own chain only, nothing else on the platform
    key = (platform.data_dir / "chains" / other["chain_id"] / "api_key").read_text()
    scoped = httpx.Client(base_url=platform.url, headers={"Authorization": f"Api-Key {key}"}, timeout=60)
    with scoped:
        assert scoped.post(path, json={"text": "x"}).json() == [1, ["x"]]
        assert scoped.post("/chains/word-stats/production/run_remote", json={"text": "x"}).status_code == 404
        assert scoped.get("/v1/chains").status_code == 403
        splitter = platform.deployment(theirs["Splitter"])
        model_route = f"/models/{splitter['model_id']}/deployment/{splitter['id']}/predict"
        assert scoped.post(model_route, json={}).status_code == 403
    assert key not in (platform.data_dir.parent / "platform.out").read_text()
    # the replica has it as the secret Chains reads, never in the deployment's config
    assert key not in json.dumps(platform.deployment(theirs["WordStats"]))
    # no environment serves it: it can be stopped, every chainlet drained
    assert "is INACTIVE" in platform.cli("chains", "deactivate", "word-stats-2", other["id"])
    assert all(platform.deployment(dep)["status"] == "INACTIVE" for dep in theirs.values())
    assert run_remote(platform, path, {"text": "x"}).status_code == 409


def test_streaming_entrypoint(platform: Platform) -> None:
    view = push(platform, CHAINS / "streaming" / "streaming.py", "--promote")
    with platform.http.stream("POST", "/chains/streamer/production/run_remote", json={"text": "a bb ccc"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        body = b"".join(response.iter_raw())
    assert body == b"a\nbb\nccc\n"
    assert view["entrypoint"] == "Streamer"


def test_use_binary_edge(platform: Platform) -> None:
    push(platform, CHAINS / "binary" / "binary_chain.py", "--promote")
    response = run_remote(platform, "/chains/binary/production/run_remote", {"numbers": [1, 2, 3.5]})
    assert response.status_code == 200, response.text
    assert response.json() == [1.0, 3.0, 6.5]


def test_websocket_entrypoint(platform: Platform) -> None:
    from websockets.asyncio.client import connect

    push(platform, CHAINS / "websocket" / "websocket_chain.py", "--promote")
    url = platform.url.replace("http", "ws") + "/chains/shouter/production/websocket"

    async def talk() -> list[str]:
        async with connect(url, additional_headers={"Authorization": f"Api-Key {KEY}"}) as ws:
            await ws.send("hi")
            first = str(await ws.recv())
            await ws.send("there")
            return [first, str(await ws.recv())]

    assert asyncio.run(talk()) == ["HI!", "THERE!"]


def test_promotion_switches_the_environment_in_one_step(platform: Platform, word_stats: dict[str, Any]) -> None:
    staged = push(platform, WORD_STATS, "--environment", "staging")
    assert staged["environment"] == "staging"
    # production's chainlets kept serving meanwhile (their own models: no cleanup rule reaches them)
    assert all(platform.deployment(c["id"])["status"] == "ACTIVE" for c in word_stats["chainlets"])
    staging = run_remote(platform, "/chains/word-stats/environments/staging/run_remote", {"text": "a"})
    assert staging.json() == [1, ["a"]]
    envs = platform.http.get("/v1/chains/word-stats/environments").json()["environments"]
    assert {e["name"]: e["chain_deployment_id"] for e in envs} == {
        "production": word_stats["id"],
        "staging": staged["id"],
    }
    platform.cli("chains", "promote", "word-stats", staged["id"])
    view = platform.http.get(f"/v1/chains/word-stats/deployments/{staged['id']}").json()
    assert view["environment"] in ("production", "staging")
    envs = platform.http.get("/v1/chains/word-stats/environments").json()["environments"]
    assert {e["name"]: e["chain_deployment_id"] for e in envs}["production"] == staged["id"]
    assert run_remote(platform, "/chains/word-stats/production/run_remote", {"text": "a a"}).json() == [2, ["a"]]


def test_a_chainlet_scaled_to_zero_wakes(platform: Platform, word_stats: dict[str, Any]) -> None:
    counter = next(c for c in word_stats["chainlets"] if c["name"] == "Counter")["id"]
    platform.cli(
        "scale", counter, "--min-replicas", "0", "--max-replicas", "1", "--autoscaling-window", "1",
        "--scale-down-delay", "1", "--scale-to-zero-delay", "1",
    )  # fmt: skip
    platform.wait_for(lambda: platform.deployment(counter)["status"] == "SCALED_TO_ZERO", timeout=60)
    path = f"/chains/word-stats/deployment/{word_stats['id']}/run_remote"
    response = run_remote(platform, path, {"text": "wake up up"})
    assert response.status_code == 200, response.text
    assert response.json() == [3, ["up", "wake"]]
    assert platform.deployment(counter)["status"] == "ACTIVE"


def test_watch_patches_changed_chainlets_and_survives_a_broken_edit(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "chain").mkdir()
    source = tmp_path / "chain" / "word_stats.py"  # the chain's directory is what every chainlet bundles
    shutil.copy(WORD_STATS, source)
    log = tmp_path / "watch.out"
    argv = [PYTHON, "-m", "trestle", "chains", "push", str(source), "--name", "word-watch", "--watch"]
    with open(log, "wb") as out:
        watcher = subprocess.Popen(argv, env=platform.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        platform.wait_for(lambda: "Watching" in log.read_text(), timeout=400, interval=0.5)
        first = log.read_text()
        for name in ("Splitter", "Counter", "WordStats"):  # generated again, identical: nothing sent
            assert f"{name}: In sync" in first
        path = "/chains/word-watch/development/run_remote"
        assert run_remote(platform, path, {"text": "the cat and the hat"}).json() == [5, ["the", "and"]]
        source.write_text(source.read_text().replace("w.lower()", "w.upper()"))
        platform.wait_for(
            lambda: run_remote(platform, path, {"text": "the cat and the hat"}).json() == [5, ["THE", "AND"]],
            timeout=120,
            interval=0.5,
        )
        platform.wait_for(lambda: "Counter: Patched (restart)" in log.read_text(), timeout=60)
        source.write_text(source.read_text() + "\ndef broken(:\n")
        platform.wait_for(lambda: "SyntaxError" in log.read_text(), timeout=60)
        assert "The previous code keeps serving" in log.read_text()
        assert run_remote(platform, path, {"text": "the cat and the hat"}).json() == [5, ["THE", "AND"]]
        assert watcher.poll() is None  # still watching
    finally:
        watcher.terminate()
        watcher.wait(30)


VERSIONED = """
import asyncio
import os

import truss_chains as chains

VERSION = "{version}"


class Leaf(chains.ChainletBase):
    async def run_remote(self) -> str:
        return VERSION


@chains.mark_entrypoint("versions")
class Entry(chains.ChainletBase):
    def __init__(self, leaf: Leaf = chains.depends(Leaf)) -> None:
        self._leaf = leaf

    async def run_remote(self, gate: str) -> str:
        if gate:
            open(gate + ".entered", "w").close()
        while gate and not os.path.exists(gate):  # held until the test opens the gate
            await asyncio.sleep(0.05)
        return VERSION + "/" + await self._leaf.run_remote()
"""


def test_a_request_in_flight_finishes_on_the_version_it_entered(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "chain").mkdir()
    source = tmp_path / "chain" / "versions.py"
    source.write_text(VERSIONED.format(version="v1"))
    push(platform, source, "--promote")
    path = "/chains/versions/production/run_remote"
    assert run_remote(platform, path, {"gate": ""}).json() == "v1/v1"
    gate = tmp_path / "gate"
    answers: list[Any] = []
    held = threading.Thread(target=lambda: answers.append(run_remote(platform, path, {"gate": str(gate)}).json()))
    held.start()
    platform.wait_for(lambda: (tmp_path / "gate.entered").exists(), timeout=60)  # inside v1's Entry now
    source.write_text(VERSIONED.format(version="v2"))
    push(platform, source, "--promote")  # returns once production is the new chain deployment
    assert run_remote(platform, path, {"gate": ""}).json() == "v2/v2"
    gate.touch()
    held.join(60)
    assert answers == ["v1/v1"]  # its second hop went to its own version's Leaf, not production's
