"""Deployment statuses (Truss's names) and the transitions the platform allows.

    BUILDING ──► DEPLOYING ──► LOADING_MODEL ──► ACTIVE ◄──► UNHEALTHY
       │             │               │             │
       ▼             ▼               ▼             ▼
    BUILD_FAILED  DEPLOY_FAILED ◄────┘        SCALED_TO_ZERO ──► WAKING_UP ──► ACTIVE

    DEPLOYING, WAKING_UP ──► WAITING_FOR_RESOURCES ──► LOADING_MODEL
                             (its first replica waits for GPUs; the reason is in the deployment view)

    any status ──► INACTIVE        (trestle deactivate)
    any status ──► BUILDING        (a new push or a requirements patch to the development deployment,
                                    or recovery after a platform restart)

The full table is ``TRANSITIONS``; ``docs/07-platform.md`` renders it.
"""

from __future__ import annotations

import enum

from trestle.platform.errors import Conflict


class DeploymentStatus(str, enum.Enum):
    BUILDING = "BUILDING"
    DEPLOYING = "DEPLOYING"
    LOADING_MODEL = "LOADING_MODEL"
    ACTIVE = "ACTIVE"
    UNHEALTHY = "UNHEALTHY"
    BUILD_FAILED = "BUILD_FAILED"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    SCALED_TO_ZERO = "SCALED_TO_ZERO"
    WAKING_UP = "WAKING_UP"
    WAITING_FOR_RESOURCES = "WAITING_FOR_RESOURCES"
    INACTIVE = "INACTIVE"

    @property
    def in_progress(self) -> bool:
        return self in _IN_PROGRESS

    @property
    def failed(self) -> bool:
        return self in (DeploymentStatus.BUILD_FAILED, DeploymentStatus.DEPLOY_FAILED)

    @property
    def wants_replicas(self) -> bool:
        """Whether replicas should be running (or starting) in this status."""
        return self in (
            DeploymentStatus.DEPLOYING,
            DeploymentStatus.LOADING_MODEL,
            DeploymentStatus.ACTIVE,
            DeploymentStatus.UNHEALTHY,
            DeploymentStatus.WAKING_UP,
            DeploymentStatus.WAITING_FOR_RESOURCES,
        )


S = DeploymentStatus

_IN_PROGRESS = frozenset({S.BUILDING, S.DEPLOYING, S.LOADING_MODEL, S.WAKING_UP, S.WAITING_FOR_RESOURCES})

TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    S.BUILDING: frozenset({S.DEPLOYING, S.BUILD_FAILED}),
    S.DEPLOYING: frozenset({S.LOADING_MODEL, S.DEPLOY_FAILED, S.WAITING_FOR_RESOURCES}),
    S.WAITING_FOR_RESOURCES: frozenset({S.LOADING_MODEL, S.DEPLOY_FAILED}),
    S.LOADING_MODEL: frozenset({S.ACTIVE, S.DEPLOY_FAILED, S.DEPLOYING}),
    S.ACTIVE: frozenset({S.UNHEALTHY, S.SCALED_TO_ZERO, S.DEPLOYING, S.LOADING_MODEL}),
    S.UNHEALTHY: frozenset({S.ACTIVE, S.SCALED_TO_ZERO, S.DEPLOYING, S.LOADING_MODEL}),
    S.BUILD_FAILED: frozenset(),
    S.DEPLOY_FAILED: frozenset({S.DEPLOYING}),
    S.SCALED_TO_ZERO: frozenset({S.WAKING_UP}),
    S.WAKING_UP: frozenset({S.ACTIVE, S.UNHEALTHY, S.DEPLOY_FAILED, S.SCALED_TO_ZERO, S.WAITING_FOR_RESOURCES}),
    S.INACTIVE: frozenset({S.DEPLOYING}),
}
"""Allowed moves besides the two universal ones (to INACTIVE and to BUILDING)."""

_UNIVERSAL = frozenset({S.INACTIVE, S.BUILDING})


def can_transition(old: DeploymentStatus, new: DeploymentStatus) -> bool:
    return new in _UNIVERSAL or new in TRANSITIONS[old]


def check_transition(old: DeploymentStatus, new: DeploymentStatus) -> None:
    if not can_transition(old, new):
        raise Conflict(f"a deployment cannot go from {old.value} to {new.value}")


class DeploymentKind(str, enum.Enum):
    DEVELOPMENT = "development"
    PUBLISHED = "published"


PRODUCTION = "production"
DEVELOPMENT = "development"
