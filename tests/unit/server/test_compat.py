"""Differences from Truss's server that a client or an operator would see, closed (in process)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.support.inprocess import serve_in_process
from tests.support.server import write_truss
from trestle.errors import StreamAborted
from trestle.server import crash_marker_path

pytestmark = pytest.mark.anyio

VALUES = """
class Model:
    def predict(self, inputs):
        kind = inputs["kind"] if isinstance(inputs, dict) else "echo"
        if kind == "echo":
            return inputs
        if kind == "big":
            return {"big": 2**64, "neg": -(2**70), "list": [2**100, 1], "small": 5}
        if kind == "deep":
            out = []
            for _ in range(inputs["depth"] - 1):
                out = [out]
            return out
"""


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_integers_beyond_64_bits_come_back_exact(tmp_path: Path) -> None:
    async with serve_in_process(write_truss(tmp_path, VALUES)) as server:
        r = await server.client.post("/predict", json={"kind": "big"})
        assert r.status_code == 200
        assert json.loads(r.text) == {"big": 2**64, "neg": -(2**70), "list": [2**100, 1], "small": 5}
        assert b"18446744073709551616" in r.content  # not 1.8446744073709552e+19


async def test_output_nesting_works_up_to_the_input_limit(tmp_path: Path) -> None:
    async with serve_in_process(write_truss(tmp_path, VALUES)) as server:
        for depth in (255, 1000, 1024):  # orjson alone stops at 254
            r = await server.client.post("/predict", json={"kind": "deep", "depth": depth})
            assert r.status_code == 200, depth
            assert r.content == _nested(depth).encode()
        # the deepest input the server accepts comes back unchanged
        r = await server.client.post("/predict", content=_nested(1024), headers={"content-type": "application/json"})
        assert r.status_code == 200
        assert r.content == _nested(1024).encode()


BASE_EXCEPTIONS = """
import asyncio


class ModelGaveUp(BaseException):
    pass


class Model:
    def predict(self, inputs):
        if inputs["where"] == "sync":
            raise ModelGaveUp("sync gave up")
        if inputs["where"] == "sync_gen":
            return self._sync_gen()
        return self._async_gen()

    def _sync_gen(self):
        raise ModelGaveUp("sync generator gave up")
        yield "never"

    async def _async_gen(self):
        raise ModelGaveUp("async generator gave up")
        yield "never"

    async def chat_completions(self, body):
        raise ModelGaveUp("route gave up")
"""


async def test_a_base_exception_from_model_code_is_an_ordinary_model_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_in_process(write_truss(tmp_path, BASE_EXCEPTIONS)) as server:
        calls = [("/predict", {"where": w}) for w in ("sync", "sync_gen", "async_gen")]
        calls.append(("/v1/chat/completions", {}))
        for path, body in calls:
            r = await server.client.post(path, json=body, headers={"x-baseten-request-id": "rid-base"})
            assert r.status_code == 500, body
            assert r.json() == {"error": "Internal Server Error (in model/chainlet)."}
            assert r.headers["x-baseten-error-source"] == "04"
            assert r.headers["x-baseten-error-code"] == "600"
            assert r.headers["x-baseten-request-id"] == "rid-base"
        assert caplog.text.count("ModelGaveUp") >= 4
        # the server is fine afterwards
        r = await server.client.post("/predict", json={"where": "sync"})
        assert r.status_code == 500


STREAMS = """
import asyncio, os, pathlib

MARK = pathlib.Path(os.environ["TRESTLE_TEST_MARKERS"])


class Model:
    async def predict(self, inputs):
        return self._slow_start() if inputs["mode"] == "slow_start" else self._fail_midway()

    async def _slow_start(self):
        try:
            await asyncio.sleep(30)
            yield "late"
        finally:
            (MARK / "slow-finally").write_text("x")

    async def _fail_midway(self):
        yield "one;"
        raise RuntimeError("chunk two failed")
"""


async def test_read_timeout_applies_before_the_first_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("TRESTLE_TEST_MARKERS", str(markers))
    truss = write_truss(tmp_path / "t", STREAMS, "runtime:\n  streaming_read_timeout: 1\n")
    async with serve_in_process(truss) as server:
        for accept in ("*/*", "application/json"):  # streamed and gathered alike
            r = await server.client.post("/predict", json={"mode": "slow_start"}, headers={"accept": accept})
            # cut after 1 s with nothing sent: an error response instead of chunks 30 s later
            assert r.status_code == 504
            assert "runtime.streaming_read_timeout" in r.json()["error"]
            assert (markers / "slow-finally").exists()  # the producer was cancelled, its finally ran
            (markers / "slow-finally").unlink()
        assert "streaming_read_timeout" in caplog.text


async def test_mid_stream_error_logs_truss_line_and_aborts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TRESTLE_TEST_MARKERS", str(tmp_path))
    async with serve_in_process(write_truss(tmp_path / "t", STREAMS)) as server:
        with pytest.raises(StreamAborted):  # ASGITransport re-raises what the app raised to cut the stream
            await server.client.post("/predict", json={"mode": "fail_midway"})
    (record,) = [r for r in caplog.records if r.getMessage() == "Exception while generating streamed response"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "chunk two failed" in str(record.exc_info[1])


BROKEN = """
class Model:
    def load(self):
        raise ValueError("weights are missing")

    def predict(self, inputs):
        return inputs
"""


async def test_a_failed_load_writes_truss_crash_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert crash_marker_path() == home / "inference_server_crashed.txt"
    async with serve_in_process(write_truss(tmp_path / "t", BROKEN), ready=False, load_retries=0) as server:
        r = await server.client.get("/v1/models/model")
        assert r.status_code == 503
        assert r.json()["error"] == "Model failed to load: ValueError: weights are missing"
        for _ in range(200):  # written off the event loop, right after the failure
            if crash_marker_path().exists() and crash_marker_path().read_text():
                break  # created, then written: wait for its text, not only the file
            await __import__("asyncio").sleep(0.01)
        assert "weights are missing" in crash_marker_path().read_text()
        for _ in range(500):  # the failed load ends the server with status 1 (set right after the marker)
            if server.server.exit_code == 1:
                break
            await __import__("asyncio").sleep(0.01)
    assert server.server.exit_code == 1


async def test_a_good_load_writes_no_crash_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with serve_in_process(write_truss(tmp_path / "t", VALUES)) as server:
        assert (await server.client.post("/predict", json={"kind": "small"})).status_code == 200
    assert not crash_marker_path().exists()


METRICS = """
from prometheus_client import Counter

CALLS = Counter("compat_model_calls", "Calls the model served.")


class Model:
    def predict(self, inputs):
        CALLS.inc()
        return inputs
"""


async def test_metrics_serves_the_models_metrics_only_and_trestles_at_their_own_path(tmp_path: Path) -> None:
    async with serve_in_process(write_truss(tmp_path, METRICS)) as server:
        assert (await server.client.post("/predict", json={"x": 1})).status_code == 200
        for path in ("/metrics", "/metrics/"):
            text = (await server.client.get(path)).text
            assert "compat_model_calls_total 1.0" in text
            families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
            assert families == {"compat_model_calls_total"}, families  # no python_, process_ or trestle_ families
            assert "_created" not in text
        own = (await server.client.get("/metrics/trestle")).text
        assert 'trestle_request_duration_seconds_count{route="predict",status="200"} 1.0' in own
        assert "trestle_requests_in_flight 0.0" in own
        assert "process_cpu_seconds_total" in own
        assert "compat_model_calls" not in own
