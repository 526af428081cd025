"""The platform's domain errors and the one place that maps them to HTTP."""

from __future__ import annotations

import pytest

from trestle.errors import PlatformError
from trestle.platform.control.patching import PatchFailed, PatchRefused
from trestle.platform.edge.errors import error_body, http_status
from trestle.platform.engines.builder import BuildFailed
from trestle.platform.errors import Conflict, InvalidRequest, NotFound, TooLarge, Unavailable


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequest("bad"), 400),
        (NotFound("gone"), 404),
        (Conflict("busy"), 409),
        (TooLarge("big"), 413),
        (Unavailable("down"), 503),
        (PatchFailed("failed", kind="hot_reload_failed"), 422),
        (PatchRefused("needs a push", kind="needs_full_deploy"), 409),
        (BuildFailed("uv failed"), 500),
        (PlatformError("raised with a status", status=418), 418),
    ],
)
def test_each_error_has_one_http_status(error: PlatformError, status: int) -> None:
    assert http_status(error) == status


def test_bodies_are_error_objects_and_patch_failures_add_their_kind() -> None:
    assert error_body(NotFound("no deployment")) == {"error": "no deployment"}
    body = error_body(PatchFailed("boom", kind="hot_reload_failed", traceback="tb"))
    assert body == {"error": "boom", "type": "hot_reload_failed", "traceback": "tb"}
