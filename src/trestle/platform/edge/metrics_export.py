"""The platform's metrics, two ways, with Baseten's metric names and labels: ``GET /metrics`` (Prometheus
text, labels ``model_id``, ``model_name``, ``deployment_id``, ``environment``; request metrics add
``status_code`` and ``is_async``) and Baseten's metrics API (``GetModelMetricsResponseV1``, ``mode``
``CURRENT``, ``SUMMARY`` or ``SERIES``) over the platform's own history (``control/history.py``).

| metric | kind (API) | unit | meaning |
|---|---|---|---|
| ``baseten_inference_requests_total`` | COUNTER | COUNT | requests answered, by status class (API) or code |
| ``baseten_end_to_end_response_time_seconds`` | HISTOGRAM | SECONDS | arrival at the gateway to the last byte |
| ``baseten_time_to_first_byte_seconds`` | HISTOGRAM | SECONDS | arrival to the answer body's first byte |
| ``baseten_concurrent_requests`` | GAUGE | COUNT | requests in flight at the gateway (a step's average) |
| ``baseten_replicas_active`` / ``_starting`` | GAUGE | COUNT | ready replicas / replicas not ready yet |
| ``baseten_container_restarts_total`` | COUNTER | COUNT | replicas restarted after they exited |
| ``baseten_container_cpu_usage_seconds_total`` | GAUGE | RATIO | cores used by the replica processes (CPU-s per s) |
| ``baseten_container_cpu_memory_working_set_bytes`` | GAUGE | BYTES | their resident memory |
| ``baseten_gpu_utilization`` / ``baseten_gpu_memory_used`` | GAUGE | RATIO / MEBIBYTES | their GPUs |

In the API a histogram is five series (p50, p90, p95, p99, mean) and the request counter four (2xx to 5xx).
``CURRENT`` is a snapshot: gauges now, counters since the platform started, histograms and resource use
over the last minute. A step with no data is null. A ``WORKSPACE_EXPORT_METRICS`` key may read both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trestle.platform.control.controller import Controller
from trestle.platform.control.histogram import QUANTILES, Histogram
from trestle.platform.control.history import MetricHistory, Step
from trestle.platform.control.traffic import DeploymentTraffic
from trestle.platform.engines.base import ReplicaSet
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.states import DEVELOPMENT

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUESTS = "baseten_inference_requests_total"
LATENCY = "baseten_end_to_end_response_time_seconds"
FIRST_BYTE = "baseten_time_to_first_byte_seconds"
RESTARTS = "baseten_container_restarts_total"
_STATUS_SETS = [{"status": f"{n}xx"} for n in (2, 3, 4, 5)]
_HISTOGRAM_SETS = [{"quantile": str(q)} for q in QUANTILES] + [{"stat": "avg"}]
DESCRIPTORS: dict[str, tuple[str, str, list[dict[str, str]]]] = {
    "baseten_replicas_active": ("GAUGE", "COUNT", [{}]),
    "baseten_replicas_starting": ("GAUGE", "COUNT", [{}]),
    "baseten_concurrent_requests": ("GAUGE", "COUNT", [{}]),
    REQUESTS: ("COUNTER", "COUNT", _STATUS_SETS),
    LATENCY: ("HISTOGRAM", "SECONDS", _HISTOGRAM_SETS),
    FIRST_BYTE: ("HISTOGRAM", "SECONDS", _HISTOGRAM_SETS),
    RESTARTS: ("COUNTER", "COUNT", [{}]),
    "baseten_container_cpu_usage_seconds_total": ("GAUGE", "RATIO", [{}]),
    "baseten_container_cpu_memory_working_set_bytes": ("GAUGE", "BYTES", [{}]),
    "baseten_gpu_utilization": ("GAUGE", "RATIO", [{}]),
    "baseten_gpu_memory_used": ("GAUGE", "MEBIBYTES", [{}]),
}
"""Every metric the API answers: (kind, unit hint, label sets)."""
_KNOWN_ELSEWHERE = frozenset(
    {
        "baseten_request_size_bytes",
        "baseten_response_size_bytes",
        "baseten_ongoing_websocket_connections",
        "baseten_pod_readiness",
    }
)
"""Baseten metric names this platform does not measure: valid in a query, left out of the answer."""
DEFAULT_METRICS = ("baseten_replicas_active", REQUESTS, LATENCY)
MAX_WINDOW_MS = 7 * 24 * 3600 * 1000
_LIVE = ("baseten_replicas_active", "baseten_replicas_starting", "baseten_concurrent_requests")


def values_of(rset: ReplicaSet | None) -> dict[str, int]:
    """The gauges a replica set shows now."""
    ready = rset.ready_count if rset is not None else 0
    total = len(rset.replicas) if rset is not None else 0
    return {
        "baseten_replicas_active": ready,
        "baseten_replicas_starting": total - ready,
        "baseten_concurrent_requests": rset.meter.in_flight if rset is not None else 0,
    }


def _step_values(name: str, step: Step | None) -> list[float | None]:
    sets = DESCRIPTORS[name][2]
    if step is None:
        return [None] * len(sets)
    if name == REQUESTS:
        return [float(count) for count in step.statuses]
    if name in (LATENCY, FIRST_BYTE):
        histogram = step.latency if name == LATENCY else step.first_byte
        return histogram.summary() if histogram is not None else [None] * len(sets)
    if name == RESTARTS:
        return [float(step.restarts)]
    return [step.gauge(name)]


def _names(names: Sequence[str] | None) -> list[str]:
    wanted = list(names) if names else list(DEFAULT_METRICS)
    unknown = [name for name in wanted if name not in DESCRIPTORS and name not in _KNOWN_ELSEWHERE]
    if unknown:
        raise InvalidRequest(f"unknown metrics {unknown}: use {', '.join(DESCRIPTORS)}")
    return [name for name in dict.fromkeys(wanted) if name in DESCRIPTORS]


def window_of(mode: str, start: str | None, end: str | None, now_ms: int) -> tuple[int, int]:
    """The window ``[start, end)`` in epoch ms from the query (Baseten's defaults: the hour to now)."""
    if mode not in ("CURRENT", "SUMMARY", "SERIES"):
        raise InvalidRequest(f"mode must be CURRENT, SUMMARY or SERIES (got {mode!r})")
    if mode == "CURRENT":
        if start or end:
            raise InvalidRequest("mode=CURRENT is a snapshot now: leave out start_epoch_millis and end_epoch_millis")
        return now_ms, now_ms
    try:
        end_ms = int(end) if end else now_ms
        start_ms = int(start) if start else end_ms - 3600 * 1000
    except ValueError:
        raise InvalidRequest("start_epoch_millis and end_epoch_millis are integers (epoch milliseconds)") from None
    if end_ms <= start_ms:
        raise InvalidRequest("end_epoch_millis must be after start_epoch_millis")
    if end_ms - start_ms > MAX_WINDOW_MS:
        raise InvalidRequest("the window between start_epoch_millis and end_epoch_millis must not exceed 7 days")
    return start_ms, end_ms


def metrics_answer(
    history: MetricHistory,
    key: str,
    rset: ReplicaSet | None,
    traffic: DeploymentTraffic | None,
    mode: str,
    names: Sequence[str] | None,
    window: tuple[int, int],
    now: float,
) -> dict[str, Any]:
    """Baseten's ``GetModelMetricsResponseV1`` for one deployment's or environment's history ``key``."""
    present = _names(names)
    start_ms, end_ms = window
    descriptors = [
        {"name": name, "unit_hint": unit, "kind": kind, "label_sets": sets}
        for name in present
        for kind, unit, sets in [DESCRIPTORS[name]]
    ]
    if mode == "SERIES":
        step_seconds, slots = history.window(key, start_ms / 1000, end_ms / 1000, now)
        value_sets = [
            {"start_epoch_millis": slot * 1000, "values": [_step_values(name, step) for name in present]}
            for slot, step in slots
        ]
        return _answer(start_ms, end_ms, mode, step_seconds, descriptors, value_sets)
    if mode == "SUMMARY":
        summary = history.summary(key, start_ms / 1000, end_ms / 1000, now)
        values = [_step_values(name, summary) for name in present]
        return _answer(start_ms, end_ms, mode, None, descriptors, [{"start_epoch_millis": start_ms, "values": values}])
    recent = history.summary(key, now - 60, now, now)
    live = values_of(rset)
    values = []
    for name in present:
        if name in _LIVE:
            values.append([float(live[name])])
        elif name == REQUESTS:
            values.append([float(n) for n in (traffic.by_class() if traffic is not None else [0, 0, 0, 0])])
        elif name == RESTARTS:
            values.append([float(rset.meter.restarts if rset is not None else 0)])
        else:
            values.append(_step_values(name, recent))
    return _answer(start_ms, end_ms, mode, None, descriptors, [{"start_epoch_millis": start_ms, "values": values}])


def _answer(
    start_ms: int, end_ms: int, mode: str, step: int | None, descriptors: list[Any], value_sets: list[Any]
) -> dict[str, Any]:
    return {
        "start_epoch_millis": start_ms,
        "end_epoch_millis": end_ms,
        "mode": mode,
        "step_seconds": step,
        "metric_descriptors": descriptors,
        "metric_values": value_sets,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_HELP = {
    "baseten_replicas_active": ("gauge", "Ready replicas of the deployment."),
    "baseten_replicas_starting": ("gauge", "Replicas of the deployment that are not ready yet."),
    "baseten_concurrent_requests": ("gauge", "Requests in flight at the gateway for the deployment."),
    REQUESTS: ("counter", "Requests the gateway answered for the deployment, by status code and is_async."),
    RESTARTS: ("counter", "Replicas of the deployment restarted after they exited."),
    LATENCY: ("histogram", "Seconds from a request's arrival at the gateway to the last byte of its answer."),
    FIRST_BYTE: ("histogram", "Seconds from a request's arrival at the gateway to the first byte of its answer."),
}


def _histogram_rows(name: str, labels: str, histogram: Histogram) -> list[str]:
    rows = [f'{name}_bucket{{{labels},le="{bound:g}"}} {count}' for bound, count in histogram.cumulative()]
    rows.append(f'{name}_bucket{{{labels},le="+Inf"}} {histogram.count}')
    rows.append(f"{name}_sum{{{labels}}} {histogram.total:.6f}")
    rows.append(f"{name}_count{{{labels}}} {histogram.count}")
    return rows


class MetricsExport:
    def __init__(self, controller: Controller) -> None:
        self.ctrl = controller
        self.routes = [Route("/metrics", self.metrics, methods=["GET"])]

    def text(self) -> str:
        rows: dict[str, list[str]] = {name: [] for name in _HELP}
        store = self.ctrl.store
        names = {model.id: model.name for model in store.models()}
        for dep in store.deployments():
            envs = store.environments_of(dep.id) or ([DEVELOPMENT] if dep.is_development else [])
            labels = (
                f'model_id="{dep.model_id}",model_name="{_label(names.get(dep.model_id, ""))}",'
                f'deployment_id="{dep.id}",environment="{_label(",".join(envs))}"'
            )
            rset = self.ctrl.engine.replica_set(dep.id)
            for name, value in values_of(rset).items():
                rows[name].append(f"{name}{{{labels}}} {value}")
            rows[RESTARTS].append(f"{RESTARTS}{{{labels}}} {rset.meter.restarts if rset is not None else 0}")
            traffic = self.ctrl.traffic.get(dep.id)
            if traffic is None:
                continue
            for (status, is_async), count in sorted(traffic.statuses.items()):
                flag = "true" if is_async else "false"
                rows[REQUESTS].append(f'{REQUESTS}{{{labels},status_code="{status}",is_async="{flag}"}} {count}')
            rows[LATENCY] += _histogram_rows(LATENCY, labels, traffic.latency)
            rows[FIRST_BYTE] += _histogram_rows(FIRST_BYTE, labels, traffic.first_byte)
        out: list[str] = []
        for name, (kind, help_text) in _HELP.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *rows[name]]
        return "\n".join(out) + "\n"

    async def metrics(self, request: Request) -> Response:
        return Response(self.text(), media_type=CONTENT_TYPE)
