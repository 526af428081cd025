"""The model's health as a state machine.

    NOT_READY ──► LOADING ──► READY ──► STOPPING
                     │          ▲
                     ▼          │ (never: a failed load is final)
                   FAILED ──────┘
                     │
                     └──► STOPPING

Liveness (``GET /``) is 200 in every state. Readiness is 200 only in READY (and then only if
``is_healthy`` agrees). Inference routes answer 503 in every other state.
"""

from __future__ import annotations

import enum

from trestle.errors import InvalidTransition


class ModelState(enum.Enum):
    NOT_READY = "NOT_READY"
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    STOPPING = "STOPPING"


TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    ModelState.NOT_READY: frozenset({ModelState.LOADING, ModelState.STOPPING}),
    ModelState.LOADING: frozenset({ModelState.READY, ModelState.FAILED, ModelState.STOPPING}),
    ModelState.READY: frozenset({ModelState.STOPPING}),
    ModelState.FAILED: frozenset({ModelState.STOPPING}),
    ModelState.STOPPING: frozenset(),
}


class Health:
    """Holds the current state and enforces the written transitions."""

    __slots__ = ("state", "failure")

    def __init__(self) -> None:
        self.state = ModelState.NOT_READY
        self.failure: str | None = None

    def move(self, new: ModelState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY
