"""Predict in process (httpx ASGITransport on the server's app): pipeline, bodies, errors, headers."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import numpy as np
import pytest

from tests.support.inprocess import InProcess, serve_in_process
from tests.support.server import write_truss
from trestle.http.serialization import dumps_msgpack, loads_msgpack

pytestmark = pytest.mark.anyio

PIPELINE = """
import fastapi
from starlette.responses import JSONResponse, PlainTextResponse


class Model:
    def __init__(self, config, **kwargs):
        self.config = config

    def preprocess(self, inputs):
        if isinstance(inputs, dict) and inputs.get("fail") == "pre":
            raise ValueError("pre broke")
        if isinstance(inputs, dict):
            inputs = {**inputs, "pre": True}
        return inputs

    def predict(self, inputs):
        if isinstance(inputs, dict):
            if inputs.get("fail") == "predict":
                raise RuntimeError("predict broke")
            if "http_error" in inputs:
                raise fastapi.HTTPException(status_code=inputs["http_error"], detail="teapot says no")
            if inputs.get("bytes_out"):
                return b"raw-bytes"
            return {**inputs, "predicted": True}
        return inputs

    def postprocess(self, outputs):
        if isinstance(outputs, dict):
            if outputs.get("fail") == "post":
                raise KeyError("post broke")
            return {**outputs, "post": True}
        return outputs
"""

RESPONSES = """
from starlette.responses import JSONResponse, PlainTextResponse


class Model:
    async def predict(self, inputs):
        if inputs.get("kind") == "text":
            return PlainTextResponse("plain words", headers={"x-custom": "yes"})
        if inputs.get("kind") == "error":
            return JSONResponse({"reason": "user said 418"}, status_code=418)
        if inputs.get("kind") == "types":
            return inputs["value"]
        return JSONResponse({"json": True})
"""

RESPONSE_WITH_POSTPROCESS = """
from starlette.responses import JSONResponse


class Model:
    def predict(self, inputs):
        if inputs.get("stream"):
            return (c for c in ["a", "b"])
        return JSONResponse({"x": 1})

    def postprocess(self, outputs):
        return outputs
