"""Pydantic inputs and the schema route; request arguments; the concurrency limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerHandle, metric, run_server, wait_until, write_truss
from trestle.http.serialization import dumps_msgpack, loads_msgpack

TYPED = """
from pydantic import BaseModel
import fastapi


class Item(BaseModel):
    prompt: str
    count: int = 1
    tags: list[str] = []


class Out(BaseModel):
    text: str


class Model:
    async def predict(self, item: Item, request: fastapi.Request) -> Out:
        return Out(text=item.prompt * item.count + "|" + request.headers.get("x-who", ""))

    def chat_completions(self, body: dict) -> dict:
        return {"got": body}
"""


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with run_server(write_truss(tmp_path_factory.mktemp("typed"), TYPED)) as server:
        yield server


def test_valid_pydantic_input_and_request_argument(typed: ServerHandle) -> None:
    r = httpx.post(typed.url + "/predict", json={"prompt": "ab", "count": 2}, headers={"x-who": "me"})
    assert r.status_code == 200
    assert r.json() == {"text": "abab|me"}


def test_invalid_pydantic_input_gives_truss_message(typed: ServerHandle) -> None:
    r = httpx.post(typed.url + "/predict", json={"count": "x"})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "Input Parsing Errors:\n  `prompt`: Field required.\n"
        "  `count`: Input should be a valid integer, unable to parse string as an integer."
    )
    r = httpx.post(typed.url + "/predict", json={"prompt": "a", "tags": ["ok", 3]})
    assert r.status_code == 400
    assert r.json()["error"] == "Input Parsing Error:\n  `tags[1]`: Input should be a valid string."


def test_pydantic_input_over_msgpack(typed: ServerHandle) -> None:
    r = httpx.post(
        typed.url + "/predict",
        content=dumps_msgpack({"prompt": "z"}),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200
    assert loads_msgpack(r.content) == {"text": "z|"}


def test_schema_route(typed: ServerHandle) -> None:
    r = httpx.get(typed.url + "/v1/models/model/schema")
    assert r.status_code == 200
    body = r.json()
    assert body["input_schema"]["required"] == ["prompt"]
    assert body["output_schema"]["properties"]["text"]["type"] == "string"
    assert body["supports_streaming"] is False


def test_v1_route_body_is_not_forced_through_predicts_schema(typed: ServerHandle) -> None:
    r = httpx.post(typed.url + "/v1/chat/completions", json={"messages": []})
    assert r.status_code == 200
    assert r.json() == {"got": {"messages": []}}


def test_missing_v1_method_is_truss_404(typed: ServerHandle) -> None:
    r = httpx.post(typed.url + "/v1/embeddings", json={"input": "x"})
    assert r.status_code == 404
    assert r.json() == {"error": "`embeddings` must only be called if model has it."}
    assert r.headers["x-baseten-error-code"] == "700"


def test_v1_models_lists_the_model(typed: ServerHandle) -> None:
    r = httpx.get(typed.url + "/v1/models")
    assert r.json()["data"][0]["object"] == "model"


def test_no_schema_is_404(tmp_path: Path) -> None:
    with run_server(write_truss(tmp_path, "class Model:\n    def predict(self, x):\n        return x\n")) as server:
        r = httpx.get(server.url + "/v1/models/model/schema")
        assert r.status_code == 404
        assert r.json() == {"error": "No schema found"}


REQUEST_ONLY = """
from starlette.requests import Request

class Model:
    async def predict(self, request: Request):
        body = await request.body()
        return {"raw": body.decode(), "method": request.method, "disconnected": await request.is_disconnected()}
"""


def test_request_only_predict_skips_parsing(tmp_path: Path) -> None:
    with run_server(write_truss(tmp_path, REQUEST_ONLY)) as server:
        r = httpx.post(server.url + "/predict", content=b"not json at all")
        assert r.status_code == 200
        assert r.json() == {"raw": "not json at all", "method": "POST", "disconnected": False}


CONCURRENCY = """
import asyncio, pathlib, threading, time


class Model:
    # Each call holds until `hold` calls run at once (or `timeout` passes), so the observed
    # peak is the real parallelism, whatever the machine's load.

    def __init__(self, **kwargs):
        self.cond = threading.Condition()
        self.active = 0
        self.peak = 0

    def _hold(self, body):
        with self.cond:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.peak >= body["hold"], timeout=body["timeout"])
            self.active -= 1

    def predict(self, inputs):
        if inputs.get("peak"):
            with self.cond:
                peak, self.peak = self.peak, 0
            return {"peak": peak}
        if "sleep" in inputs:
            time.sleep(inputs["sleep"])
            return {"ok": True}
        if "release" in inputs:  # held until the test creates the release file
            pathlib.Path(inputs["started"]).touch()
            while not pathlib.Path(inputs["release"]).exists():
                time.sleep(0.005)
            return {"ok": True}
        self._hold(inputs)
        return {"ok": True}

    async def chat_completions(self, body):
        await asyncio.get_running_loop().run_in_executor(None, self._hold, body)
        return {"ok": True}
"""


def _fire(url: str, body: dict[str, object], n: int) -> None:
    """``n`` requests at once, each on its own thread; returns when all have been answered."""
    threads = [threading.Thread(target=httpx.post, args=(url,), kwargs={"json": body, "timeout": 60}) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("limit", [1, 3])
def test_observed_parallelism_equals_predict_concurrency(tmp_path: Path, limit: int) -> None:
    truss = write_truss(tmp_path, CONCURRENCY, f"runtime:\n  predict_concurrency: {limit}\n")
    with run_server(truss) as server:
        for path in ("/predict", "/v1/chat/completions"):
            # 2 x limit requests that would all run at once if nothing held them back; each waits up
            # to 2 s for the others, long enough for a loaded machine to get all of a wave started
            _fire(server.url + path, {"hold": 2 * limit, "timeout": 2.0}, 2 * limit)
            peak = httpx.post(server.url + "/predict", json={"peak": True}).json()["peak"]
            assert peak == limit, path


def test_queue_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    """One request runs (held until the test releases it), one waits; the next is refused at once."""
    release = tmp_path / "release"
    truss = write_truss(tmp_path / "t", CONCURRENCY, "runtime:\n  predict_concurrency: 1\n  max_queue_size: 1\n")
    with run_server(truss) as server:
        codes: list[int] = []
        body = {"release": str(release), "started": str(tmp_path / "started")}
        threads = [
            threading.Thread(
                target=lambda: codes.append(httpx.post(server.url + "/predict", json=body, timeout=60).status_code)
            )
            for _ in range(2)
        ]
        threads[0].start()
        wait_until((tmp_path / "started").exists, "the first request to start")
        threads[1].start()
        wait_until(lambda: metric(server, "trestle_requests_queued") == 1, "the second request to queue")
        r = httpx.post(server.url + "/predict", json={"sleep": 0})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "max_queue_size" in r.json()["error"]
        release.touch()
        for t in threads:
            t.join()
        assert sorted(codes) == [200, 200]


def test_sync_pool_is_not_capped_at_40(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, CONCURRENCY, "runtime:\n  predict_concurrency: 48\n")
    with run_server(truss) as server:
        _fire(server.url + "/predict", {"hold": 48, "timeout": 20}, 48)
        # all 48 ran at once (they wait for each other); a pool capped at 40 would peak at 40
        assert httpx.post(server.url + "/predict", json={"peak": True}).json()["peak"] == 48
