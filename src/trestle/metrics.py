"""Prometheus metrics with a hot path of plain integer and float updates.

prometheus_client's own metric objects take a lock and walk every bucket on each observation.
The server records into the small structures below (one event-loop thread writes them) and a
custom collector turns them into Prometheus families only when ``/metrics`` is scraped. User
metrics created with prometheus_client appear beside them, as in Truss.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(_LATENCY_BUCKETS, value)] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*_LATENCY_BUCKETS, float("inf")), self.counts, strict=False):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        return out


class ServerMetrics:
    """All of the model server's metrics."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.queued: Callable[[], int] = lambda: 0
        self.stream_chunks = 0
        self.ttfc = _Histogram()
        self.durations: dict[tuple[str, int], _Histogram] = {}
        self.cancellations: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        hist = self.durations.get(key)
        if hist is None:
            hist = self.durations[key] = _Histogram()
        hist.observe(seconds)

    def count_cancellation(self, reason: str) -> None:
        self.cancellations[reason] = self.cancellations.get(reason, 0) + 1

    def count_error(self, route: str, kind: str) -> None:
        key = (route, kind)
        self.errors[key] = self.errors.get(key, 0) + 1


class _Collector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        yield GaugeMetricFamily("trestle_requests_in_flight", "Inference requests being served.", value=m.in_flight)
        yield GaugeMetricFamily(
            "trestle_requests_queued", "Requests waiting for a predict_concurrency slot.", value=m.queued()
        )
        yield CounterMetricFamily("trestle_stream_chunks", "Streamed chunks written.", value=m.stream_chunks)
        ttfc = HistogramMetricFamily("trestle_time_to_first_chunk_seconds", "Time from request to first chunk.")
        ttfc.add_metric([], m.ttfc.buckets(), m.ttfc.total)
        yield ttfc
        dur = HistogramMetricFamily(
            "trestle_request_duration_seconds", "Inference request duration.", labels=["route", "status"]
        )
        for (route, status), hist in list(m.durations.items()):
            dur.add_metric([route, str(status)], hist.buckets(), hist.total)
        yield dur
        cancel = CounterMetricFamily("trestle_cancellations", "Requests cancelled, by reason.", labels=["reason"])
        for reason, n in list(m.cancellations.items()):
            cancel.add_metric([reason], n)
        yield cancel
        errors = CounterMetricFamily("trestle_errors", "Failed requests, by route and kind.", labels=["route", "kind"])
        for (route, kind), n in list(m.errors.items()):
            errors.add_metric([route, kind], n)
        yield errors


_registered: _Collector | None = None


def install(metrics: ServerMetrics) -> None:
    """Expose ``metrics`` in the default registry (replacing an earlier server's in this process)."""
    global _registered
    if _registered is not None:
        REGISTRY.unregister(_registered)
    _registered = _Collector(metrics)
    REGISTRY.register(_registered)
