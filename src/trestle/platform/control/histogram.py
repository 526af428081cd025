"""Latency histograms with fixed bins: cheap to fill on the gateway's hot path (one ``bisect`` and one
increment), cheap to subtract (the metric history keeps the difference of two readings per step), and
good enough for quantiles (bins grow by ~26 %, so an interpolated quantile is within ~13 % of the true
value; Prometheus's default buckets are 2-2.5x apart).

Bins: ten per decade (1, 1.25, 1.6, 2, 2.5, 3.2, 4, 5, 6.4, 8) from 100 us to 1,000 s, plus one for
anything slower. ``/metrics`` exports a Prometheus histogram at the 1, 2.5, 5 steps of each decade
(``EXPORTED``), a subset of the bins, so the exported counts are exact.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

_STEPS = (1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.4, 8.0)
_LADDER = [(round(step * 10.0**exp, 10), step in (1.0, 2.5, 5.0)) for exp in range(-4, 3) for step in _STEPS]
BOUNDS: tuple[float, ...] = (*(bound for bound, _ in _LADDER), 1000.0)
"""Upper bounds (seconds, inclusive, as Prometheus's ``le``) of every bin but the last."""
EXPORTED: tuple[int, ...] = (*(i for i, (_, exported) in enumerate(_LADDER) if exported), len(_LADDER))
"""The bins whose upper bounds ``/metrics`` exports (1, 2.5 and 5 of each decade, and 1,000 s)."""

QUANTILES = (0.5, 0.9, 0.95, 0.99)


class Histogram:
    """Counts per bin, their sum and count; cumulative (since the deployment's first request)."""

    __slots__ = ("bins", "count", "total")

    def __init__(self) -> None:
        self.bins = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.bins[bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def copy(self) -> Histogram:
        other = Histogram()
        other.bins = list(self.bins)
        other.count = self.count
        other.total = self.total
        return other

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed since ``earlier`` (a copy of this histogram taken before)."""
        out = Histogram()
        out.bins = [now - then for now, then in zip(self.bins, earlier.bins, strict=True)]
        out.count = self.count - earlier.count
        out.total = self.total - earlier.total
        return out

    def add(self, other: Histogram) -> None:
        for i, value in enumerate(other.bins):
            if value:
                self.bins[i] += value
        self.count += other.count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated linearly inside its bin; None when nothing was observed."""
        if self.count <= 0:
            return None
        rank = q * self.count
        seen = 0
        for i, value in enumerate(self.bins):
            if value and seen + value >= rank:
                lower = BOUNDS[i - 1] if i > 0 else 0.0
                upper = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1]
                return lower + (upper - lower) * max(0.0, rank - seen) / value
            seen += value
        return BOUNDS[-1]

    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def summary(self, quantiles: Sequence[float] = QUANTILES) -> list[float | None]:
        """``[p50, p90, p95, p99, mean]``: the value list of a Baseten histogram metric."""
        return [self.quantile(q) for q in quantiles] + [self.mean()]

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, count)`` at the exported bounds, for Prometheus text (``+Inf`` is ``count``)."""
        out: list[tuple[float, int]] = []
        running = 0
        upto = 0
        for index in EXPORTED:
            running += sum(self.bins[upto : index + 1])
            upto = index + 1
            out.append((BOUNDS[index], running))
        return out
