"""What the gateway saw of each deployment's requests: counts by status code and by sync/async, and the
end-to-end and time-to-first-byte histograms. Cumulative since the platform started; ``/metrics``
exports them as they are and the metric history (``history.py``) keeps their differences per step.

The gateway records one request with ``DeploymentTraffic.finish`` when its answer is over (a few
hundred nanoseconds: two bisects and some increments, on the event loop, no lock needed).
"""

from __future__ import annotations

from trestle.platform.control.histogram import Histogram

CLIENT_CLOSED = 499
"""The status recorded for a request whose client went away before its answer was complete (nginx's)."""


class DeploymentTraffic:
    __slots__ = ("first_byte", "latency", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[tuple[int, bool], int] = {}
        """Requests answered, by (status code, is_async)."""
        self.latency = Histogram()
        """End to end at the gateway: from the request's arrival to the last byte of its answer."""
        self.first_byte = Histogram()
        """From the request's arrival to the first byte of the answer's body."""

    def finish(self, status: int, seconds: float, first_byte: float | None, *, is_async: bool = False) -> None:
        key = (status, is_async)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.latency.observe(seconds)
        if first_byte is not None:
            self.first_byte.observe(first_byte)

    def by_class(self) -> list[int]:
        """Requests answered with a 2xx, 3xx, 4xx and 5xx status (1xx counts as 2xx: a websocket's 101)."""
        out = [0, 0, 0, 0]
        for (status, _), count in self.statuses.items():
            out[min(max(status // 100, 2), 5) - 2] += count
        return out

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


class Traffic:
    """Every deployment's ``DeploymentTraffic``, made on its first request."""

    def __init__(self) -> None:
        self._by_deployment: dict[str, DeploymentTraffic] = {}

    def of(self, deployment_id: str) -> DeploymentTraffic:
        found = self._by_deployment.get(deployment_id)
        if found is None:
            found = self._by_deployment[deployment_id] = DeploymentTraffic()
        return found

    def get(self, deployment_id: str) -> DeploymentTraffic | None:
        return self._by_deployment.get(deployment_id)

    def forget(self, deployment_id: str) -> None:
        self._by_deployment.pop(deployment_id, None)
