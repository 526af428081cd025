"""Non-streaming response bodies for each protocol, built from a finished ``Generation``.

Each builder returns a plain dict (ready for orjson) in exactly the shape the official SDKs parse:
``chat.completion``, ``text_completion``, the embeddings ``list``, the Responses ``response`` and
the Anthropic ``message``. The stream encoders reuse the object builders for their snapshots.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from trestle.protocols._ids import new_id
from trestle.protocols.deltas import FinishReason
from trestle.protocols.state import CallBlock, Generation, TextBlock

__all__ = [
    "anthropic_stop_reason",
    "anthropic_usage",
    "chat_completion",
    "chat_usage",
    "completion",
    "embeddings",
    "message",
    "response_object",
    "response_output",
    "response_usage",
    "responses_status",
]

ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _now() -> int:
    return int(time.time())


# --- OpenAI chat completions and completions ----------------------------------------------------


def chat_usage(gen: Generation) -> dict[str, int]:
    prompt, completion_tokens = gen.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def chat_completion(
    gen: Generation, *, model: str, id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object. ``content`` is null when the reply is only tool calls."""
    calls = gen.tool_calls
    text = gen.text
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return {
        "id": id or new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": created if created is not None else _now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": gen.finish_reason}],
        "usage": chat_usage(gen),
        "system_fingerprint": None,
    }


def completion_finish_reason(reason: FinishReason) -> str:
    if reason == "tool_calls":
        raise ValueError("A completions response cannot carry tool calls")
    return reason


def completion(gen: Generation, *, model: str, id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """A ``text_completion`` object."""
    if gen.tool_calls:
        raise ValueError("A completions response cannot carry tool calls")
    finish_reason = completion_finish_reason(gen.finish_reason)
    return {
        "id": id or new_id("cmpl-"),
        "object": "text_completion",
        "created": created if created is not None else _now(),
        "model": model,
        "choices": [{"index": 0, "text": gen.text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": chat_usage(gen),
        "system_fingerprint": None,
    }


# --- OpenAI embeddings --------------------------------------------------------------------------


def _floats(vector: Any) -> list[float]:
    if hasattr(vector, "tolist"):  # numpy arrays and torch tensors
        vector = vector.tolist()
    return [float(x) for x in vector]


def embeddings(
    vectors: Sequence[Any],
    *,
    model: str,
    encoding_format: Literal["float", "base64"] = "float",
    prompt_tokens: int = 0,
) -> dict[str, Any]:
    """The embeddings ``list``. ``base64`` packs each vector as little-endian float32, as OpenAI does."""
    data: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors):
        floats = _floats(vector)
        encoded: list[float] | str = floats
        if encoding_format == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# --- OpenAI Responses ---------------------------------------------------------------------------


def responses_status(reason: FinishReason) -> tuple[str, dict[str, str] | None]:
    """``(status, incomplete_details)`` of a finished response."""
    if reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_usage(gen: Generation) -> dict[str, Any]:
    prompt, completion_tokens = gen.usage
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion_tokens,
    }


def response_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_item(block: TextBlock | CallBlock, item_id: str, status: ItemStatus) -> dict[str, Any]:
    """One output item: a ``message`` for a text block, a ``function_call`` for a tool call."""
    if isinstance(block, TextBlock):
        content = [response_text_part(block.text)] if status != "in_progress" else []
        return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": block.id,
        "name": block.name,
        "arguments": block.arguments if status != "in_progress" else "",
        "status": status,
    }


def response_output(gen: Generation, item_ids: Mapping[int, str], *, final_status: ItemStatus) -> list[dict[str, Any]]:
    """All output items; the last one gets ``final_status`` (``incomplete`` when cut short)."""
    blocks = gen.blocks
    return [
        response_item(b, item_ids[b.index], final_status if i == len(blocks) - 1 else "completed")
        for i, b in enumerate(blocks)
    ]


def item_id_for(block: TextBlock | CallBlock) -> str:
    return new_id("msg_" if isinstance(block, TextBlock) else "fc_")


def response_object(
    *,
    id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    incomplete_details: dict[str, str] | None = None,
    echo: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Responses ``response`` object. ``echo`` holds request fields a response repeats."""
    echo = echo or {}
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True) is not False,
        "previous_response_id": echo.get("previous_response_id"),
        "temperature": echo.get("temperature"),
        "top_p": echo.get("top_p"),
        "tool_choice": echo.get("tool_choice") or "auto",
        "tools": list(echo.get("tools") or []),
        "metadata": dict(echo.get("metadata") or {}),
        "text": {"format": {"type": "text"}},
        "usage": usage,
    }


def response(gen: Generation, *, model: str, echo: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A finished (non-streaming) Responses ``response``."""
    status, incomplete = responses_status(gen.finish_reason)
    ids = {b.index: item_id_for(b) for b in gen.blocks}
    return response_object(
        id=new_id("resp_"),
        model=model,
        created_at=_now(),
        status=status,
        output=response_output(gen, ids, final_status="incomplete" if incomplete else "completed"),
        usage=response_usage(gen),
        incomplete_details=incomplete,
        echo=echo,
    )


# --- Anthropic Messages -------------------------------------------------------------------------


def anthropic_stop_reason(gen: Generation) -> str:
    reason = gen.finish_reason
    if reason == "length":
        return "max_tokens"
    if reason == "tool_calls":
        return "tool_use"
    if reason == "content_filter":
        return "refusal"
    return "stop_sequence" if gen.stop_sequence else "end_turn"


def anthropic_usage(gen: Generation) -> dict[str, int]:
    prompt, completion_tokens = gen.usage
    return {"input_tokens": prompt, "output_tokens": completion_tokens}


def tool_input(arguments: str) -> dict[str, Any]:
    value = orjson.loads(arguments) if arguments.strip() else {}
    if not isinstance(value, dict):
        raise ValueError(f"Tool-call arguments must be a JSON object, got {arguments!r}")
    return value


def message(gen: Generation, *, model: str, id: str | None = None) -> dict[str, Any]:
    """An Anthropic ``message``."""
    content: list[dict[str, Any]] = []
    for b in gen.blocks:
        if isinstance(b, TextBlock):
            content.append({"type": "text", "text": b.text})
        else:
            content.append({"type": "tool_use", "id": b.id, "name": b.name, "input": tool_input(b.arguments)})
    return {
        "id": id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": anthropic_stop_reason(gen),
        "stop_sequence": gen.stop_sequence,
        "usage": anthropic_usage(gen),
    }
