"""The platform's domain errors, under ``trestle.errors.PlatformError``.

The platform's layers raise these by what went wrong, not by HTTP status; the control API maps them
to HTTP in one place (``trestle.platform.edge.errors``)::

    PlatformError
    ├── InvalidRequest      the request or the truss it names is malformed or not allowed
    ├── Forbidden           the request's API key may not do this
    ├── NotFound            no model, deployment or artifact with that id or name
    ├── Conflict            the deployment's state does not allow it now (or a patch is stale)
    ├── TooLarge            an upload over the size limit
    └── Unavailable         an engine or a cluster could not be reached or could not run it
"""

from __future__ import annotations

from trestle.errors import PlatformError

__all__ = ["Conflict", "Forbidden", "InvalidRequest", "NotFound", "PlatformError", "TooLarge", "Unavailable"]


class InvalidRequest(PlatformError):
    """The request, or the truss it names, is malformed or not allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Forbidden(PlatformError):
    """The request's API key may not do this (its type does not allow it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotFound(PlatformError):
    """No model, deployment or artifact with that id or name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Conflict(PlatformError):
    """The deployment's current state does not allow the change (or the change is stale)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TooLarge(PlatformError):
    """An upload over the size limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Unavailable(PlatformError):
    """An engine (or the cluster behind it) could not be reached or could not run the deployment."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
