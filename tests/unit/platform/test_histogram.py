"""The latency histogram (control/histogram.py) and the history's rings (control/history.py)."""

from __future__ import annotations

import random

import pytest

from trestle.platform.control.histogram import BOUNDS, EXPORTED, Histogram
from trestle.platform.control.history import MetricHistory, Ring, Step


def test_quantiles_are_within_a_bin_of_the_truth() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(-4, 1.2) for _ in range(20_000)]
    histogram = Histogram()
    for value in samples:
        histogram.observe(value)
    samples.sort()
    for q in (0.5, 0.9, 0.99):
        exact = samples[int(q * len(samples))]
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.13), q
    assert histogram.mean() == pytest.approx(sum(samples) / len(samples))
    assert Histogram().quantile(0.5) is None


def test_a_value_on_a_bound_counts_in_that_bound_as_prometheus_le() -> None:
    histogram = Histogram()
    histogram.observe(0.001)
    histogram.observe(0.0010001)
    cumulative = dict(histogram.cumulative())
    assert cumulative[0.001] == 1
    assert cumulative[0.0025] == 2
    assert [le for le, _ in histogram.cumulative()] == [BOUNDS[i] for i in EXPORTED]
    histogram.observe(5000.0)  # slower than the last bound: only in +Inf (the count)
    assert histogram.cumulative()[-1] == (1000.0, 2)
    assert histogram.count == 3


def test_minus_gives_what_was_observed_since_a_copy() -> None:
    histogram = Histogram()
    histogram.observe(0.01)
    before = histogram.copy()
    histogram.observe(0.5)
    histogram.observe(0.5)
    since = histogram.minus(before)
    assert since.count == 2
    assert since.total == pytest.approx(1.0)
    assert 0.4 < (since.quantile(0.5) or 0) <= 0.5


def _step(start: int, ok: int, seconds: float = 10.0) -> Step:
    step = Step(start, seconds)
    step.statuses = [ok, 0, 0, 0]
    step.set_gauge("baseten_replicas_active", 2.0)
    return step


def test_rings_fold_fine_steps_into_coarse_ones() -> None:
    ring = Ring(60, 3)
    for i in range(12):  # two minutes of 10 s steps
        ring.add(_step(600 + 10 * i, 1))
    assert [(s.start, s.statuses[0], s.seconds) for s in ring.steps] == [(600, 6, 60.0), (660, 6, 60.0)]
    assert ring.steps[0].gauge("baseten_replicas_active") == pytest.approx(2.0)  # an average, not a sum
    for i in range(3):
        ring.add(_step(720 + 60 * i, 1, 60.0))
    assert [s.start for s in ring.steps] == [720, 780, 840]  # at most ``slots``: the oldest went


def test_a_long_window_is_answered_from_a_coarser_ring() -> None:
    history = MetricHistory(10)
    now = 10 * 86400
    for t in range(now - 7200, now, 10):
        history.record(["k"], _step(t, 1))
    step, slots = history.window("k", now - 900, now, now)
    assert step == 10
    assert len(slots) == 90
    assert all(found is not None and found.statuses[0] == 1 for _, found in slots)
    step, slots = history.window("k", now - 86400, now, now)
    assert step == 60
    assert len(slots) == 1440
    assert slots[-1][1] is not None and slots[-1][1].statuses[0] == 6
    assert slots[0][1] is None  # before the history began: null, not zero
    summary = history.summary("k", now - 3600, now, now)
    assert summary is not None and summary.statuses[0] == 360
    assert history.summary("other", 0, now, now) is None
