from __future__ import annotations

import orjson
from fastapi import HTTPException

from trestle.errors import InputParsingError, Overloaded, UserCodeError
from trestle.http import errors


def headers(err: errors.ErrorResponse) -> dict[bytes, bytes]:
    return dict(err.headers)


def test_request_errors_map_to_status_body_and_code() -> None:
    err = errors.from_exception(InputParsingError("bad"))
    assert (err.status, orjson.loads(err.body)) == (400, {"error": "bad"})
    assert headers(err)[b"x-baseten-error-code"] == b"700"
    assert headers(err)[b"x-baseten-error-source"] == b"04"


def test_overloaded_carries_retry_after() -> None:
    err = errors.from_exception(Overloaded("full", retry_after=3))
    assert err.status == 429
    assert headers(err)[b"retry-after"] == b"3"


def test_user_http_exception_passes_through_with_its_headers() -> None:
    err = errors.from_exception(HTTPException(status_code=409, detail={"why": "conflict"}, headers={"X-A": "b"}))
    assert err.status == 409
    assert orjson.loads(err.body) == {"error": {"why": "conflict"}}
    assert headers(err)[b"x-a"] == b"b"


def test_user_code_error_hides_the_message_unless_dev() -> None:
    exc = UserCodeError()
    exc.__cause__ = ValueError("secret detail")
    assert orjson.loads(errors.from_exception(exc).body) == {"error": "Internal Server Error (in model/chainlet)."}
    dev = orjson.loads(errors.from_exception(exc, dev=True).body)
    assert dev["detail"] == "ValueError: secret detail"


def test_unexpected_exceptions_are_500_with_code_500() -> None:
    err = errors.from_exception(TypeError("boom"))
    assert err.status == 500
    assert orjson.loads(err.body) == {"error": "Unhandled exception: TypeError: boom"}
    assert headers(err)[b"x-baseten-error-code"] == b"500"
