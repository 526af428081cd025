"""Shutdown's drain and the access log, in process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from tests.support.inprocess import serve_in_process
from tests.support.server import write_truss
from trestle.http.access_log import AccessLog

pytestmark = pytest.mark.anyio

SLEEPY = """
import asyncio


class Model:
    async def predict(self, inputs):
        await asyncio.sleep(inputs["sleep"])
        return {"slept": inputs["sleep"]}
"""


async def test_drain_lets_in_flight_requests_finish_then_cancels_the_rest(tmp_path: Path) -> None:
    truss = write_truss(tmp_path, SLEEPY, "runtime:\n  predict_concurrency: 4\n")
    async with serve_in_process(truss) as server:
        client = server.client
        short = asyncio.ensure_future(client.post("/predict", json={"sleep": 0.2}))
        long = asyncio.ensure_future(client.post("/predict", json={"sleep": 30}))
        while server.runtime.in_flight.count < 2:
            await asyncio.sleep(0.01)
        await server.runtime.drain(1.0)
        assert server.runtime.in_flight.count == 0
        assert (await short).status_code == 200  # finished inside the window
        r = await long  # cancelled when the window closed
        assert r.status_code == 503
        assert r.json()["error"] == "Model server is shutting down."
        r = await client.post("/predict", json={"sleep": 0})
        assert r.status_code == 503
        assert (await client.get("/v1/models/model")).json()["error"] == "Model server is shutting down."


async def test_access_log_prints_one_line_per_request_and_skips_probes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trestle.access")
    async with serve_in_process(write_truss(tmp_path, SLEEPY)) as server:
        transport = httpx.ASGITransport(app=AccessLog(server.server.app))
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            headers = {"x-baseten-request-id": "rid-7"}
            assert (await client.post("/predict", json={"sleep": 0}, headers=headers)).status_code == 200
            assert (
                await client.post("/predict", json={}, headers={"x-baseten-request-id": "rid-8"})
            ).status_code == 500
            assert (await client.get("/nope")).status_code == 404
            assert (await client.get("/")).status_code == 200
            assert (await client.get("/v1/models/model")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "trestle.access"]
    assert len(lines) == 3, lines
    method, path, status, ms, unit, rid = lines[0].split()
    assert (method, path, status, unit, rid) == ("POST", "/predict", "200", "ms", "request_id=rid-7")
    assert float(ms) >= 0
    assert lines[1].startswith("POST /predict 500 ") and lines[1].endswith("request_id=rid-8")
    assert lines[2].startswith("GET /nope 404 ")
