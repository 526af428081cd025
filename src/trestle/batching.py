"""``trestle.batched``: mark a model method as written for a list of inputs.

Callers still send one request each; the runtime's :class:`~trestle.runtime.batcher.Batcher`
gathers concurrent requests into one call of the method and hands each caller its own result
(``docs/03-runtime.md``, "Dynamic batching"). This module only holds the settings and the
decorator, imports no layer of Trestle, and so model code and ``trestle.protocols`` can use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

BATCH_ATTRIBUTE = "__trestle_batching__"


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """How one method is batched.

    ``max_batch_size``: the most requests in one call. ``max_wait_ms``: how long a request that
    arrived while the model was busy may wait for companions once a batch slot is free (a request
    that arrives while the model is idle runs at once). ``max_concurrent_batches``: batches in
    progress at the same time. ``weight``: an optional function of one input (for example its
    token count); with ``max_batch_weight`` it caps a batch by the sum of its inputs' weights as
    well as by count (an input heavier than the cap runs alone).
    """

    max_batch_size: int
    max_wait_ms: float = 5.0
    max_concurrent_batches: int = 1
    weight: Callable[[Any], float] | None = None
    max_batch_weight: float | None = None

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size)
        _check_int("max_concurrent_batches", self.max_concurrent_batches)
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)):
            raise TypeError(f"max_wait_ms must be a number of milliseconds, got {self.max_wait_ms!r}")
        if not math.isfinite(self.max_wait_ms) or self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if self.weight is not None and not callable(self.weight):
            raise TypeError(f"weight must be a function of one input, got {self.weight!r}")
        if self.max_batch_weight is not None:
            if isinstance(self.max_batch_weight, bool) or not isinstance(self.max_batch_weight, (int, float)):
                raise TypeError(f"max_batch_weight must be a number, got {self.max_batch_weight!r}")
            if not self.max_batch_weight > 0:
                raise ValueError(f"max_batch_weight must be > 0, got {self.max_batch_weight!r}")
        if (self.weight is None) != (self.max_batch_weight is None):
            raise ValueError("weight and max_batch_weight go together: give both or neither")

    def with_overrides(self, **overrides: Any) -> BatchSpec:
        """This spec with the given non-None values replaced (``runtime.batching`` in config.yaml)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **changes) if changes else self


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


def batched(
    max_batch_size: int,
    max_wait_ms: float = 5.0,
    max_concurrent_batches: int = 1,
    weight: Callable[[Any], float] | None = None,
    max_batch_weight: float | None = None,
) -> Callable[[F], F]:
    """Batch concurrent requests into one call of the decorated method.

    The method (sync or ``async def``) takes a list of inputs and returns a list of results of
    the same length, in the same order. An exception object in place of a result fails only that
    request. ``predict``, ``preprocess``/``postprocess`` and the ``/v1`` methods keep their
    per-request meaning for callers; ``runtime.batching`` in config.yaml overrides these values.
    """
    spec = BatchSpec(max_batch_size, max_wait_ms, max_concurrent_batches, weight, max_batch_weight)

    def mark(fn: F) -> F:
        if isinstance(fn, (staticmethod, classmethod)) or not callable(fn):
            raise TypeError("@trestle.batched decorates a plain (sync or async) method")
        setattr(fn, BATCH_ATTRIBUTE, spec)
        return fn

    return mark


def batch_spec(fn: Any) -> BatchSpec | None:
    """The spec a method was decorated with, or None (a bound method reads its function's)."""
    spec = getattr(getattr(fn, "__func__", fn), BATCH_ATTRIBUTE, None)
    return spec if isinstance(spec, BatchSpec) else None
