"""The one place where errors become HTTP responses.

Every error body is ``{"error": <message>}`` (Truss's format) with the headers
``X-BASETEN-ERROR-SOURCE: 04`` and ``X-BASETEN-ERROR-CODE`` (500 unexpected, 600 model or server
side, 700 client side), plus ``content-length`` and ``x-baseten-request-id`` when sent.
"""

from __future__ import annotations

import logging
import traceback

import orjson
from starlette.exceptions import HTTPException

from trestle._types import Send
from trestle.errors import ModelNotReady, RequestError
from trestle.runtime import Health, ModelState

logger = logging.getLogger("trestle.http")

ERROR_SOURCE = b"04"
CODE_UNEXPECTED = 500
CODE_SERVER = 600
CODE_CLIENT = 700

_CODE_BYTES = {code: str(code).encode() for code in (CODE_UNEXPECTED, CODE_SERVER, CODE_CLIENT)}


def error_headers(code: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-baseten-error-source", ERROR_SOURCE),
        (b"x-baseten-error-code", _CODE_BYTES.get(code) or str(code).encode()),
    ]


class ErrorResponse:
    """A fully rendered error: status, JSON body and headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def render(
    status: int, message: object, code: int, extra: dict[str, str] | None = None, **fields: object
) -> ErrorResponse:
    body = orjson.dumps({"error": message, **fields})
    headers = [(b"content-type", b"application/json"), *error_headers(code)]
    if extra:
        headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
    return ErrorResponse(status, body, headers)


def from_exception(exc: BaseException, *, dev: bool = False) -> ErrorResponse:
    """Map any exception to the response Truss would give (plus Trestle's improvements)."""
    if isinstance(exc, RequestError):
        fields: dict[str, object] = {}
        if dev and exc.__cause__ is not None:
            cause = exc.__cause__
            fields["detail"] = f"{type(cause).__name__}: {cause}"
        return render(exc.status, exc.message, exc.code, exc.headers, **fields)
    if isinstance(exc, HTTPException):  # raised by model code (fastapi's is a subclass): passes through
        return render(exc.status_code, exc.detail, CODE_SERVER, dict(exc.headers or {}))
    logger.exception("Unhandled exception", exc_info=exc)
    return render(500, f"Unhandled exception: {type(exc).__name__}: {exc}", CODE_UNEXPECTED)


def not_ready(health: Health) -> ErrorResponse:
    """503 saying why the model cannot serve: loading, failed or stopping."""
    if health.state is ModelState.FAILED:
        return render(503, f"Model failed to load: {health.failure}", CODE_SERVER)
    if health.state is ModelState.STOPPING:
        return render(503, "Model server is shutting down.", CODE_SERVER)
    return render(503, ModelNotReady().message, CODE_SERVER)


def hot_reload_failed(exc: BaseException) -> ErrorResponse:
    """422 for a reload whose new code did not import or validate; the old code keeps serving."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return render(422, f"{type(exc).__name__}: {exc}", CODE_CLIENT, traceback=trace)


async def send_error(send: Send, err: ErrorResponse, rid: bytes) -> None:
    headers = [*err.headers, (b"content-length", str(len(err.body)).encode()), (b"x-baseten-request-id", rid)]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": err.body})


NOT_FOUND = render(404, "Not Found", CODE_CLIENT)
METHOD_NOT_ALLOWED = render(405, "Method Not Allowed", CODE_CLIENT)
UNHEALTHY = render(503, "Model is not healthy.", CODE_SERVER)
SCHEMA_NOT_READY = render(503, "Schema not available, please try again later.", CODE_SERVER)
NO_SCHEMA = render(404, "No schema found", CODE_SERVER)
