"""The one place where the platform's errors become HTTP answers (``{"error": ...}`` bodies)."""

from __future__ import annotations

from typing import Any

from trestle.errors import PlatformError
from trestle.platform.control.patching import PatchFailed, PatchRefused
from trestle.platform.engines.builder import BuildFailed
from trestle.platform.errors import Conflict, Forbidden, InvalidRequest, NotFound, TooLarge, Unavailable

HTTP_STATUS: dict[type[PlatformError], int] = {
    PatchRefused: 409,
    PatchFailed: 422,
    BuildFailed: 500,
    InvalidRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unavailable: 503,
}


def http_status(exc: PlatformError) -> int:
    """The HTTP status for a platform error: by its class, else the status it was raised with."""
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return exc.status


def error_body(exc: PlatformError) -> dict[str, Any]:
    if isinstance(exc, PatchFailed):
        return exc.body()
    return {"error": exc.message}
