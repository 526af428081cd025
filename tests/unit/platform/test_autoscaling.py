"""The autoscaling policy as a pure function, the load meter it reads, and the settings it validates."""

from __future__ import annotations

import collections

import pytest

from trestle.errors import PlatformError
from trestle.platform.control.autoscaling import Autoscaling, decide
from trestle.platform.engines.base import LoadMeter, LoadSample
from trestle.platform.errors import InvalidRequest

POLICY = Autoscaling(
    min_replicas=1,
    max_replicas=4,
    concurrency_target=2.0,
    autoscaling_window=10.0,
    scale_down_delay=30.0,
    scale_to_zero_delay=60.0,
)


def steady(in_flight: int, seconds: int, start: float = 0.0, busy: float = 0.0) -> list[LoadSample]:
    """One sample a second of a constant in-flight count."""
    return [LoadSample(at=start + t, busy=busy + in_flight * t, peak=in_flight) for t in range(seconds + 1)]


def test_scales_up_when_the_window_average_exceeds_the_target() -> None:
    # 5 in flight on average, 2 per replica wanted: 3 replicas
    decision = decide(POLICY, 1, steady(5, 10), now=10, last_change=0)
    assert decision is not None
    assert decision.replicas == 3
    assert "5.00 requests in flight" in decision.reason
    # at the target: nothing to do
    assert decide(POLICY, 2, steady(4, 10), now=10, last_change=0) is None
    # never past max_replicas
    decision = decide(POLICY, 2, steady(50, 10), now=10, last_change=0)
    assert decision is not None
    assert decision.replicas == 4


def test_readings_a_little_late_still_make_a_window() -> None:
    # the loop reads every ~1.01 s: the reading before a 1 s window is just outside it
    policy = Autoscaling(min_replicas=0, max_replicas=2, autoscaling_window=1.0)
    samples = collections.deque([LoadSample(at=0.0, busy=0.0, peak=3), LoadSample(at=1.01, busy=3.03, peak=3)])
    decision = decide(policy, 1, samples, now=1.01, last_change=0)
    assert decision is not None
    assert decision.replicas == 2


def test_scale_up_uses_the_window_only() -> None:
    # a burst long ago, quiet in the last 10 s: no scale-up
    samples = steady(9, 20) + steady(0, 20, start=21, busy=9 * 20)[1:]
    assert decide(POLICY, 1, samples, now=41, last_change=0) is None
    # too little history for an average: wait
    assert decide(POLICY, 1, steady(9, 0), now=0, last_change=0) is None


def test_scales_down_after_the_delay_to_what_the_peak_needed() -> None:
    samples = steady(3, 40)  # peak 3 → 2 replicas at target 2
    decision = decide(POLICY, 4, samples, now=40, last_change=0)
    assert decision is not None
    assert decision.replicas == 2
    # not before the delay has passed since the last change
    assert decide(POLICY, 4, samples, now=40, last_change=20) is None
    # not with less history than the delay
    assert decide(POLICY, 4, steady(3, 20), now=20, last_change=-100) is None
    # a single busy moment inside the delay keeps the replicas
    spiky = [*samples[:-5], LoadSample(at=36, busy=samples[-5].busy, peak=8), *samples[-4:]]
    assert decide(POLICY, 4, spiky, now=40, last_change=0) is None


def test_idle_scales_down_to_min_but_not_to_zero_unless_allowed() -> None:
    idle = steady(0, 100)
    decision = decide(POLICY, 3, idle, now=100, last_change=0)
    assert decision is not None
    assert decision.replicas == 1
    assert decide(POLICY, 1, idle, now=100, last_change=0) is None


def test_scale_to_zero_after_the_longer_idle_period() -> None:
    dev = Autoscaling.default(development=True)
    policy = Autoscaling(min_replicas=0, max_replicas=2, scale_down_delay=30.0, scale_to_zero_delay=60.0)
    assert dev.min_replicas == 0
    assert dev.autoscales
    idle = steady(0, 100)
    # idle for 40 s: past the scale-down delay, not yet the scale-to-zero one
    assert decide(policy, 1, idle, now=40, last_change=0) is None
    decision = decide(policy, 1, idle, now=60, last_change=0)
    assert decision is not None
    assert decision.replicas == 0
    assert "no request for 60s" in decision.reason
    # one request in the period keeps it up
    busy_once = [*idle[:50], LoadSample(at=50, busy=idle[50].busy + 0.01, peak=1), *idle[51:61]]
    assert decide(policy, 1, busy_once, now=60, last_change=0) is None
    # scaled to zero already: waking up is the gateway's job, not the autoscaler's
    assert decide(policy, 0, steady(3, 60), now=60, last_change=0) is None


def test_settings_changes_are_applied_at_once() -> None:
    decision = decide(Autoscaling.fixed(2), 3, [], now=0, last_change=0)
    assert decision is not None
    assert decision.replicas == 2
    decision = decide(Autoscaling(min_replicas=3, max_replicas=5), 1, [], now=0, last_change=0)
    assert decision is not None
    assert decision.replicas == 3
    assert decide(Autoscaling.fixed(2), 2, steady(10, 60), now=60, last_change=0) is None


def test_meter_integrates_in_flight_requests() -> None:
    now = [0.0]
    meter = LoadMeter(clock=lambda: now[0])
    meter.begin()  # t=0: 1 in flight
    now[0] = 1.0
    meter.begin()  # t=1: 2
    now[0] = 2.0
    meter.end()  # t=2: 1
    first = meter.sample()
    assert (first.at, first.busy, first.peak) == (2.0, 3.0, 2)
    now[0] = 4.0
    meter.end()  # t=4: 0
    now[0] = 5.0
    second = meter.sample()
    assert (second.busy, second.peak) == (5.0, 1)  # the one still in flight at the first sample counts
    now[0] = 6.0
    third = meter.sample()
    assert (third.busy, third.peak) == (5.0, 0)
    # a request shorter than the sampling interval is still seen
    meter.begin()
    now[0] = 6.05
    meter.end()
    now[0] = 7.0
    fourth = meter.sample()
    assert fourth.peak == 1
    assert fourth.busy == pytest.approx(5.05)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "more than max_replicas"),
        ({"max_replicas": 0}, "max_replicas must be between 1"),
        ({"max_replicas": 1.5}, "whole number"),
        ({"concurrency_target": 0}, "concurrency_target must be a positive number"),
        ({"scale_down_delay": -1}, "scale_down_delay must be a positive number of seconds"),
        ({"concurrency_target": "2"}, "must be a number"),
        ({"replicaz": 2}, "unknown scaling setting 'replicaz'"),
    ],
)
def test_bad_settings_are_invalid_requests(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(PlatformError) as info:
        Autoscaling().updated(changes)
    assert isinstance(info.value, InvalidRequest)
    assert needle in info.value.message


def test_fixed_and_stored_settings() -> None:
    with pytest.raises(PlatformError, match="deactivate"):
        Autoscaling.fixed(0)
    fixed = Autoscaling.fixed(3)
    assert (fixed.min_replicas, fixed.max_replicas, fixed.autoscales) == (3, 3, False)
    ranged = Autoscaling().updated({"min_replicas": 0, "max_replicas": 3, "concurrency_target": 4})
    assert ranged.floor == 1
    assert ranged.clamp(7) == 3
    assert Autoscaling.from_dict(ranged.to_dict(), development=False) == ranged
    # rows written before a setting existed get its default
    assert Autoscaling.from_dict({"max_replicas": 2}, development=True) == Autoscaling(min_replicas=0, max_replicas=2)
