"""Dynamic batching on a real ``trestle serve``: errors, disconnects, order, idle latency, /v1/embeddings.

The model records every batch it executes (``batches.jsonl`` in the markers directory), so the
tests read what the model actually received. An input with ``"hold": NAME`` (or an embeddings text
``hold:NAME``) keeps its batch running until the test writes the file NAME: requests sent
meanwhile queue up for the next batch.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import ServerHandle, run_server
from tests.support.sockets import open_request
from tests.support.trusses import make_truss

MODEL = """
import asyncio, hashlib, json, math, os, pathlib, time

import trestle
from trestle.protocols import BatchedEmbeddingModel

MARK = pathlib.Path(os.environ["MARKERS"])
ASYNC = os.environ.get("VARIANT") == "async"


def record(method, values):
    with open(MARK / "batches.jsonl", "a") as f:
        f.write(json.dumps({"method": method, "values": values, "t": time.time()}) + "\\n")


def answer(x):
    if x.get("fail"):
        return ValueError(f"item {x['id']} is bad")
    return {"id": x["id"], "n": len(x.get("items", [])), "sum": sum(x.get("items", []))}


def held(values):
    return [v["hold"] for v in values if isinstance(v, dict) and "hold" in v]


def vector(text):
    digest = hashlib.sha256(text.encode()).digest()[:8]
    raw = [b - 127.5 for b in digest]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


class Model(BatchedEmbeddingModel):
    default_model_name = "tiny-hash"

    if ASYNC:

        @trestle.batched(max_batch_size=16, max_wait_ms=2)
        async def predict(self, inputs):
            record("predict", inputs)
            for name in held(inputs):
                while not (MARK / name).exists():
                    await asyncio.sleep(0.005)
            return [answer(x) for x in inputs]

    else:

        @trestle.batched(max_batch_size=16, max_wait_ms=2)
        def predict(self, inputs):
            record("predict", inputs)
            for name in held(inputs):
                while not (MARK / name).exists():
                    time.sleep(0.005)
            return [answer(x) for x in inputs]

    def embed(self, texts):
        record("embed", texts)
        for text in texts:
            if text.startswith("hold:"):
                while not (MARK / text[5:]).exists():
                    time.sleep(0.005)
        return [vector(t) for t in texts]

    def count_tokens(self, texts):
        return sum(len(t.split()) for t in texts)
"""

CONFIG = """
runtime:
  predict_concurrency: 256
"""


def expected_vector(text: str) -> list[float]:
    import hashlib
    import math

    raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:8]]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def batches(markers: Path, method: str = "predict") -> list[list[Any]]:
    path = markers / "batches.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [row["values"] for row in rows if row["method"] == method]


def batch_with(markers: Path, key: Any, method: str = "predict") -> list[Any]:
    for batch in batches(markers, method):
        ids = [v["id"] if isinstance(v, dict) else v for v in batch]
        if key in ids:
            return ids
    raise AssertionError(f"no {method} batch held {key!r}")


def metric(server: ServerHandle, name: str, labels: str) -> float:
    text = httpx.get(server.url + "/metrics/trestle").text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def release(markers: Path, name: str) -> None:
    (markers / name).write_text("go")


@pytest.fixture(scope="module", params=["sync", "async"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp(f"batched-{request.param}")
    markers = root / "markers"
    markers.mkdir()
    truss = make_truss(root / "truss", "batched", MODEL, CONFIG)
    env = {"MARKERS": str(markers), "VARIANT": request.param}
    with run_server(truss, env=env) as handle:
        handle.markers = markers  # type: ignore[attr-defined]
        yield handle


@pytest.fixture
def markers(server: ServerHandle) -> Path:
    path: Path = server.markers  # type: ignore[attr-defined]
    return path


def post_all(server: ServerHandle, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies) + 1)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/models/model:predict", json=b) for b in bodies))

    return asyncio.run(go())


def hold_then(server: ServerHandle, markers: Path, name: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send a request that holds its batch, then ``bodies`` (queued behind it), then let it go."""
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(
            httpx.post, server.url + "/v1/models/model:predict", json={"id": name, "hold": name}, timeout=60
        )
        wait_until(lambda: any(name == v.get("hold") for b in batches(markers) for v in b))
        rest = pool.submit(post_all, server, bodies)
        wait_until(lambda: metric(server, "trestle_batch_queued", 'method="predict"') >= len(bodies))
        release(markers, name)
        assert blocker.result().status_code == 200
        return rest.result()


