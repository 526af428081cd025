"""The async queue's Prometheus families (Baseten's names with the ``trestle_`` prefix), served at
``GET /metrics/async`` on the platform port:

* ``trestle_async_queue_size{deployment_id, status}``: QUEUED and IN_PROGRESS requests now;
* ``trestle_time_in_async_queue_seconds{deployment_id}``: from submit to the start of its run;
* ``trestle_async_requests_total{deployment_id, outcome, is_async="true"}``: attempts by outcome
  (success, failure, retry, expired);
* ``trestle_async_webhook_requests_total{outcome}`` and ``trestle_async_webhook_latency_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
_WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _QueueSize(Collector):
    def __init__(self, sizes: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.sizes = sizes

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "trestle_async_queue_size", "Async requests queued or in progress", labels=["deployment_id", "status"]
        )
        for (deployment_id, status), count in sorted(self.sizes().items()):
            family.add_metric([deployment_id, status], count)
        yield family


class AsyncMetrics:
    def __init__(self, sizes: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_QueueSize(sizes))
        self.time_in_queue = Histogram(
            "trestle_time_in_async_queue_seconds",
            "Seconds from submit to the start of the run",
            ["deployment_id"],
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "trestle_async_requests",
            "Async request attempts by outcome",
            ["deployment_id", "outcome", "is_async"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "trestle_async_webhook_requests", "Webhook deliveries tried", ["outcome"], registry=self.registry
        )
        self.webhook_latency = Histogram(
            "trestle_async_webhook_latency_seconds",
            "Seconds a webhook delivery took",
            buckets=_WEBHOOK_BUCKETS,
            registry=self.registry,
        )

    def attempt(self, deployment_id: str, outcome: str, queued_seconds: float) -> None:
        self.requests.labels(deployment_id, outcome, "true").inc()
        if outcome != "expired":
            self.time_in_queue.labels(deployment_id).observe(queued_seconds)

    def webhook(self, outcome: str, seconds: float) -> None:
        self.webhooks.labels(outcome).inc()
        self.webhook_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
