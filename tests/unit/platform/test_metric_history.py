"""The metric history (control/history.py, control/sampler.py) and the metrics API's SUMMARY and SERIES
modes over it (edge/metrics_export.py), in process: the sampler's steps are closed by hand at chosen
times, so every count and quantile below is exact."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.baseten import validate
from tests.support.trusses import make_truss
from tests.unit.platform.test_api import platform  # noqa: F401  (fixture)
from tests.unit.platform.test_resources import push
from trestle.platform.control.history import MetricHistory
from trestle.platform.control.sampler import MetricsSampler
from trestle.platform.engines.gpu_inventory import FAKE_ENV, Gpu, GpuUsage, Inventory

pytestmark = pytest.mark.anyio

T0 = int(time.time()) // 60 * 60 - 300  # a multiple of 60 within the hour: in the history's finest ring


def own_sampler(ctrl: Any) -> MetricsSampler:
    """A sampler of the controller's traffic and replicas into a fresh history that the API then reads: the
    platform's own sampler keeps ticking on the wall clock, into the history it was given."""
    ctrl.history = MetricHistory(10)
    return MetricsSampler(ctrl.history, ctrl.traffic, ctrl.routes, ctrl.engine)


def series(body: dict[str, Any], name: str) -> list[list[float | None]]:
    index = [d["name"] for d in body["metric_descriptors"]].index(name)
    return [value_set["values"][index] for value_set in body["metric_values"]]


