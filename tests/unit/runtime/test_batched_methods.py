"""Load-time rules for ``@trestle.batched`` methods, in process: the concurrency warning, clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.inprocess import serve_in_process
from tests.support.trusses import make_truss

pytestmark = pytest.mark.anyio

BATCHED = """
import trestle


class Model:
    @trestle.batched(max_batch_size=32)
    def predict(self, xs: list[int]) -> list[int]:
        return [x * 2 for x in xs]
"""


async def test_a_warning_at_load_names_predict_concurrency_and_max_batch_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truss = make_truss(tmp_path, "warn", BATCHED, "runtime:\n  predict_concurrency: 4\n")
    with caplog.at_level(logging.WARNING, logger="trestle.model"):
        async with serve_in_process(truss) as served:
            r = await served.client.post("/v1/models/model:predict", json=21)
            assert r.json() == 42
    warnings = [rec.getMessage() for rec in caplog.records if "max_batch_size" in rec.getMessage()]
    assert len(warnings) == 1
    assert "max_batch_size 32" in warnings[0] and "predict_concurrency is 4" in warnings[0]


async def test_no_warning_when_predict_concurrency_covers_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truss = make_truss(tmp_path, "ok", BATCHED, "runtime:\n  predict_concurrency: 32\n")
    with caplog.at_level(logging.WARNING, logger="trestle.model"):
        async with serve_in_process(truss):
            pass
    assert not [rec for rec in caplog.records if "max_batch_size" in rec.getMessage()]


async def test_a_batched_predict_schema_reads_one_request(tmp_path: Path) -> None:
    model = """
import pydantic, trestle


class In(pydantic.BaseModel):
    text: str


class Out(pydantic.BaseModel):
    length: int


class Model:
    @trestle.batched(max_batch_size=8)
    def predict(self, inputs: list[In]) -> list[Out]:
        return [Out(length=len(x.text)) for x in inputs]
"""
    truss = make_truss(tmp_path, "typed", model, "runtime:\n  predict_concurrency: 8\n")
    async with serve_in_process(truss) as served:
        ok = await served.client.post("/v1/models/model:predict", json={"text": "abc"})
        assert ok.json() == {"length": 3}
        bad = await served.client.post("/v1/models/model:predict", json={"txt": "abc"})
        assert bad.status_code == 400
        schema = (await served.client.get("/v1/models/model/schema")).json()
        assert schema["input_schema"]["title"] == "In" and schema["output_schema"]["title"] == "Out"


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("def predict(self, xs, request: fastapi.Request):\n        return xs", "cannot take the request"),
        ("def predict(self, xs):\n        yield xs", "cannot be a generator"),
        (
            "def preprocess(self, x):\n        return x\n\n    def predict(self, xs):\n        return xs",
            "runs once per",
        ),
    ],
)
async def test_a_method_that_cannot_be_batched_fails_the_load_clearly(
    tmp_path: Path, method: str, message: str
) -> None:
    model = f"import fastapi, trestle\n\n\nclass Model:\n    @trestle.batched(max_batch_size=4)\n    {method}\n"
    async with serve_in_process(make_truss(tmp_path, "bad", model), ready=False) as served:
        assert served.runtime.health.failure is not None
        assert message in served.runtime.health.failure


async def test_runtime_batching_without_a_batched_method_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truss = make_truss(tmp_path, "plain", config="runtime:\n  batching:\n    max_batch_size: 8\n")
    with caplog.at_level(logging.WARNING, logger="trestle.model"):
        async with serve_in_process(truss):
            pass
    assert any("no model method is @trestle.batched" in rec.getMessage() for rec in caplog.records)


PIPELINE = """
import asyncio, fastapi, trestle


class Model:
    def __init__(self, **kwargs):
        self.batches = []

    def preprocess(self, x):
        return {**x, "pre": True}

    @trestle.batched(max_batch_size=8, max_wait_ms=50)
    async def predict(self, inputs):
        self.batches.append([x["id"] for x in inputs])
        await asyncio.sleep(0.05)
        out = []
        for x in inputs:
            if x.get("teapot"):
                out.append(fastapi.HTTPException(status_code=418, detail=f"{x['id']} is a teapot"))
            else:
                out.append({"id": x["id"], "pre": x["pre"]})
        return out

    def postprocess(self, y):
        return {**y, "post": True}
"""


async def test_pre_and_postprocess_run_per_request_and_an_http_exception_item_keeps_its_status(
    tmp_path: Path,
) -> None:
    import asyncio

    truss = make_truss(tmp_path, "pipeline", PIPELINE, "runtime:\n  predict_concurrency: 8\n")
    async with serve_in_process(truss) as served:
        client = served.client
        first = asyncio.ensure_future(client.post("/v1/models/model:predict", json={"id": "a"}))
        while not served.runtime._instance.batches:  # "a" runs alone; the next three queue behind it
            await asyncio.sleep(0.005)
        rest = [
            client.post("/v1/models/model:predict", json={"id": "b"}),
            client.post("/v1/models/model:predict", json={"id": "c", "teapot": True}),
            client.post("/v1/models/model:predict", json={"id": "d"}),
        ]
        a, b, c, d = await asyncio.gather(first, *rest)
        batches = served.runtime._instance.batches
    assert batches[0] == ["a"] and sorted(batches[1]) == ["b", "c", "d"]
    assert a.json() == {"id": "a", "pre": True, "post": True}
    assert b.json() == {"id": "b", "pre": True, "post": True} and d.json()["id"] == "d"
    assert c.status_code == 418 and c.json() == {"error": "c is a teapot"}  # as any HTTPException from predict