def test_one_items_error_fails_only_that_request(server: ServerHandle, markers: Path) -> None:
    bodies = [{"id": "e-ok-1"}, {"id": "e-bad", "fail": True}, {"id": "e-ok-2", "items": [1, 2]}]
    ok1, bad, ok2 = hold_then(server, markers, "e-hold", bodies)
    assert sorted(batch_with(markers, "e-bad")) == ["e-bad", "e-ok-1", "e-ok-2"]  # one batch of the three
    assert (ok1.status_code, ok2.status_code) == (200, 200)
    assert ok2.json() == {"id": "e-ok-2", "n": 2, "sum": 3}
    assert bad.status_code == 500
    assert bad.json() == {"error": "Internal Server Error (in model/chainlet)."}
    assert "ValueError: item e-bad is bad" in server.log()


def test_a_client_that_leaves_while_queued_is_not_in_the_executed_batch(server: ServerHandle, markers: Path) -> None:
    left = metric(server, "trestle_cancellations_total", 'reason="disconnect"')
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(
            httpx.post, server.url + "/v1/models/model:predict", json={"id": "d-hold", "hold": "d-hold"}, timeout=60
        )
        wait_until(lambda: any(v.get("hold") == "d-hold" for b in batches(markers) for v in b))
        sock = open_request(server.url, "/v1/models/model:predict", {"id": "d-leaver"})
        wait_until(lambda: metric(server, "trestle_batch_queued", 'method="predict"') >= 1)
        sock.close()
        wait_until(lambda: metric(server, "trestle_cancellations_total", 'reason="disconnect"') > left)
        stayer = pool.submit(httpx.post, server.url + "/v1/models/model:predict", json={"id": "d-stayer"}, timeout=60)
        wait_until(lambda: metric(server, "trestle_batch_queued", 'method="predict"') >= 1)
        release(markers, "d-hold")
        assert blocker.result().status_code == 200
        assert stayer.result().json() == {"id": "d-stayer", "n": 0, "sum": 0}
    assert batch_with(markers, "d-stayer") == ["d-stayer"]
    assert not any("d-leaver" in [v.get("id") for v in b] for b in batches(markers))


def test_order_and_pairing_under_200_concurrent_callers(server: ServerHandle, markers: Path) -> None:
    rng = random.Random(15)
    bodies = [{"id": f"o-{i}", "items": [rng.randint(-50, 50) for _ in range(rng.randint(0, 40))]} for i in range(200)]
    responses = post_all(server, bodies)
    assert [r.status_code for r in responses] == [200] * 200
    assert [r.json() for r in responses] == [
        {"id": b["id"], "n": len(b["items"]), "sum": sum(b["items"])} for b in bodies
    ]
    executed = [b for b in batches(markers) if any(str(v.get("id", "")).startswith("o-") for v in b)]
    assert sum(len(b) for b in executed) == 200  # every request ran exactly once
    assert max(len(b) for b in executed) <= 16  # max_batch_size holds
    assert len(executed) < 200  # and requests were batched


def test_batch_metrics_are_exported(server: ServerHandle) -> None:
    httpx.post(server.url + "/v1/models/model:predict", json={"id": "m-1"}, timeout=30)
    text = httpx.get(server.url + "/metrics/trestle").text
    for family in ("trestle_batch_size", "trestle_batch_wait_seconds", "trestle_batch_duration_seconds"):
        assert re.search(rf'^{family}_count\{{method="predict"\}} [1-9]', text, re.M), family
    assert 'trestle_batch_queued{method="predict"} 0.0' in text


