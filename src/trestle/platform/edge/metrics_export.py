"""``GET /metrics``: the platform's own metrics as Prometheus text, with Baseten's metric names and labels
(``model_id``, ``model_name``, ``deployment_id``, ``environment``), read from the engine's replica sets
when scraped (nothing is added to a request's path beyond the counter the load meter already keeps).

| metric | kind | meaning |
|---|---|---|
| ``baseten_replicas_active`` | gauge | ready replicas |
| ``baseten_replicas_starting`` | gauge | replicas not ready yet (loading, restarting) |
| ``baseten_concurrent_requests`` | gauge | requests in flight at the gateway |
| ``baseten_inference_requests_total`` | counter | requests sent to the replicas since they started, by ``is_async`` |

A ``WORKSPACE_EXPORT_METRICS`` key may read it (``edge/auth.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trestle.platform.control.controller import Controller
from trestle.platform.engines.base import ReplicaSet
from trestle.platform.errors import InvalidRequest
from trestle.platform.store.states import DEVELOPMENT

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METRICS = (
    ("baseten_replicas_active", "gauge", "Ready replicas of the deployment."),
    ("baseten_replicas_starting", "gauge", "Replicas of the deployment that are not ready yet."),
    ("baseten_concurrent_requests", "gauge", "Requests in flight at the gateway for the deployment."),
    ("baseten_inference_requests_total", "counter", "Requests the gateway sent to the deployment."),
)


_KIND = {"gauge": "GAUGE", "counter": "COUNTER"}
_KNOWN_ELSEWHERE = frozenset(
    {
        "baseten_end_to_end_response_time_seconds",
        "baseten_time_to_first_byte_seconds",
        "baseten_request_size_bytes",
        "baseten_response_size_bytes",
        "baseten_ongoing_websocket_connections",
        "baseten_container_restarts_total",
        "baseten_container_cpu_usage_seconds_total",
        "baseten_container_cpu_memory_working_set_bytes",
        "baseten_gpu_memory_used",
        "baseten_gpu_utilization",
    }
)
"""Baseten metric names this platform does not measure: valid in a query, left out of the answer."""
_REQUESTS = "baseten_inference_requests_total"
DEFAULT_METRICS = ("baseten_replicas_active", "baseten_inference_requests_total")


def values_of(rset: ReplicaSet | None) -> dict[str, int]:
    ready = rset.ready_count if rset is not None else 0
    total = len(rset.replicas) if rset is not None else 0
    return {
        "baseten_replicas_active": ready,
        "baseten_replicas_starting": total - ready,
        "baseten_concurrent_requests": rset.meter.in_flight if rset is not None else 0,
        "baseten_inference_requests_total": rset.meter.requests if rset is not None else 0,
    }


def current_metrics(rset: ReplicaSet | None, mode: str, names: Sequence[str] | None) -> dict[str, Any]:
    """Baseten's ``GetModelMetricsResponseV1`` for ``mode=CURRENT`` (a snapshot now). SUMMARY and SERIES
    need a history the platform does not keep: a 400 that says so."""
    if mode not in ("CURRENT", "SUMMARY", "SERIES"):
        raise InvalidRequest(f"mode must be CURRENT, SUMMARY or SERIES (got {mode!r})")
    if mode != "CURRENT":
        raise InvalidRequest(
            f"mode {mode} needs a metric history, which this platform does not keep: use mode=CURRENT, "
            "or scrape /metrics into Prometheus"
        )
    ours = {name: kind for name, kind, _ in _METRICS}
    wanted = list(names) if names else list(DEFAULT_METRICS)
    unknown = [name for name in wanted if name not in ours and name not in _KNOWN_ELSEWHERE]
    if unknown:
        raise InvalidRequest(f"unknown metrics {unknown}: use {', '.join(ours)}")
    present = [name for name in wanted if name in ours]
    values = values_of(rset)
    now = int(time.time() * 1000)
    return {
        "start_epoch_millis": now,
        "end_epoch_millis": now,
        "mode": mode,
        "step_seconds": None,
        "metric_descriptors": [
            {"name": name, "unit_hint": "COUNT", "kind": _KIND[ours[name]], "label_sets": [{}]} for name in present
        ],
        "metric_values": [{"start_epoch_millis": now, "values": [[values[name]] for name in present]}],
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsExport:
    def __init__(self, controller: Controller) -> None:
        self.ctrl = controller
        self.routes = [Route("/metrics", self.metrics, methods=["GET"])]

    def text(self) -> str:
        rows: dict[str, list[str]] = {name: [] for name, _, _ in _METRICS}
        store = self.ctrl.store
        names = {model.id: model.name for model in store.models()}
        for dep in store.deployments():
            envs = store.environments_of(dep.id) or ([DEVELOPMENT] if dep.is_development else [])
            labels = (
                f'model_id="{dep.model_id}",model_name="{_label(names.get(dep.model_id, ""))}",'
                f'deployment_id="{dep.id}",environment="{_label(",".join(envs))}"'
            )
            rset = self.ctrl.engine.replica_set(dep.id)
            values = values_of(rset)
            for name, value in values.items():
                if name == _REQUESTS:  # split by is_async, as Baseten labels its request metrics
                    runs = rset.meter.async_requests if rset is not None else 0
                    rows[name].append(f'{name}{{{labels},is_async="false"}} {value - runs}')
                    rows[name].append(f'{name}{{{labels},is_async="true"}} {runs}')
                else:
                    rows[name].append(f"{name}{{{labels}}} {value}")
        out: list[str] = []
        for name, kind, help_text in _METRICS:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *rows[name]]
        return "\n".join(out) + "\n"

    async def metrics(self, request: Request) -> Response:
        return Response(self.text(), media_type=CONTENT_TYPE)
