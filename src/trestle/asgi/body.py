"""Read an ASGI request body once, with a size limit."""

from __future__ import annotations

from trestle._types import Receive
from trestle.errors import ClientDisconnected, PayloadTooLarge


def too_large_message(size: int, limit: int, *, streamed: bool = False, setting: str | None = None) -> str:
    seen = "more than " if streamed else ""
    named = f" ({setting})" if setting else ""
    return f"Request body is too large: {seen}{size} bytes, the limit is {limit} bytes{named}."


async def read_body(receive: Receive, limit: int, content_length: int = -1, setting: str | None = None) -> bytes:
    """The whole body of an HTTP request.

    Raises :class:`PayloadTooLarge` when ``content_length`` (-1: not sent) or the bytes received
    pass ``limit`` (the message names ``setting``, the option that sets the limit), and
    :class:`ClientDisconnected` when the client leaves first. One message with the whole body,
    the common case, costs one ``receive()`` and no copy.
    """
    if content_length > limit:
        raise PayloadTooLarge(too_large_message(content_length, limit, setting=setting))
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        if len(body) > limit:
            raise PayloadTooLarge(too_large_message(len(body), limit, streamed=True, setting=setting))
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large_message(size, limit, streamed=True, setting=setting))
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
