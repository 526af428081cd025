"""Logging: every line of a request carries its request id."""

from __future__ import annotations

import contextvars
import logging
import os
import sys

from trestle.errors import StreamAborted

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("trestle_request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _DropHandledAborts(logging.Filter):
    """uvicorn logs "Exception in ASGI application" when we cut a failed stream on purpose;
    Trestle has already logged it with the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StreamAborted)


FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def configure(level: int = logging.INFO, *, logger: str = "") -> None:
    """Trestle's log format on stderr for the root logger, or only for ``logger`` (which then stops
    propagating): a Ray Serve replica keeps Ray's own handlers on the root."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger(logger or None)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if logger:
        root.propagate = False
    logging.getLogger("uvicorn.error").addFilter(_DropHandledAborts())
    if os.environ.get("TRESTLE_DEBUG"):
        root.setLevel(logging.DEBUG)
