"""A deployment's scaling settings (Baseten's names, ranges and defaults): one value type that the
store keeps, the control plane's autoscaler applies and every engine maps (``ReplicaSpec.scaling``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from trestle.platform.errors import InvalidRequest

MAX_REPLICAS = 64
"""A guard against typos (``--replicas 1000``) on a single host."""


@dataclasses.dataclass(frozen=True)
class Autoscaling:
    """A deployment's scaling settings (Baseten's names)."""

    min_replicas: int = 1
    max_replicas: int = 1
    concurrency_target: float = 1.0
    """In-flight requests per replica the autoscaler aims for."""
    autoscaling_window: float = 60.0
    """Seconds of load averaged for scaling up."""
    scale_down_delay: float = 900.0
    """Seconds of lower load (and since the last change) before scaling down."""
    scale_to_zero_delay: float = 1800.0
    """Seconds with nothing in flight before scaling to zero (with ``min_replicas == 0``)."""

    @classmethod
    def default(cls, *, development: bool) -> Autoscaling:
        """One replica; a development deployment scales to zero when idle (as on Baseten)."""
        return cls(min_replicas=0) if development else cls()

    @classmethod
    def fixed(cls, replicas: int, base: Autoscaling | None = None) -> Autoscaling:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise InvalidRequest(f"replicas must be between 1 and {MAX_REPLICAS} (to stop a deployment, deactivate it)")
        return dataclasses.replace(base or cls(), min_replicas=replicas, max_replicas=replicas).validated()

    @property
    def autoscales(self) -> bool:
        """Whether the replica count can change on its own (a range, or scale to zero)."""
        return self.min_replicas != self.max_replicas or self.min_replicas == 0

    @property
    def floor(self) -> int:
        """The fewest replicas while the deployment is up."""
        return max(1, self.min_replicas)

    def clamp(self, replicas: int) -> int:
        return min(self.max_replicas, max(self.floor, replicas))

    def validated(self) -> Autoscaling:
        if not 0 <= self.min_replicas <= MAX_REPLICAS:
            raise InvalidRequest(f"min_replicas must be between 0 and {MAX_REPLICAS}")
        if not 1 <= self.max_replicas <= MAX_REPLICAS:
            raise InvalidRequest(f"max_replicas must be between 1 and {MAX_REPLICAS}")
        if self.min_replicas > self.max_replicas:
            raise InvalidRequest(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        for name in ("concurrency_target", "autoscaling_window", "scale_down_delay", "scale_to_zero_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidRequest(f"{name} must be a positive number of {_UNIT[name]}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> Autoscaling:
        """These settings with ``changes`` applied (unknown keys and wrong types are 400s), validated."""
        fields = {field.name for field in dataclasses.fields(self)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise InvalidRequest(f"unknown scaling setting {name!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidRequest(f"{name} must be a number")
            if name.endswith("_replicas"):
                if value != int(value):
                    raise InvalidRequest(f"{name} must be a whole number")
                value = int(value)
            else:
                value = float(value)
            values[name] = value
        return dataclasses.replace(self, **values).validated()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, development: bool) -> Autoscaling:
        """Stored settings; missing keys take the defaults (rows written before a setting existed)."""
        base = cls.default(development=development)
        known = {field.name for field in dataclasses.fields(cls)}
        return dataclasses.replace(base, **{k: v for k, v in data.items() if k in known})


_UNIT = {
    "concurrency_target": "requests",
    "autoscaling_window": "seconds",
    "scale_down_delay": "seconds",
    "scale_to_zero_delay": "seconds",
}
