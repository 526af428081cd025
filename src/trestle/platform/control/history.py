"""The platform's own metric history: a rolling store of each deployment's (and each environment's)
metrics, so that Baseten's metrics API (``mode=SUMMARY|SERIES``) and the dashboard's charts work with no
Prometheus.

Every ``step`` seconds (10 by default) the sampler (``sampler.py``) closes a ``Step`` per deployment: the
requests answered in it by status class, the latency and time-to-first-byte histograms of those, and the
time-weighted averages of the gauges (replicas, concurrency, CPU, memory, GPU). Steps are kept at three
resolutions, each a ring: ``step`` seconds for an hour, a minute for a day, ten minutes for a week; a
finer step is folded into the coarser ones as it closes. An environment's history is the history of
whichever deployment was in it at each step, so a chart across a promote shows both.

Memory: a step is ~0.5 KB (plus ~1.2 KB per histogram when it saw requests); a deployment that runs all
week holds at most ~2,800 steps. Nothing is written to disk: a restarted platform starts a new history.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Iterator

from trestle.platform.control.histogram import Histogram

GAUGES = (
    "baseten_replicas_active",
    "baseten_replicas_starting",
    "baseten_concurrent_requests",
    "baseten_container_cpu_usage_seconds_total",
    "baseten_container_cpu_memory_working_set_bytes",
    "baseten_gpu_utilization",
    "baseten_gpu_memory_used",
)
"""The time-averaged metrics of a step (CPU as cores used: CPU-seconds per second)."""
_GAUGE_INDEX = {name: i for i, name in enumerate(GAUGES)}


class Step:
    """One step of one deployment: counts and histograms of what finished in it, gauge averages."""

    __slots__ = ("first_byte", "gauges", "latency", "restarts", "seconds", "start", "statuses")

    def __init__(self, start: int, seconds: float) -> None:
        self.start = start
        """Epoch seconds, a multiple of the ring's step."""
        self.seconds = seconds
        self.statuses = [0, 0, 0, 0]
        """Requests answered with 2xx, 3xx, 4xx, 5xx."""
        self.latency: Histogram | None = None
        self.first_byte: Histogram | None = None
        self.restarts = 0
        self.gauges = array("d", [0.0]) * (2 * len(GAUGES))
        """Per gauge: the sum of value x seconds, and the seconds it was measured for."""

    def set_gauge(self, name: str, value: float | None) -> None:
        if value is None:
            return
        i = 2 * _GAUGE_INDEX[name]
        self.gauges[i] = value * self.seconds
        self.gauges[i + 1] = self.seconds

    def gauge(self, name: str) -> float | None:
        i = 2 * _GAUGE_INDEX[name]
        weight = self.gauges[i + 1]
        return self.gauges[i] / weight if weight > 0 else None

    def fold(self, other: Step) -> None:
        """Add ``other`` (a later, finer step) into this one."""
        self.seconds += other.seconds
        for i in range(4):
            self.statuses[i] += other.statuses[i]
        self.latency = _merged(self.latency, other.latency)
        self.first_byte = _merged(self.first_byte, other.first_byte)
        self.restarts += other.restarts
        for i, value in enumerate(other.gauges):
            self.gauges[i] += value

    def copy_as(self, start: int) -> Step:
        out = Step(start, 0.0)
        out.fold(self)
        return out


def _merged(mine: Histogram | None, theirs: Histogram | None) -> Histogram | None:
    if theirs is None or theirs.count == 0:
        return mine
    if mine is None:
        return theirs.copy()
    mine.add(theirs)
    return mine


class Ring:
    """The steps of one resolution, oldest first, at most ``slots`` of them."""

    def __init__(self, step: int, slots: int) -> None:
        self.step = step
        self.slots = slots
        self.steps: deque[Step] = deque(maxlen=slots)

    @property
    def span(self) -> int:
        return self.step * self.slots

    def add(self, step: Step) -> None:
        start = step.start - step.start % self.step
        if self.steps and self.steps[-1].start == start:
            self.steps[-1].fold(step)
        else:
            self.steps.append(step.copy_as(start))

    def between(self, start: float, end: float) -> Iterator[Step]:
        for step in self.steps:
            if start <= step.start < end:
                yield step


class Series:
    """One deployment's or environment's history at every resolution."""

    def __init__(self, step: int) -> None:
        self.rings = (
            Ring(step, max(1, 3600 // step)),
            Ring(max(60, step), 1440),
            Ring(max(600, step), 1008),
        )

    def add(self, step: Step) -> None:
        for ring in self.rings:
            ring.add(step)

    def ring_for(self, start: float, end: float, now: float, max_points: int = 1500) -> Ring:
        """The finest ring that still holds ``start`` and gives at most ``max_points`` steps."""
        for ring in self.rings:
            if now - start <= ring.span and (end - start) / ring.step <= max_points:
                return ring
        return self.rings[-1]


def deployment_key(deployment_id: str) -> str:
    return f"deployment:{deployment_id}"


def environment_key(model_id: str, name: str) -> str:
    return f"environment:{model_id}/{name}"


class MetricHistory:
    def __init__(self, step: int = 10) -> None:
        self.step = max(1, int(step))
        self._series: dict[str, Series] = {}

    def record(self, keys: Iterable[str], step: Step) -> None:
        for key in keys:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series(self.step)
            series.add(step)

    def forget(self, key: str) -> None:
        self._series.pop(key, None)

    def tracked(self) -> list[str]:
        """The keys (deployments, environments) it holds a history of."""
        return list(self._series)

    def window(self, key: str, start: float, end: float, now: float) -> tuple[int, list[tuple[int, Step | None]]]:
        """(step seconds, [(slot start, its step or None)]) covering ``[start, end)``, slot by slot."""
        series = self._series.get(key)
        ring = (series or Series(self.step)).ring_for(start, end, now)
        first = int(start) - int(start) % ring.step
        found = {step.start: step for step in ring.between(first, end)} if series is not None else {}
        slots = range(first, int(math.ceil(end)), ring.step)
        return ring.step, [(slot, found.get(slot)) for slot in slots]

    def summary(self, key: str, start: float, end: float, now: float) -> Step | None:
        """Every step of ``[start, end)`` folded into one; None when none was recorded."""
        series = self._series.get(key)
        if series is None:
            return None
        ring = series.ring_for(start, end, now, max_points=1 << 30)
        first = int(start) - int(start) % ring.step
        out: Step | None = None
        for step in ring.between(first, end):
            if out is None:
                out = step.copy_as(first)
            else:
                out.fold(step)
        return out