def test_embeddings_are_batched_through_the_openai_sdk(server: ServerHandle, markers: Path) -> None:
    texts = [f"sentence number {i} about batching" for i in range(12)]

    async def go() -> list[Any]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as oai:
            blocker = asyncio.ensure_future(oai.embeddings.create(model="tiny-hash", input="hold:emb-hold"))
            await asyncio.to_thread(wait_until, lambda: "hold:emb-hold" in sum(batches(markers, "embed"), []))
            calls = [oai.embeddings.create(model="tiny-hash", input=t, encoding_format="float") for t in texts]
            tasks = [asyncio.ensure_future(c) for c in calls]
            queued = 'method="embeddings"'
            await asyncio.to_thread(wait_until, lambda: metric(server, "trestle_batch_queued", queued) >= len(texts))
            release(markers, "emb-hold")
            await blocker
            return list(await asyncio.gather(*tasks))

    results = asyncio.run(go())
    for text, result in zip(texts, results, strict=True):
        assert result.model == "tiny-hash"
        assert result.data[0].embedding == pytest.approx(expected_vector(text))
        assert result.usage.prompt_tokens == len(text.split())
    assert sorted(batch_with(markers, texts[0], "embed")) == sorted(texts)  # one embed call for all twelve


def test_a_bad_embeddings_request_in_a_batch_gets_its_own_400(server: ServerHandle) -> None:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            good = client.post("/v1/embeddings", json={"model": "tiny-hash", "input": ["a b", "c"]})
            bad = client.post("/v1/embeddings", json={"model": "tiny-hash", "input": [1, 2]})
            return list(await asyncio.gather(good, bad))

    good, bad = asyncio.run(go())
    assert good.status_code == 200 and [d["index"] for d in good.json()["data"]] == [0, 1]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


# --- runtime.batching and low load ---------------------------------------------------------

IDLE_MODEL = """
import json, os, pathlib, time
import trestle

MARK = pathlib.Path(os.environ["MARKERS"])


class Model:
    @trestle.batched(max_batch_size=16, max_wait_ms=5)
    def predict(self, inputs):
        with open(MARK / "calls.jsonl", "a") as f:
            f.write(json.dumps({"ids": [x["id"] for x in inputs], "t": time.time()}) + "\\n")
        for x in inputs:
            if "hold" in x:
                while not (MARK / x["hold"]).exists():
                    time.sleep(0.005)
        return [{"id": x["id"]} for x in inputs]
"""

IDLE_CONFIG = """
runtime:
  predict_concurrency: 16
  batching:
    max_batch_size: 4
    max_wait_ms: 120000
"""


@pytest.fixture(scope="module")
def slow_wait(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, Path]]:
    """A server whose config.yaml overrides the decorator: batches of 4, a 2-minute max wait."""
    root = tmp_path_factory.mktemp("batched-idle")
    markers = root / "markers"
    markers.mkdir()
    truss = make_truss(root / "truss", "idle", IDLE_MODEL, IDLE_CONFIG)
    with run_server(truss, env={"MARKERS": str(markers)}) as handle:
        yield handle, markers


def calls(markers: Path) -> list[dict[str, Any]]:
    path = markers / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_single_request_at_low_load_does_not_wait_for_max_wait(slow_wait: tuple[ServerHandle, Path]) -> None:
    server, markers = slow_wait
    for i in range(3):
        sent = time.time()
        r = httpx.post(server.url + "/v1/models/model:predict", json={"id": f"idle-{i}"}, timeout=60)
        assert r.json() == {"id": f"idle-{i}"}
        call = next(c for c in calls(markers) if c["ids"] == [f"idle-{i}"])
        assert call["t"] - sent < 60  # max_wait_ms is 120 s: the request ran at once, alone


def test_runtime_batching_in_config_overrides_the_decorator(slow_wait: tuple[ServerHandle, Path]) -> None:
    server, markers = slow_wait
    url = server.url + "/v1/models/model:predict"
    with ThreadPoolExecutor(10) as pool:
        blocker = pool.submit(httpx.post, url, json={"id": "c-hold", "hold": "c-hold"}, timeout=60)
        wait_until(lambda: any(c["ids"] == ["c-hold"] for c in calls(markers)))
        rest = [pool.submit(httpx.post, url, json={"id": f"c-{i}"}, timeout=60) for i in range(8)]
        wait_until(lambda: metric(server, "trestle_batch_queued", 'method="predict"') >= 8)
        release(markers, "c-hold")
        assert blocker.result().status_code == 200
        assert sorted(f.result().json()["id"] for f in rest) == sorted(f"c-{i}" for i in range(8))
    sizes = [len(c["ids"]) for c in calls(markers) if c["ids"][0].startswith("c-") and c["ids"] != ["c-hold"]]
    assert sizes == [4, 4]  # runtime.batching.max_batch_size 4, not the decorator's 16
