"""Stream encoders: deltas in, exact wire bytes out (sans-IO).

An encoder is driven in four steps: ``start()`` (the preamble), ``feed(delta)`` for each delta,
then ``close()`` (finish reason, usage, terminator) or, when generation failed part-way,
``fail(message, status)`` (the protocol's own error frame). Each step returns the bytes to send,
possibly empty. A ``Usage`` fed before ``start()`` is reported in the preamble (Anthropic's
``message_start`` carries the prompt tokens). ``trestle.protocols.streaming`` runs encoders over
sync or async iterators and does exactly that with a leading ``Usage``.

Wire formats:

- chat completions: ``data: {chat.completion.chunk}`` frames, then ``data: [DONE]``; with
  ``include_usage`` every chunk has ``"usage": null`` and a last chunk with empty ``choices``
  carries the usage.
- completions: ``data: {text_completion}`` frames, then ``data: [DONE]``.
- Responses: named events with ``sequence_number``, ``response.created`` to ``response.completed``
  (``response.incomplete`` when cut short, ``response.failed`` plus ``error`` on failure).
- Anthropic Messages: ``message_start``, ``ping``, ``content_block_*``, ``message_delta``,
  ``message_stop``; ``event: error`` on failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from trestle.protocols import builders, sse
from trestle.protocols._ids import new_id
from trestle.protocols.deltas import DeltaLike
from trestle.protocols.generation import Protocol
from trestle.protocols.state import BlockEvent, CallBlock, Generation, TextBlock

__all__ = [
    "ChatCompletionsEncoder",
    "CompletionsEncoder",
    "MessagesEncoder",
    "ResponsesEncoder",
    "StreamEncoder",
]


class StreamEncoder:
    """Base class: owns the ``Generation`` and turns its block events into frames."""

    protocol: ClassVar[Protocol]
    call_id_prefix: ClassVar[str] = "call_"

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.generation = Generation(call_id_prefix=self.call_id_prefix)

    def start(self) -> bytes:
        return b""

    def feed(self, delta: DeltaLike) -> bytes:
        events = self.generation.add(delta)
        return b"".join([self.on_event(e) for e in events]) if events else b""

    def close(self) -> bytes:
        closing = b"".join([self.on_event(e) for e in self.generation.close()])
        return closing + self.finish()

    def on_event(self, event: BlockEvent) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def fail(self, message: str, status: int = 500) -> bytes:
        raise NotImplementedError


def _openai_error_type(status: int) -> str:
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


class ChatCompletionsEncoder(StreamEncoder):
    protocol: ClassVar[Protocol] = "chat.completions"

    def __init__(
        self, *, model: str, include_usage: bool = False, id: str | None = None, created: int | None = None
    ) -> None:
        super().__init__(model=model)
        self.include_usage = include_usage
        self.id = id or new_id("chatcmpl-")
        self.created = created if created is not None else int(time.time())

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = self._head()
        chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        if self.include_usage:
            chunk["usage"] = None
        return sse.data(chunk)

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def on_event(self, event: BlockEvent) -> bytes:
        block = event.block
        if isinstance(block, TextBlock):
            return self._chunk({"content": event.piece}) if event.kind == "append" else b""
        if event.kind == "open":
            call = {"index": block.call_index, "id": block.id, "type": "function"}
            call["function"] = {"name": block.name, "arguments": ""}
            return self._chunk({"tool_calls": [call]})
        if event.kind == "append":
            return self._chunk({"tool_calls": [{"index": block.call_index, "function": {"arguments": event.piece}}]})
        return b""

    def finish(self) -> bytes:
        out = self._chunk({}, self.generation.finish_reason)
        if self.include_usage:
            out += sse.data({**self._head(), "choices": [], "usage": builders.chat_usage(self.generation)})
        return out + sse.DONE

    def fail(self, message: str, status: int = 500) -> bytes:
        error = {"message": message, "type": _openai_error_type(status), "param": None, "code": None}
        return sse.data({"error": error}) + sse.DONE


class CompletionsEncoder(ChatCompletionsEncoder):
    protocol: ClassVar[Protocol] = "completions"

    def __init__(
        self, *, model: str, include_usage: bool = False, id: str | None = None, created: int | None = None
    ) -> None:
        super().__init__(model=model, include_usage=include_usage, id=id or new_id("cmpl-"), created=created)

    def _head(self) -> dict[str, Any]:
        head = super()._head()
        head["object"] = "text_completion"
        return head

    def _text_chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        chunk = self._head()
        chunk["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
        if self.include_usage:
            chunk["usage"] = None
        return sse.data(chunk)

    def start(self) -> bytes:
        return b""

    def on_event(self, event: BlockEvent) -> bytes:
        if isinstance(event.block, CallBlock):
            raise ValueError("A completions stream cannot carry tool calls")
        return self._text_chunk(event.piece) if event.kind == "append" else b""

    def finish(self) -> bytes:
        out = self._text_chunk("", builders.completion_finish_reason(self.generation.finish_reason))
        if self.include_usage:
            out += sse.data({**self._head(), "choices": [], "usage": builders.chat_usage(self.generation)})
        return out + sse.DONE


class ResponsesEncoder(StreamEncoder):
    protocol = "responses"

    def __init__(
        self,
        *,
        model: str,
        echo: Mapping[str, Any] | None = None,
        id: str | None = None,
        created_at: int | None = None,
    ) -> None:
        super().__init__(model=model)
        self.echo = dict(echo or {})
        self.id = id or new_id("resp_")
        self.created_at = created_at if created_at is not None else int(time.time())
        self.sequence_number = 0
        self.item_ids: dict[int, str] = {}
        self._final_status: builders.ItemStatus = "completed"

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        body = {"type": name, "sequence_number": self.sequence_number, **payload}
        self.sequence_number += 1
        return sse.event(name, body)

    def _snapshot(self, status: str, **fields: Any) -> dict[str, Any]:
        return builders.response_object(
            id=self.id, model=self.model, created_at=self.created_at, status=status, echo=self.echo, **fields
        )

    def start(self) -> bytes:
        return self._event("response.created", {"response": self._snapshot("in_progress", output=[])}) + self._event(
            "response.in_progress", {"response": self._snapshot("in_progress", output=[])}
        )

    def on_event(self, event: BlockEvent) -> bytes:
        block = event.block
        if event.kind == "open":
            self.item_ids[block.index] = builders.item_id_for(block)
        item_id = self.item_ids[block.index]
        where = {"item_id": item_id, "output_index": block.index}
        if isinstance(block, TextBlock):
            if event.kind == "open":
                return self._event(
                    "response.output_item.added",
                    {"output_index": block.index, "item": builders.response_item(block, item_id, "in_progress")},
                ) + self._event(
                    "response.content_part.added",
                    {**where, "content_index": 0, "part": builders.response_text_part("")},
                )
            if event.kind == "append":
                return self._event(
                    "response.output_text.delta", {**where, "content_index": 0, "delta": event.piece, "logprobs": []}
                )
            return (
                self._event(
                    "response.output_text.done", {**where, "content_index": 0, "text": block.text, "logprobs": []}
                )
                + self._event(
                    "response.content_part.done",
                    {**where, "content_index": 0, "part": builders.response_text_part(block.text)},
                )
                + self._item_done(block, item_id)
            )
        if event.kind == "open":
            item = builders.response_item(block, item_id, "in_progress")
            return self._event("response.output_item.added", {"output_index": block.index, "item": item})
        if event.kind == "append":
            return self._event("response.function_call_arguments.delta", {**where, "delta": event.piece})
        done = {**where, "name": block.name, "arguments": block.arguments}
        return self._event("response.function_call_arguments.done", done) + self._item_done(block, item_id)

    def _item_done(self, block: TextBlock | CallBlock, item_id: str) -> bytes:
        item = builders.response_item(block, item_id, self._final_status)
        return self._event("response.output_item.done", {"output_index": block.index, "item": item})

    def close(self) -> bytes:
        # The finish reason is known by now: a block cut short by max tokens ends "incomplete".
        status, _ = builders.responses_status(self.generation.finish_reason)
        self._final_status = "incomplete" if status == "incomplete" else "completed"
        return super().close()

    def finish(self) -> bytes:
        status, incomplete = builders.responses_status(self.generation.finish_reason)
        snapshot = self._snapshot(
            status,
            output=builders.response_output(self.generation, self.item_ids, final_status=self._final_status),
            usage=builders.response_usage(self.generation),
            incomplete_details=incomplete,
        )
        name = "response.completed" if status == "completed" else "response.incomplete"
        return self._event(name, {"response": snapshot})

    def fail(self, message: str, status: int = 500) -> bytes:
        code = "server_error" if status >= 500 else "invalid_prompt"
        error = {"code": code, "message": message}
        snapshot = self._snapshot(
            "failed",
            output=builders.response_output(self.generation, self.item_ids, final_status="incomplete"),
            usage=builders.response_usage(self.generation),
            error=error,
        )
        # ``response.failed`` ends the response; the ``error`` event after it carries the error both
        # flat (as documented) and nested under "error" (as the live API sends it), which is what
        # makes the openai SDK raise ``APIError`` while iterating.
        nested = {"type": _openai_error_type(status), "code": code, "message": message, "param": None}
        return self._event("response.failed", {"response": snapshot}) + self._event(
            "error", {"code": code, "message": message, "param": None, "error": nested}
        )


def _anthropic_error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status == 529:
        return "overloaded_error"
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


class MessagesEncoder(StreamEncoder):
    protocol = "messages"
    call_id_prefix = "toolu_"

    def __init__(self, *, model: str, id: str | None = None) -> None:
        super().__init__(model=model)
        self.id = id or new_id("msg_")

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.generation.prompt_tokens or 0, "output_tokens": 0},
        }
        return sse.event("message_start", {"type": "message_start", "message": message}) + sse.event(
            "ping", {"type": "ping"}
        )

    def on_event(self, event: BlockEvent) -> bytes:
        block = event.block
        index = block.index
        if event.kind == "open":
            content: dict[str, Any]
            if isinstance(block, TextBlock):
                content = {"type": "text", "text": ""}
            else:
                content = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            return sse.event(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": content}
            )
        if event.kind == "append":
            delta = (
                {"type": "text_delta", "text": event.piece}
                if isinstance(block, TextBlock)
                else {"type": "input_json_delta", "partial_json": event.piece}
            )
            return sse.event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        return sse.event("content_block_stop", {"type": "content_block_stop", "index": index})

    def finish(self) -> bytes:
        gen = self.generation
        usage: dict[str, int] = {"output_tokens": gen.completion_tokens or 0}
        if gen.prompt_tokens is not None:
            usage["input_tokens"] = gen.prompt_tokens
        delta = {"stop_reason": builders.anthropic_stop_reason(gen), "stop_sequence": gen.stop_sequence}
        return sse.event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}) + sse.event(
            "message_stop", {"type": "message_stop"}
        )

    def fail(self, message: str, status: int = 500) -> bytes:
        error = {"type": _anthropic_error_type(status), "message": message}
        return sse.event("error", {"type": "error", "error": error})
