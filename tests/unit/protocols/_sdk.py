"""Feed bytes to the official SDKs' own clients and stream parsers (over an httpx mock transport)."""

from __future__ import annotations

from collections.abc import Iterable

import anthropic
import httpx
import openai

from trestle.protocols import DeltaLike, StreamEncoder, Usage


def _transport(body: bytes, status: int, content_type: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return httpx.MockTransport(handler)


def openai_client(body: bytes, *, status: int = 200, content_type: str = "text/event-stream") -> openai.OpenAI:
    http = httpx.Client(transport=_transport(body, status, content_type))
    return openai.OpenAI(base_url="http://test/v1", api_key="unused", http_client=http, max_retries=0)


def anthropic_client(body: bytes, *, status: int = 200, content_type: str = "text/event-stream") -> anthropic.Anthropic:
    http = httpx.Client(transport=_transport(body, status, content_type))
    return anthropic.Anthropic(base_url="http://test", api_key="unused", http_client=http, max_retries=0)


def _body(encoder: StreamEncoder, deltas: Iterable[DeltaLike]) -> bytes:
    # As ``encode_stream`` does: a leading Usage is fed before the preamble, which reports it.
    items = list(deltas)
    head = b""
    if items and isinstance(items[0], Usage):
        head = encoder.feed(items.pop(0))
    return head + encoder.start() + b"".join(encoder.feed(d) for d in items)


def encode(encoder: StreamEncoder, deltas: Iterable[DeltaLike]) -> bytes:
    """A whole successful stream: preamble, one frame group per delta, closing frames."""
    return _body(encoder, deltas) + encoder.close()


def encode_failing(encoder: StreamEncoder, deltas: Iterable[DeltaLike], message: str, status: int = 500) -> bytes:
    """A stream that fails after ``deltas``."""
    return _body(encoder, deltas) + encoder.fail(message, status)


def frames(body: bytes) -> list[tuple[str | None, str]]:
    """Split an SSE body into ``(event name, data)`` pairs, checking the framing on the way."""
    assert body.endswith(b"\n\n"), body[-40:]
    out: list[tuple[str | None, str]] = []
    for raw in body.decode().split("\n\n")[:-1]:
        name: str | None = None
        data: str | None = None
        for line in raw.split("\n"):
            field, _, value = line.partition(": ")
            assert field in ("event", "data"), f"unexpected SSE line {line!r}"
            if field == "event":
                name = value
            else:
                assert data is None, "one data line per event"
                data = value
        assert data is not None
        out.append((name, data))
    return out
