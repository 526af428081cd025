"""The one request type a generation method sees, whatever protocol the client spoke.

``GenerationRequest`` normalises an OpenAI chat completions, completions or Responses request, or
an Anthropic Messages request: system prompts become a leading ``system`` message, content parts
are joined into text, assistant tool calls and tool results become ``Message`` fields, tools and
tool choice get one shape. ``raw`` keeps the body as received for anything not normalised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from trestle.errors import InputParsingError
from trestle.protocols import anthropic as an
from trestle.protocols import openai as oa

__all__ = [
    "GenerationRequest",
    "Message",
    "Protocol",
    "ProtocolRequestError",
    "Role",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "from_chat_completions",
    "from_completions",
    "from_messages",
    "from_responses",
]

Protocol = Literal["chat.completions", "completions", "responses", "messages"]
Role = Literal["system", "user", "assistant", "tool"]

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_RESPONSES_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


class ProtocolRequestError(InputParsingError):
    """A request the protocol layer rejects (answered 400 in the protocol's own error shape)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(slots=True)
class ToolCall:
    """A tool call the assistant made earlier in the conversation. ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> Any:
        return orjson.loads(self.arguments) if self.arguments else {}


@dataclass(slots=True)
class Message:
    """A turn. ``tool`` messages carry a tool's result for ``tool_call_id`` (``name``: the tool's name)."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolChoice:
    """``auto``, ``none`` or ``required``; with ``name``, that one tool is required."""

    mode: Literal["auto", "none", "required"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class GenerationRequest:
    protocol: Protocol
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    prompt: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def last_user_text(self) -> str:
        """The text of the last ``user`` message ("" if there is none)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


def _text(content: str | Sequence[Mapping[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") in _TEXT_PARTS)


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _openai_tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice:
    if choice is None or choice == "auto":
        return ToolChoice()
    if choice == "none":
        return ToolChoice(mode="none")
    if choice == "required":
        return ToolChoice(mode="required")
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if isinstance(name, str):
            return ToolChoice(mode="required", name=name)
    raise ProtocolRequestError(f"Unsupported tool_choice: {choice!r}", param="tool_choice")


def from_chat_completions(req: oa.ChatCompletionRequest, raw: dict[str, Any] | None = None) -> GenerationRequest:
    if req.n is not None and req.n != 1:
        raise ProtocolRequestError("Only n=1 is supported.", param="n")
    messages: list[Message] = []
    names: dict[str, str] = {}
    for m in req.messages:
        if m.role in ("system", "developer"):
            messages.append(Message(role="system", content=_text(m.content)))
        elif m.role == "assistant":
            calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
            names.update((c.id, c.name) for c in calls)
            messages.append(Message(role="assistant", content=_text(m.content), tool_calls=calls))
        elif m.role in ("tool", "function"):
            call_id = m.tool_call_id
            name = m.name or (names.get(call_id) if call_id else None)
            messages.append(Message(role="tool", content=_text(m.content), tool_call_id=call_id, name=name))
        else:
            messages.append(Message(role="user", content=_text(m.content), name=m.name))
    tools = [Tool(t.function.name, t.function.description, t.function.parameters or {}) for t in req.tools or []]
    return GenerationRequest(
        protocol="chat.completions",
        model=req.model,
        messages=messages,
        tools=tools,
        tool_choice=_openai_tool_choice(req.tool_choice),
        max_tokens=req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=_stop_list(req.stop),
        stream=req.stream,
        raw=raw if raw is not None else req.model_dump(),
    )


def from_completions(req: oa.CompletionRequest, raw: dict[str, Any] | None = None) -> GenerationRequest:
    if req.n is not None and req.n != 1:
        raise ProtocolRequestError("Only n=1 is supported.", param="n")
    if req.echo or req.suffix:
        raise ProtocolRequestError("echo and suffix are not supported.", param="echo" if req.echo else "suffix")
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        else:
            raise ProtocolRequestError("Only a single string prompt is supported.", param="prompt")
    return GenerationRequest(
        protocol="completions",
        model=req.model,
        messages=[Message(role="user", content=prompt)],
        max_tokens=req.max_tokens if req.max_tokens is not None else 16,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=_stop_list(req.stop),
        stream=req.stream,
        prompt=prompt,
        raw=raw if raw is not None else req.model_dump(),
    )


def _responses_items(items: str | list[dict[str, Any]]) -> list[Message]:
    if isinstance(items, str):
        return [Message(role="user", content=items)]
    messages: list[Message] = []
    names: dict[str, str] = {}
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = _RESPONSES_ROLES.get(item.get("role", "user"))
            if role is None:
                raise ProtocolRequestError(f"Unsupported input message role: {item.get('role')!r}", param="input")
            messages.append(Message(role=role, content=_text(item.get("content"))))
        elif kind == "function_call":
            call = ToolCall(str(item.get("call_id", "")), str(item.get("name", "")), str(item.get("arguments", "")))
            names[call.id] = call.name
            if not messages or messages[-1].role != "assistant":
                messages.append(Message(role="assistant"))
            messages[-1].tool_calls.append(call)
        elif kind == "function_call_output":
            call_id = str(item.get("call_id", ""))
            output = item.get("output", "")
            content = output if isinstance(output, str) else _text(output)
            messages.append(Message(role="tool", content=content, tool_call_id=call_id, name=names.get(call_id)))
        # Other item types (reasoning, web search results, ...) carry nothing a text model reads.
    return messages


def from_responses(req: oa.ResponsesRequest, raw: dict[str, Any] | None = None) -> GenerationRequest:
    messages = _responses_items(req.input)
    if req.instructions:
        messages.insert(0, Message(role="system", content=req.instructions))
    tools = [
        Tool(str(t["name"]), t.get("description"), t.get("parameters") or {})
        for t in req.tools or []
        if t.get("type") == "function" and "name" in t
    ]
    return GenerationRequest(
        protocol="responses",
        model=req.model,
        messages=messages,
        tools=tools,
        tool_choice=_openai_tool_choice(req.tool_choice),
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stream=req.stream,
        raw=raw if raw is not None else req.model_dump(),
    )


def _anthropic_tool_choice(choice: dict[str, Any] | None) -> ToolChoice:
    kind = (choice or {}).get("type", "auto")
    if kind == "auto":
        return ToolChoice()
    if kind == "none":
        return ToolChoice(mode="none")
    if kind == "any":
        return ToolChoice(mode="required")
    if kind == "tool" and isinstance((choice or {}).get("name"), str):
        return ToolChoice(mode="required", name=str((choice or {})["name"]))
    raise ProtocolRequestError(f"Unsupported tool_choice: {choice!r}", param="tool_choice")


def _anthropic_turn(m: an.InputMessage, names: dict[str, str]) -> list[Message]:
    if isinstance(m.content, str):
        return [Message(role=m.role, content=m.content)]
    if m.role == "assistant":
        calls = []
        for block in m.content:
            if block.get("type") == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")), args))
        names.update((c.id, c.name) for c in calls)
        return [Message(role="assistant", content=_text(m.content), tool_calls=calls)]
    out: list[Message] = []
    for block in m.content:
        if block.get("type") == "tool_result":
            call_id = str(block.get("tool_use_id", ""))
            out.append(
                Message(
                    role="tool",
                    content=_text(block.get("content")),
                    tool_call_id=call_id,
                    name=names.get(call_id),
                    is_error=bool(block.get("is_error", False)),
                )
            )
    text = _text(m.content)
    if text or not out:
        out.append(Message(role="user", content=text))
    return out


def from_messages(req: an.MessagesRequest, raw: dict[str, Any] | None = None) -> GenerationRequest:
    messages: list[Message] = []
    if req.system:
        messages.append(Message(role="system", content=_text(req.system)))
    names: dict[str, str] = {}
    for m in req.messages:
        messages.extend(_anthropic_turn(m, names))
    tools = [Tool(t.name, t.description, t.input_schema or {}) for t in req.tools or []]
    return GenerationRequest(
        protocol="messages",
        model=req.model,
        messages=messages,
        tools=tools,
        tool_choice=_anthropic_tool_choice(req.tool_choice),
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop_sequences or []),
        stream=req.stream,
        raw=raw if raw is not None else req.model_dump(),
    )
