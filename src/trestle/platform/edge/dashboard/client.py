"""The dashboard's way to the platform's API: in-process HTTP calls into the platform's own ASGI app
(``edge/app.py``), with the signed-in session's key, so a page shows exactly what the API (and the CLI)
answers: the same handlers, the same key checks, the same errors. No socket, no second computation."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.types import ASGIApp

METRICS_5M = ("baseten_inference_requests_total", "baseten_end_to_end_response_time_seconds")


class ApiError(Exception):
    """A non-2xx answer of the API: its status and its ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ApiClient:
    def __init__(self, app: ASGIApp) -> None:
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        base_url: str,
        path: str,
        api_key: str,
        *,
        params: Any = None,
        body: Any = None,
    ) -> Any:
        """The JSON answer of ``method path`` (``base_url``: the platform's URL as the browser reaches it,
        so the URLs in answers are ones the user can call); ApiError for a non-2xx answer."""
        response = await self._client.request(
            method,
            base_url.rstrip("/") + path,
            params=params,
            json=body,
            headers={"Authorization": f"Api-Key {api_key}"},
        )
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ApiError(response.status_code, str(message or f"HTTP {response.status_code}"))
        return data

    async def get(self, base_url: str, path: str, api_key: str, params: Any = None) -> Any:
        return await self.call("GET", base_url, path, api_key, params=params)


def metric(body: Any, name: str, labels: dict[str, str], index: int = 0) -> float | None:
    """One value of a ``GetModelMetricsResponseV1``: metric ``name`` for the label set ``labels`` in
    its ``index``-th time step (None when absent)."""
    try:
        descriptors = body["metric_descriptors"]
        position = next(i for i, d in enumerate(descriptors) if d["name"] == name)
        label_sets = descriptors[position].get("label_sets") or [{}]
        column = next(i for i, ls in enumerate(label_sets) if all(ls.get(k) == v for k, v in labels.items()))
        value = body["metric_values"][index]["values"][position][column]
    except (KeyError, IndexError, TypeError, StopIteration):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def metric_sum(body: Any, name: str, index: int = 0) -> float | None:
    """The sum over a metric's label sets in one step (requests over every status class)."""
    try:
        descriptors = body["metric_descriptors"]
        position = next(i for i, d in enumerate(descriptors) if d["name"] == name)
        values = body["metric_values"][index]["values"][position]
    except (KeyError, IndexError, TypeError, StopIteration):
        return None
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) if numbers else None


def last_five_minutes() -> dict[str, Any]:
    end = int(time.time() * 1000)
    return {"mode": "SUMMARY", "start_epoch_millis": end - 300_000, "end_epoch_millis": end, "metrics": METRICS_5M}
