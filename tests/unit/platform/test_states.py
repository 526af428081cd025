from __future__ import annotations

import pytest

from trestle.errors import PlatformError
from trestle.platform.errors import Conflict
from trestle.platform.store.states import TRANSITIONS, DeploymentStatus, can_transition, check_transition

S = DeploymentStatus


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(DeploymentStatus)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.BUILDING, S.DEPLOYING),
        (S.BUILDING, S.BUILD_FAILED),
        (S.DEPLOYING, S.LOADING_MODEL),
        (S.LOADING_MODEL, S.ACTIVE),
        (S.LOADING_MODEL, S.DEPLOY_FAILED),
        (S.ACTIVE, S.UNHEALTHY),
        (S.UNHEALTHY, S.ACTIVE),
        (S.ACTIVE, S.SCALED_TO_ZERO),
        (S.SCALED_TO_ZERO, S.WAKING_UP),
        (S.WAKING_UP, S.ACTIVE),
        (S.INACTIVE, S.DEPLOYING),
    ],
)
def test_allowed(old: DeploymentStatus, new: DeploymentStatus) -> None:
    assert can_transition(old, new)


@pytest.mark.parametrize("old", list(DeploymentStatus))
def test_deactivate_and_rebuild_from_anywhere(old: DeploymentStatus) -> None:
    assert can_transition(old, S.INACTIVE)
    assert can_transition(old, S.BUILDING)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.BUILDING, S.ACTIVE),
        (S.BUILD_FAILED, S.ACTIVE),
        (S.SCALED_TO_ZERO, S.ACTIVE),
        (S.INACTIVE, S.ACTIVE),
        (S.DEPLOY_FAILED, S.ACTIVE),
    ],
)
def test_refused(old: DeploymentStatus, new: DeploymentStatus) -> None:
    assert not can_transition(old, new)
    with pytest.raises(PlatformError) as info:
        check_transition(old, new)
    assert isinstance(info.value, Conflict)
    assert old.value in info.value.message


def test_properties() -> None:
    assert S.BUILDING.in_progress
    assert not S.ACTIVE.in_progress
    assert S.BUILD_FAILED.failed
    assert S.DEPLOY_FAILED.failed
    assert not S.UNHEALTHY.failed
    assert S.ACTIVE.wants_replicas
    assert not S.SCALED_TO_ZERO.wants_replicas
