"""The platform's own metrics against real traffic: requests through the gateway to a real replica, then
Baseten's metrics API (SERIES, SUMMARY, CURRENT) and ``/metrics`` tell what a user saw: how many answered
with which status, how long they took end to end and to the first byte, the replica's CPU and memory."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, last_json
from tests.support.baseten import validate

SLOW_MODEL = """
import time


class Model:
    def predict(self, model_input):
        if model_input.get("fail"):
            raise ValueError("asked to fail")
        time.sleep(model_input.get("sleep", 0))
        return {"ok": True}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("metrics")
    (root / "home").mkdir()
    plat = Platform(root / "data", root / "home", args=("--metrics-step-seconds", "1"))
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


def _series(body: dict[str, Any], name: str) -> list[list[float | None]]:
    index = [d["name"] for d in body["metric_descriptors"]].index(name)
    return [value_set["values"][index] for value_set in body["metric_values"]]


def test_metrics_tell_what_the_clients_saw(platform: Platform, tmp_path: Path) -> None:
    truss = tmp_path / "slow"
    (truss / "model").mkdir(parents=True)
    (truss / "config.yaml").write_text("model_name: slow\n")
    (truss / "model" / "model.py").write_text(SLOW_MODEL)
    dep = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))
    model_id, dep_id = dep["model_id"], dep["deployment_id"]
    started = int(time.time() * 1000)
    for _ in range(6):
        assert platform.http.post(dep["predict_url"], json={"sleep": 0.05}).status_code == 200
    for _ in range(2):
        assert platform.http.post(dep["predict_url"], json={"fail": True}).status_code == 500
    assert platform.http.post(dep["predict_url"], content=b"{not json").status_code == 400

    url = f"/v1/models/{model_id}/deployments/{dep_id}/metrics"
    window = {"start_epoch_millis": str(started - 2000)}

    def summed() -> dict[str, Any] | None:
        body = platform.http.get(
            url, params={**window, "end_epoch_millis": str(int(time.time() * 1000)), "mode": "SUMMARY"}
        ).json()
        counts = _series(body, "baseten_inference_requests_total")[0]
        return body if counts == [6, 0, 1, 2] else None

    summary = platform.wait_for(summed, timeout=15)  # once the steps that saw them have closed
    validate(summary, "GetModelMetricsResponseV1")
    p50, p90, p95, p99, mean = _series(summary, "baseten_end_to_end_response_time_seconds")[0]
    assert p50 is not None and 0.04 <= p50 < 1.0  # the model sleeps 50 ms in most of them
    assert mean is not None and mean > 0.03

    series = platform.http.get(
        url,
        params={
            **window,
            "mode": "SERIES",
            "metrics": "baseten_inference_requests_total,baseten_time_to_first_byte_seconds,"
            "baseten_replicas_active,baseten_container_cpu_memory_working_set_bytes",
        },
    ).json()
    validate(series, "GetModelMetricsResponseV1")
    assert series["step_seconds"] == 1
    counted = [c for c in _series(series, "baseten_inference_requests_total") if c[0] is not None]
    assert sum(c[0] or 0 for c in counted) == 6
    first_bytes = [v[0] for v in _series(series, "baseten_time_to_first_byte_seconds") if v[0] is not None]
    assert first_bytes and max(first_bytes) >= 0.04
    assert 1 in [v[0] for v in _series(series, "baseten_replicas_active")]
    memory = [v[0] for v in _series(series, "baseten_container_cpu_memory_working_set_bytes") if v[0]]
    assert memory and min(memory) > 10 << 20  # a Python model server holds more than 10 MiB

    env = platform.http.get(f"/v1/models/{model_id}/environments/production/metrics", params={"mode": "CURRENT"})
    assert env.status_code == 200
    assert _series(env.json(), "baseten_inference_requests_total")[0] == [6, 0, 1, 2]

    text = platform.http.get("/metrics").text
    labels = rf'model_id="{model_id}",model_name="slow",deployment_id="{dep_id}",environment="production"'
    for status, count in (("200", 6), ("500", 2), ("400", 1)):
        row = f'baseten_inference_requests_total{{{labels},status_code="{status}",is_async="false"}} {count}'
        assert re.search(re.escape(row).replace(re.escape(labels), labels), text), (row, text)
    assert re.search(rf"baseten_end_to_end_response_time_seconds_count{{{labels}}} 9\b", text)
    assert re.search(rf'baseten_time_to_first_byte_seconds_bucket{{{labels},le="\+Inf"}} 9\b', text)

    def bucket(le: str) -> int:
        found = re.search(rf'baseten_end_to_end_response_time_seconds_bucket{{{labels},le="{le}"}} (\d+)', text)
        assert found is not None, le
        return int(found.group(1))

    assert bucket("0.05") <= 3  # the six that slept 50 ms are slower than that
    assert bucket("10") == 9
