"""``GET /metrics``: the platform's own metrics as Prometheus text, with Baseten's metric names and labels
(``model_id``, ``model_name``, ``deployment_id``, ``environment``), read from the engine's replica sets
when scraped (nothing is added to a request's path beyond the counter the load meter already keeps).

| metric | kind | meaning |
|---|---|---|
| ``baseten_replicas_active`` | gauge | ready replicas |
| ``baseten_replicas_starting`` | gauge | replicas not ready yet (loading, restarting) |
| ``baseten_concurrent_requests`` | gauge | requests in flight at the gateway |
| ``baseten_inference_requests_total`` | counter | requests proxied since the replicas started |

A ``WORKSPACE_EXPORT_METRICS`` key may read it (``edge/auth.py``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trestle.platform.control.controller import Controller
from trestle.platform.store.states import DEVELOPMENT

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METRICS = (
    ("baseten_replicas_active", "gauge", "Ready replicas of the deployment."),
    ("baseten_replicas_starting", "gauge", "Replicas of the deployment that are not ready yet."),
    ("baseten_concurrent_requests", "gauge", "Requests in flight at the gateway for the deployment."),
    ("baseten_inference_requests_total", "counter", "Requests the gateway sent to the deployment."),
)


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
            ready = rset.ready_count if rset is not None else 0
            total = len(rset.replicas) if rset is not None else 0
            values = {
                "baseten_replicas_active": ready,
                "baseten_replicas_starting": total - ready,
                "baseten_concurrent_requests": rset.meter.in_flight if rset is not None else 0,
                "baseten_inference_requests_total": rset.meter.requests if rset is not None else 0,
            }
            for name, value in values.items():
                rows[name].append(f"{name}{{{labels}}} {value}")
        out: list[str] = []
        for name, kind, help_text in _METRICS:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *rows[name]]
        return "\n".join(out) + "\n"

    async def metrics(self, request: Request) -> Response:
        return Response(self.text(), media_type=CONTENT_TYPE)
