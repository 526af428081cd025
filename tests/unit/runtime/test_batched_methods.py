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
