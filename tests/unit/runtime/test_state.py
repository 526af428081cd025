from __future__ import annotations

import pytest

from trestle.errors import InvalidTransition
from trestle.runtime.state import TRANSITIONS, Health, ModelState


def test_written_transitions() -> None:
    health = Health()
    assert health.state is ModelState.NOT_READY
    health.move(ModelState.LOADING)
    health.move(ModelState.READY)
    assert health.ready
    health.move(ModelState.STOPPING)
    assert not health.ready


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (ModelState.NOT_READY, ModelState.READY),
        (ModelState.FAILED, ModelState.READY),
        (ModelState.READY, ModelState.LOADING),
        (ModelState.STOPPING, ModelState.READY),
    ],
)
def test_other_transitions_are_refused(start: ModelState, target: ModelState) -> None:
    health = Health()
    health.state = start
    with pytest.raises(InvalidTransition):
        health.move(target)


def test_every_state_has_written_transitions() -> None:
    assert set(TRANSITIONS) == set(ModelState)
