"""What a model's generation method yields: text, tool-call fragments, usage and a finish reason.

A generation is a sequence of deltas. Plain ``str`` items are accepted as text. Tool-call
fragments that share an ``index`` belong to one call; the first fragment of a call should carry
its ``name`` (and may carry an ``id``), later ones append to ``arguments`` (a JSON text).
``Usage`` may be yielded any number of times (first, to report prompt tokens early; last, to
report completion tokens): later values override earlier ones field by field. ``Finish`` is
optional; without it the reason is ``tool_calls`` when a tool was called and ``stop`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import orjson

__all__ = [
    "Delta",
    "DeltaLike",
    "Finish",
    "FinishReason",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "tool_call",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call. Fragments with the same ``index`` must be contiguous."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts. ``None`` means "not reported by this delta"."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """Why generation ended. ``stop_sequence`` names the stop string that ended it, if any."""

    reason: FinishReason = "stop"
    stop_sequence: str | None = None


Delta = TextDelta | ToolCallDelta | Usage | Finish
DeltaLike = Delta | str


def tool_call(
    name: str, arguments: Mapping[str, object] | str = "", *, index: int = 0, id: str | None = None
) -> ToolCallDelta:
    """A complete tool call in one delta; ``arguments`` may be a mapping (encoded as JSON)."""
    if not isinstance(arguments, str):
        arguments = orjson.dumps(dict(arguments)).decode()
    return ToolCallDelta(index=index, id=id, name=name, arguments=arguments)
