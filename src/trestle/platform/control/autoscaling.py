"""Replica counts: each deployment's scaling settings, the policy that turns load into a replica count
(a pure function, ``decide``), and the loop that applies it on the local engine.

Load is the number of requests in flight at the gateway, integrated over time by the deployment's
``LoadMeter``; the loop samples it every ``interval`` seconds. The policy:

* **up** at once when the average in-flight count over ``autoscaling_window`` exceeds
  ``concurrency_target`` per replica: to ``ceil(average / target)``, at most ``max_replicas``;
* **down** when, for ``scale_down_delay`` seconds (and since the last change), the peak in-flight count
  needed fewer replicas: to ``ceil(peak / target)``, at least ``max(min_replicas, 1)``;
* **to zero** (only with ``min_replicas == 0``) after ``scale_to_zero_delay`` seconds with nothing in
  flight; the next request wakes the deployment (SCALED_TO_ZERO → WAKING_UP → ACTIVE).

A fixed count (``min_replicas == max_replicas``, what ``--replicas N`` sets) never changes on its own.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from trestle.platform.engines.base import LoadMeter, LoadSample, scales_itself
from trestle.platform.store.scaling import MAX_REPLICAS, Autoscaling
from trestle.platform.store.states import DeploymentStatus

__all__ = ["MAX_REPLICAS", "Autoscaler", "Autoscaling", "Decision", "decide"]

if TYPE_CHECKING:
    from trestle.platform.control.controller import Controller

logger = logging.getLogger("trestle.platform")


@dataclasses.dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str


def decide(
    policy: Autoscaling, current: int, samples: Sequence[LoadSample], now: float, last_change: float
) -> Decision | None:
    """The replica count a deployment running ``current`` replicas should have, or None to keep it.

    ``samples`` are the deployment's load readings, oldest first; ``last_change`` is when its count last
    changed (or it started). Pure: same inputs, same answer.
    """
    if current <= 0:
        return None  # scaled to zero: the next request wakes it, not the autoscaler
    if current > policy.max_replicas or current < policy.floor:
        wanted = policy.clamp(current)
        return Decision(wanted, f"the scaling settings allow {policy.floor}-{policy.max_replicas} replicas")
    target = policy.concurrency_target
    window = _window(samples, now - policy.autoscaling_window)
    if len(window) >= 2 and window[-1].at > window[0].at:
        average = (window[-1].busy - window[0].busy) / (window[-1].at - window[0].at)
        if average > target * current + 1e-9:
            wanted = min(policy.max_replicas, math.ceil(average / target - 1e-9))
            if wanted > current:
                return Decision(
                    wanted,
                    f"{average:.2f} requests in flight on average over {policy.autoscaling_window:g}s "
                    f"(target {target:g} per replica)",
                )
    if policy.min_replicas == 0 and _idle_for(samples, now, last_change, policy.scale_to_zero_delay):
        return Decision(0, f"no request for {policy.scale_to_zero_delay:g}s")
    delay = policy.scale_down_delay
    if current > policy.floor and _covers(samples, now, last_change, delay):
        peak = max(s.peak for s in samples if s.at > now - delay)
        wanted = max(policy.floor, math.ceil(peak / target - 1e-9))
        if wanted < current:
            return Decision(
                wanted, f"at most {peak} request(s) in flight over {delay:g}s (target {target:g} per replica)"
            )
    return None


def _window(samples: Sequence[LoadSample], start: float) -> list[LoadSample]:
    """The samples from ``start`` on, plus the last one before it: readings are taken about every
    interval, not exactly, and the window's first reading must not fall just outside it."""
    first = len(samples)
    while first > 0 and samples[first - 1].at > start:
        first -= 1
    return list(itertools.islice(samples, max(0, first - 1), None))


def _covers(samples: Sequence[LoadSample], now: float, last_change: float, span: float) -> bool:
    """Whether the readings go back ``span`` seconds and the count has not changed within them."""
    return bool(samples) and samples[0].at <= now - span + 1e-6 and now - last_change >= span - 1e-6


def _idle_for(samples: Sequence[LoadSample], now: float, last_change: float, span: float) -> bool:
    if not _covers(samples, now, last_change, span):
        return False
    return all(s.peak == 0 for s in samples if s.at > now - span)


@dataclasses.dataclass
class _History:
    meter: LoadMeter
    last_change: float
    samples: collections.deque[LoadSample]


class Autoscaler:
    """Samples every running deployment that may scale and applies ``decide``'s answers."""

    def __init__(self, ctrl: Controller, interval: float = 1.0) -> None:
        self.ctrl = ctrl
        self.interval = interval
        self._history: dict[str, _History] = {}

    def forget(self, deployment_id: str) -> None:
        """Start the deployment's history afresh (its settings or count were just changed by hand)."""
        self._history.pop(deployment_id, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.tick()
            except Exception as exc:  # the loop must outlive any one deployment's trouble
                logger.exception("autoscaler tick failed: %r", exc)

    def tick(self) -> None:
        seen: set[str] = set()
        for dep in self.ctrl.store.deployments():
            if dep.status is not DeploymentStatus.ACTIVE:
                continue
            if scales_itself(self.ctrl.engine, dep.id):
                continue  # the engine scales its replicas itself (Ray Serve) from the settings it was given
            policy = self.ctrl.autoscaling_of(dep)
            rset = self.ctrl.engine.replica_set(dep.id)
            if rset is None or (not policy.autoscales and dep.replicas == policy.min_replicas):
                continue
            seen.add(dep.id)
            reading = rset.meter.sample()
            now = reading.at  # the meter's clock is the one the samples use
            history = self._history.get(dep.id)
            if history is None or history.meter is not rset.meter:
                # (re)started: a fresh meter, a fresh history
                history = self._history[dep.id] = _History(rset.meter, now, collections.deque())
            history.samples.append(reading)
            keep = max(policy.autoscaling_window, policy.scale_down_delay, policy.scale_to_zero_delay)
            samples = history.samples
            while len(samples) > 1 and samples[1].at <= now - keep:
                samples.popleft()
            if self.ctrl.busy(dep.id):
                continue  # a patch or a scale request is changing it
            decision = decide(policy, dep.replicas, samples, now, history.last_change)
            if decision is not None and decision.replicas != dep.replicas:
                history.last_change = now
                self.ctrl.spawn(self.ctrl.autoscale(dep.id, decision.replicas, decision.reason))
        for gone in set(self._history) - seen:
            del self._history[gone]
