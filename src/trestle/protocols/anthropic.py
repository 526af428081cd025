"""Pydantic types for the Anthropic Messages API (``POST /v1/messages``).

Requests type the fields Trestle reads and let everything else through (``extra="allow"``);
content blocks are kept as dicts so block types Trestle does not know (images, documents,
thinking, ...) survive parsing. Responses mirror what the official ``anthropic`` SDK parses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "InputMessage",
    "Message",
    "MessagesRequest",
    "StopReason",
    "TextBlock",
    "Tool",
    "ToolUseBlock",
    "Usage",
]

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests -----------------------------------------------------------------------------------


class InputMessage(_Model):
    """A turn. ``content`` is a string or a list of blocks (``text``, ``tool_use``, ``tool_result``, ...)."""

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class Tool(_Model):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class MessagesRequest(_Model):
    model: str = ""
    max_tokens: int
    messages: list[InputMessage]
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[Tool] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


# --- responses ----------------------------------------------------------------------------------


class TextBlock(_Model):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(_Model):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class Usage(_Model):
    input_tokens: int
    output_tokens: int


class Message(_Model):
    """A complete assistant message (the non-streaming response body)."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


class ErrorBody(_Model):
    type: str
    message: str


class ErrorResponse(_Model):
    """``{"type": "error", "error": {...}}``: an error response body and the ``event: error`` payload."""

    type: Literal["error"] = "error"
    error: ErrorBody
