"""``Generation``: deltas folded into ordered content blocks (text runs and tool calls).

Every encoder and builder reads a generation through this one state machine, so the protocols
agree on block boundaries: text after a tool call starts a new text block, fragments of one tool
call must be contiguous, empty text is ignored. ``add`` reports what changed as ``BlockEvent``s,
which the stream encoders translate into their own frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from trestle.protocols._ids import new_id
from trestle.protocols.deltas import DeltaLike, Finish, FinishReason, TextDelta, ToolCallDelta, Usage

__all__ = ["BlockEvent", "CallBlock", "Generation", "TextBlock"]


@dataclass(slots=True)
class TextBlock:
    index: int
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(slots=True)
class CallBlock:
    index: int
    call_index: int
    key: int
    id: str
    name: str
    parts: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


Block = TextBlock | CallBlock


@dataclass(slots=True)
class BlockEvent:
    kind: Literal["open", "append", "close"]
    block: Block
    piece: str = ""


class Generation:
    """The state of one generation. ``call_id_prefix`` styles generated tool-call ids."""

    def __init__(self, *, call_id_prefix: str = "call_") -> None:
        self.blocks: list[Block] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish: Finish | None = None
        self._call_id_prefix = call_id_prefix
        self._open: Block | None = None
        self._calls: dict[int, CallBlock] = {}

    @classmethod
    def of(cls, deltas: Iterable[DeltaLike], *, call_id_prefix: str = "call_") -> Generation:
        state = cls(call_id_prefix=call_id_prefix)
        for delta in deltas:
            state.add(delta)
        state.close()
        return state

    # --- reading ---------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks if isinstance(b, TextBlock))

    @property
    def tool_calls(self) -> list[CallBlock]:
        return [b for b in self.blocks if isinstance(b, CallBlock)]

    @property
    def finish_reason(self) -> FinishReason:
        if self.finish is not None:
            return self.finish.reason
        return "tool_calls" if self._calls else "stop"

    @property
    def stop_sequence(self) -> str | None:
        return self.finish.stop_sequence if self.finish is not None else None

    @property
    def usage(self) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)``; counts the model did not report are 0."""
        return self.prompt_tokens or 0, self.completion_tokens or 0

    # --- writing ---------------------------------------------------------------------------------

    def add(self, delta: DeltaLike) -> list[BlockEvent]:
        if isinstance(delta, str):
            delta = TextDelta(delta)
        if isinstance(delta, TextDelta):
            return self._add_text(delta.text)
        if isinstance(delta, ToolCallDelta):
            return self._add_call(delta)
        if isinstance(delta, Usage):
            if delta.prompt_tokens is not None:
                self.prompt_tokens = delta.prompt_tokens
            if delta.completion_tokens is not None:
                self.completion_tokens = delta.completion_tokens
            return []
        if isinstance(delta, Finish):
            self.finish = delta
            return []
        raise TypeError(f"A generation yields str, TextDelta, ToolCallDelta, Usage or Finish, not {type(delta)!r}")

    def close(self) -> list[BlockEvent]:
        """Close the open block, if any."""
        if self._open is None:
            return []
        block, self._open = self._open, None
        return [BlockEvent("close", block)]

    def _add_text(self, text: str) -> list[BlockEvent]:
        if not text:
            return []
        events: list[BlockEvent] = []
        if not isinstance(self._open, TextBlock):
            events += self.close()
            self._open = TextBlock(index=len(self.blocks))
            self.blocks.append(self._open)
            events.append(BlockEvent("open", self._open))
        self._open.parts.append(text)
        events.append(BlockEvent("append", self._open, text))
        return events

    def _add_call(self, delta: ToolCallDelta) -> list[BlockEvent]:
        events: list[BlockEvent] = []
        block = self._calls.get(delta.index)
        if block is None:
            if not delta.name:
                raise ValueError(f"The first fragment of tool call {delta.index} must carry the tool's name")
            events += self.close()
            block = CallBlock(
                index=len(self.blocks),
                call_index=len(self._calls),
                key=delta.index,
                id=delta.id or new_id(self._call_id_prefix),
                name=delta.name,
            )
            self._calls[delta.index] = block
            self.blocks.append(block)
            self._open = block
            events.append(BlockEvent("open", block))
        elif block is not self._open:
            raise ValueError(f"Fragments of tool call {delta.index} must be contiguous")
        if delta.arguments:
            block.parts.append(delta.arguments)
            events.append(BlockEvent("append", block, delta.arguments))
        return events
