"""Prometheus metrics with a hot path of plain integer and float updates.

prometheus_client's own metric objects take a lock and walk every bucket on each observation.
The server records into the small structures below (one event-loop thread writes them) and a
collector turns them into Prometheus families only when scraped.

Two views, as on Truss: :func:`model_metrics` (``/metrics``) is the default registry, which holds
the model's own metrics, without the process, platform and GC collectors, without ``trestle_*``
families and without ``*_created`` series. :func:`trestle_metrics` (``/metrics/trestle``) is
Trestle's: the server's families, the ``trestle_*`` families of the default registry (the protocol
helpers' counters) and the process, platform and GC collectors.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


_SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=False):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        return out


class BatchStats:
    """One batched method's numbers: batch sizes, each request's wait for its batch, batch durations.

    The runtime's batcher records into it (on the event loop thread); ``/metrics/trestle`` reads it.
    """

    __slots__ = ("queued", "sizes", "waits", "durations")

    def __init__(self) -> None:
        self.queued = 0  # requests waiting for a batch now
        self.sizes = _Histogram(_SIZE_BUCKETS)
        self.waits = _Histogram()
        self.durations = _Histogram()


class ServerMetrics:
    """All of the model server's metrics."""

    def __init__(self) -> None:
        self.in_flight: Callable[[], int] = lambda: 0  # set by the app: the runtime's counts
        self.queued: Callable[[], int] = lambda: 0
        self.batches: Callable[[], dict[str, BatchStats]] = dict  # set by the app: per batched method
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
        yield GaugeMetricFamily("trestle_requests_in_flight", "Inference requests being served.", value=m.in_flight())
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
        yield from _batch_families(m.batches())


def _batch_families(batches: dict[str, BatchStats]) -> Iterator[Metric]:
    queued = GaugeMetricFamily("trestle_batch_queued", "Requests waiting for a batch.", labels=["method"])
    sizes = HistogramMetricFamily("trestle_batch_size", "Requests per executed batch.", labels=["method"])
    waits = HistogramMetricFamily(
        "trestle_batch_wait_seconds", "Time a request waited for its batch to start.", labels=["method"]
    )
    durations = HistogramMetricFamily(
        "trestle_batch_duration_seconds", "Time one batch call of the model took.", labels=["method"]
    )
    for method, stats in list(batches.items()):
        queued.add_metric([method], stats.queued)
        sizes.add_metric([method], stats.sizes.buckets(), stats.sizes.total)
        waits.add_metric([method], stats.waits.buckets(), stats.waits.total)
        durations.add_metric([method], stats.durations.buckets(), stats.durations.total)
    yield queued
    yield sizes
    yield waits
    yield durations


_OWN_PREFIX = "trestle_"
_process = CollectorRegistry(auto_describe=False)
_prepared = False


def _prepare() -> None:
    """Once per process: move the process, platform and GC collectors out of the default registry
    (Truss unregisters them) into Trestle's view, and turn ``*_created`` series off (as Truss does)."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    for default in (
        prometheus_client.PROCESS_COLLECTOR,
        prometheus_client.PLATFORM_COLLECTOR,
        prometheus_client.GC_COLLECTOR,
    ):
        try:
            REGISTRY.unregister(default)
        except KeyError:  # already gone (the model or an earlier server removed it)
            pass
    prometheus_client.ProcessCollector(registry=_process)
    prometheus_client.PlatformCollector(registry=_process)
    prometheus_client.GCCollector(registry=_process)


class _View:
    """A registry-like object for ``generate_latest``."""

    def __init__(self, *sources: Callable[[], Iterator[Metric]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


def _model_families() -> Iterator[Metric]:
    for family in REGISTRY.collect():
        if not family.name.startswith(_OWN_PREFIX):
            yield family


def _own_default_families() -> Iterator[Metric]:
    for family in REGISTRY.collect():
        if family.name.startswith(_OWN_PREFIX):
            yield family


def model_metrics() -> bytes:
    """The exposition text of ``/metrics``: the model's metrics only."""
    _prepare()
    return generate_latest(_View(_model_families))


def trestle_metrics(metrics: ServerMetrics) -> bytes:
    """The exposition text of ``/metrics/trestle``."""
    _prepare()
    return generate_latest(_View(_Collector(metrics).collect, _own_default_families, _process.collect))  # type: ignore[arg-type]