async def test_series_counts_requests_per_step_by_status_class(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    ctrl = app.controller
    sampler = own_sampler(ctrl)
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    traffic = ctrl.traffic.of(dep["id"])
    await sampler.sample(T0 + 10)  # closes [T0, T0+10): nothing yet
    for _ in range(3):
        traffic.finish(200, 0.050, 0.010)
    traffic.finish(404, 0.002, 0.002)
    await sampler.sample(T0 + 20)  # closes [T0+10, T0+20)
    traffic.finish(500, 1.0, 1.0)
    await sampler.sample(T0 + 30)
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/metrics"
    params = {
        "mode": "SERIES",
        "start_epoch_millis": str(T0 * 1000),
        "end_epoch_millis": str((T0 + 40) * 1000),
        "metrics": "baseten_inference_requests_total,baseten_end_to_end_response_time_seconds,"
        "baseten_time_to_first_byte_seconds,baseten_replicas_active",
    }
    body = (await client.get(url, params=params)).json()
    validate(body, "GetModelMetricsResponseV1")
    assert body["step_seconds"] == 10
    assert [v["start_epoch_millis"] for v in body["metric_values"]] == [(T0 + 10 * i) * 1000 for i in range(4)]
    assert series(body, "baseten_inference_requests_total") == [
        [0, 0, 0, 0],
        [3, 0, 1, 0],
        [0, 0, 0, 1],
        [None, None, None, None],  # not closed yet: no data, not zero
    ]
    latency = series(body, "baseten_end_to_end_response_time_seconds")
    assert latency[0] == [None] * 5  # no request in that step
    p50, p90, p95, p99, mean = latency[1]
    assert 0.04 <= p50 <= 0.064  # three of four took 50 ms (a bin is ~26 % wide)
    assert mean == pytest.approx((3 * 0.050 + 0.002) / 4)
    assert 0.8 <= latency[2][0] <= 1.0
    first_byte = series(body, "baseten_time_to_first_byte_seconds")
    assert 0.008 <= first_byte[1][0] <= 0.0125
    assert series(body, "baseten_replicas_active")[:3] == [[1], [1], [1]]

    params["mode"] = "SUMMARY"
    summary = (await client.get(url, params=params)).json()
    validate(summary, "GetModelMetricsResponseV1")
    assert len(summary["metric_values"]) == 1
    assert series(summary, "baseten_inference_requests_total") == [[3, 0, 1, 1]]
    assert series(summary, "baseten_end_to_end_response_time_seconds")[0][4] == pytest.approx(
        (3 * 0.050 + 0.002 + 1.0) / 5
    )


async def test_environment_history_follows_a_promote(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    ctrl = app.controller
    sampler = own_sampler(ctrl)
    first = await push(client, make_truss(tmp_path / "a"), environment="production")
    ctrl.traffic.of(first["id"]).finish(200, 0.01, 0.01)
    await sampler.sample(T0 + 10)
    second = await push(
        client, make_truss(tmp_path / "b", config='environment_variables: {V: "2"}\n'), environment="production"
    )
    assert second["model_id"] == first["model_id"]
    ctrl.traffic.of(second["id"]).finish(200, 0.01, 0.01)
    ctrl.traffic.of(second["id"]).finish(200, 0.01, 0.01)
    await sampler.sample(T0 + 20)
    window = {"start_epoch_millis": str(T0 * 1000), "end_epoch_millis": str((T0 + 20) * 1000), "mode": "SERIES"}
    base = f"/v1/models/{first['model_id']}"
    env = (await client.get(f"{base}/environments/production/metrics", params=window)).json()
    validate(env, "GetModelMetricsResponseV1")
    assert series(env, "baseten_inference_requests_total") == [[1, 0, 0, 0], [2, 0, 0, 0]]  # both deployments
    old = (await client.get(f"{base}/deployments/{first['id']}/metrics", params=window)).json()
    assert series(old, "baseten_inference_requests_total")[1] in ([0, 0, 0, 0], [None] * 4)
    missing = await client.get(f"{base}/environments/nope/metrics")
    assert missing.status_code == 404


async def test_gauges_average_the_load_meter_over_a_step(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, engine = platform
    ctrl = app.controller
    sampler = own_sampler(ctrl)
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    rset = engine.sets[dep["id"]]
    await sampler.sample(T0 + 10)
    replica = rset.replicas[0]
    replica.begin()  # two requests in flight for half of the next step (the meter's clock is the engine's)
    replica.begin()
    engine.now += 5
    replica.end()
    replica.end()
    engine.now += 5
    rset.meter.restarts += 1
    sampler._last[dep["id"]].at = T0 + 10  # the sampler measures elapsed time on the wall clock
    await sampler.sample(T0 + 20)
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/metrics"
    window = {"start_epoch_millis": str((T0 + 10) * 1000), "end_epoch_millis": str((T0 + 20) * 1000)}
    body = (
        await client.get(
            url,
            params={
                **window,
                "mode": "SERIES",
                "metrics": "baseten_concurrent_requests,baseten_container_restarts_total,baseten_replicas_starting",
            },
        )
    ).json()
    assert series(body, "baseten_concurrent_requests") == [[pytest.approx(1.0)]]  # 2 x 5 s / 10 s
    assert series(body, "baseten_container_restarts_total") == [[1]]
    assert series(body, "baseten_replicas_starting") == [[0]]


async def test_a_deleted_deployment_leaves_the_history(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, _ = platform
    ctrl = app.controller
    sampler = own_sampler(ctrl)
    dep = await push(client, make_truss(tmp_path / "t"))
    ctrl.traffic.of(dep["id"]).finish(200, 0.01, 0.01)
    await sampler.sample(T0 + 10)
    assert f"deployment:{dep['id']}" in ctrl.history.tracked()
    response = await client.delete(f"/v1/models/{dep['model_id']}/deployments/{dep['id']}")
    assert response.status_code == 200, response.text
    await sampler.sample(T0 + 20)
    assert f"deployment:{dep['id']}" not in ctrl.history.tracked()
    assert ctrl.traffic.get(dep["id"]) is None


async def test_gpu_use_of_the_gpus_a_deployment_holds(platform: Any, tmp_path: Path) -> None:  # noqa: F811
    client, app, engine = platform
    ctrl = app.controller
    dep = await push(client, make_truss(tmp_path / "t"), environment="production")
    inventory = Inventory(
        (Gpu(0, "NVIDIA H100", 81559), Gpu(1, "NVIDIA H100", 81559), Gpu(2, "NVIDIA H100", 81559)),
        FAKE_ENV,
        {0: GpuUsage(1000, 90), 1: GpuUsage(3000, 50), 2: GpuUsage(70000, 100)},
    )
    ctrl.history = MetricHistory(10)
    sampler = MetricsSampler(ctrl.history, ctrl.traffic, ctrl.routes, ctrl.engine, inventory)
    engine.sets[dep["id"]].replicas[0].gpus = (0, 1)  # GPU 2 belongs to someone else
    await sampler.sample(T0 + 10)
    url = f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/metrics"
    params = {
        "mode": "SERIES",
        "start_epoch_millis": str(T0 * 1000),
        "end_epoch_millis": str((T0 + 10) * 1000),
        "metrics": "baseten_gpu_utilization,baseten_gpu_memory_used,baseten_container_cpu_memory_working_set_bytes",
    }
    body = (await client.get(url, params=params)).json()
    assert series(body, "baseten_gpu_utilization") == [[pytest.approx(0.7)]]
    assert series(body, "baseten_gpu_memory_used") == [[4000]]
    assert series(body, "baseten_container_cpu_memory_working_set_bytes") == [[None]]  # no process to read
