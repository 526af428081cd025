"""Server-sent events framing (``text/event-stream``), JSON payloads encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["DONE", "MEDIA_TYPE", "STREAM_HEADERS", "data", "event"]

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# No caching, and no buffering by proxies (nginx honours X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def data(payload: Any) -> bytes:
    """An unnamed event: ``data: {json}\\n\\n`` (OpenAI chat completions and completions)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event(name: str, payload: Any) -> bytes:
    """A named event: ``event: name\\ndata: {json}\\n\\n`` (Responses and Anthropic Messages)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