"""


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[InProcess]:
    truss = write_truss(tmp_path, PIPELINE, "model_name: pipe\nruntime:\n  max_request_body_bytes: 1000\n")
    async with serve_in_process(truss) as server:
        yield server


@pytest.fixture
async def responses(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with serve_in_process(write_truss(tmp_path, RESPONSES), dev=True) as server:
        yield server


async def test_pipeline_runs_pre_predict_post_in_order(pipeline: InProcess) -> None:
    r = await pipeline.client.post("/v1/models/model:predict", json={"a": 1})
    assert r.status_code == 200
    assert r.json() == {"a": 1, "pre": True, "predicted": True, "post": True}
    assert r.headers["content-type"] == "application/json"


async def test_every_predict_alias_runs_the_pipeline(pipeline: InProcess) -> None:
    for path in ["/predict", "/v1/models/model:predict", "/v1/models/anything:predict_binary", "/invocations"]:
        r = await pipeline.client.post(path, json={"n": 2})
        assert r.status_code == 200, path
        assert r.json()["post"] is True


async def test_error_in_each_stage_is_a_500_with_truss_body_and_headers(
    pipeline: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    for stage in ["pre", "predict", "post"]:
        caplog.clear()
        r = await pipeline.client.post("/predict", json={"fail": stage})
        assert r.status_code == 500
        assert r.json() == {"error": "Internal Server Error (in model/chainlet)."}
        assert r.headers["x-baseten-error-source"] == "04"
        assert r.headers["x-baseten-error-code"] == "600"
        assert "x-baseten-request-id" in r.headers
        # logged once, the traceback starting at the user's code
        errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
        assert len(errors) == 1, stage
        assert errors[0].exc_info is not None
        assert "broke" in str(errors[0].exc_info[1])


async def test_user_http_exception_passes_through_and_is_logged_at_error(
    pipeline: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    r = await pipeline.client.post("/predict", json={"http_error": 418})
    assert r.status_code == 418
    assert r.json() == {"error": "teapot says no"}
    assert r.headers["x-baseten-error-code"] == "600"
    (record,) = [rec for rec in caplog.records if rec.getMessage() == "Model raised HTTPException"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None  # with its traceback, as Truss logs it


async def test_request_id_is_echoed_or_generated(pipeline: InProcess) -> None:
    client = pipeline.client
    r = await client.post("/predict", json={}, headers={"x-baseten-request-id": "req-42"})
    assert r.headers["x-baseten-request-id"] == "req-42"
    r1 = await client.post("/predict", json={})
    r2 = await client.post("/predict", json={})
    assert len(r1.headers["x-baseten-request-id"]) >= 16
    assert r1.headers["x-baseten-request-id"] != r2.headers["x-baseten-request-id"]


async def test_invalid_json_is_400_never_500(pipeline: InProcess) -> None:
    for body in [b"{not json", b"", b"[1, 2"]:
        r = await pipeline.client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"].startswith("Invalid JSON payload")
        assert r.headers["x-baseten-error-code"] == "700"


async def test_invalid_msgpack_is_400(pipeline: InProcess) -> None:
    r = await pipeline.client.post(
        "/predict", content=b"\xc1\xff", headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 400
    assert "msgpack" in r.json()["error"]


async def test_oversized_body_is_413_with_a_clear_message(pipeline: InProcess) -> None:
    client = pipeline.client
    r = await client.post("/predict", content=b"[" + b"1," * 1000 + b"1]", headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "max_request_body_bytes" in r.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: caught while reading
        for _ in range(50):
            yield b" " * 100

    r = await client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert (await client.post("/predict", json={"ok": 1})).status_code == 200


async def test_unknown_route_and_wrong_method_answer_in_error_format(pipeline: InProcess) -> None:
    client = pipeline.client
    r = await client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "Not Found"}
    assert r.headers["x-baseten-error-source"] == "04"
    r = await client.get("/predict")
    assert r.status_code == 405
    assert r.json() == {"error": "Method Not Allowed"}
    r = await client.put("/v1/models/model:predict", json={})
    assert r.status_code == 405


async def test_bytes_result_in_json_mode_is_a_clear_500(pipeline: InProcess) -> None:
    r = await pipeline.client.post("/predict", json={"bytes_out": True, "no": "post"})
    assert r.status_code == 500
    assert "Unhandled exception" in r.json()["error"]


async def test_msgpack_round_trip_of_every_extension_type(pipeline: InProcess) -> None:
    value = {
        "datetime": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc),
        "naive": dt.datetime(2024, 5, 6, 7, 8, 9),
        "date": dt.date(2024, 5, 6),
        "time": dt.time(7, 8, 9, 10),
        "delta": dt.timedelta(days=2, seconds=3, microseconds=4),
        "decimal": decimal.Decimal("3.14159265358979323846"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "array": np.arange(12, dtype=np.float32).reshape(3, 4),
        "scalar": np.int64(7),
        "text": "héllo",
        "blob": b"\x00\x01",
    }
    r = await pipeline.client.post(
        "/predict", content=dumps_msgpack(value), headers={"content-type": "Application/Octet-Stream; x=1"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    out = loads_msgpack(r.content)
    for key, expected in value.items():
        if isinstance(expected, np.ndarray):
            np.testing.assert_array_equal(out[key], expected)
            assert out[key].dtype == expected.dtype
        else:
            assert out[key] == expected, key
    assert out["pre"] is True
    assert out["post"] is True
    raw = msgpack.unpackb(r.content, raw=False, strict_map_key=False)  # Truss's marker maps
    assert raw["date"] == {b"__dt_date_iso__": True, b"data": "2024-05-06"}
    assert raw["datetime"][b"data"].endswith("Z")


async def test_returned_response_passes_through_unchanged(responses: InProcess) -> None:
    r = await responses.client.post("/predict", json={"kind": "text"})
    assert r.status_code == 200
    assert r.text == "plain words"
    assert r.headers["x-custom"] == "yes"
    assert r.headers["content-type"].startswith("text/plain")
    assert "x-baseten-error-code" not in r.headers
    assert "x-baseten-request-id" in r.headers


async def test_returned_error_response_keeps_body_and_gets_error_headers(responses: InProcess) -> None:
    r = await responses.client.post("/predict", json={"kind": "error"})
    assert r.status_code == 418
    assert r.json() == {"reason": "user said 418"}
    assert r.headers["x-baseten-error-code"] == "700"


async def test_json_values_round_trip(responses: InProcess) -> None:
    for value in [1, 2.5, "s", [1, "a"], None, True, {"nested": {"deep": [1]}}]:
        r = await responses.client.post("/predict", json={"kind": "types", "value": value})
        assert r.status_code == 200
        assert r.json() == value


async def test_response_or_generator_with_postprocess_is_truss_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_in_process(write_truss(tmp_path, RESPONSE_WITH_POSTPROCESS), dev=True) as server:
        r = await server.client.post("/predict", json={})
        assert r.status_code == 500
        assert r.json()["error"] == "Internal Server Error (in model/chainlet)."
        assert r.json()["detail"] == (
            "ModelDefinitionError: If the predict function returns a response object, you cannot use postprocessing."
        )
        r = await server.client.post("/predict", json={"stream": True})
        assert r.status_code == 500
        assert "ModelDefinitionError: If the predict function returns a generator" in caplog.text


async def test_dev_mode_error_body_names_the_exception(tmp_path: Path) -> None:
    async with serve_in_process(write_truss(tmp_path, PIPELINE), dev=True) as server:
        r = await server.client.post("/predict", json={"fail": "predict"})
        assert r.status_code == 500
        assert r.json() == {
            "error": "Internal Server Error (in model/chainlet).",
            "detail": "RuntimeError: predict broke",
        }
