"""Responses and Anthropic Messages streams (named events), as the official SDKs read them."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.unit.protocols._sdk import anthropic_client, encode, encode_failing, frames, openai_client
from trestle.protocols import Finish, MessagesEncoder, ResponsesEncoder, ToolCallDelta, Usage, tool_call

RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
MESSAGES = [{"role": "user", "content": "hi"}]


def named(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, data in frames(body):
        payload = json.loads(data)
        assert name == payload["type"], "the event name matches the payload's type"
        out.append((name, payload))
    return out


# --- Responses ----------------------------------------------------------------------------------


def test_responses_text_stream_event_sequence() -> None:
    body = encode(ResponsesEncoder(model="m"), ["Hel", "lo", Usage(prompt_tokens=3, completion_tokens=2)])
    events = named(body)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    for _, payload in events:
        RESPONSE_EVENT.validate_python(payload, strict=True)
    created = events[0][1]["response"]
    assert created["status"] == "in_progress"
    assert created["id"].startswith("resp_")
    assert events[-1][1]["response"]["id"] == created["id"]


def test_responses_stream_helper_builds_the_final_response() -> None:
    body = encode(
        ResponsesEncoder(model="m", echo={"instructions": "be brief", "temperature": 0.5}),
        [
            "It is ",
            "sunny.",
            tool_call("get_weather", {"location": "Paris"}),
            Usage(prompt_tokens=3, completion_tokens=4),
        ],
    )
    with openai_client(body).responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["It is ", "sunny."]
    assert final.status == "completed"
    assert final.output_text == "It is sunny."
    message, call = final.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments), call.status) == ("get_weather", {"location": "Paris"}, "completed")
    assert call.call_id.startswith("call_")
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    assert (final.instructions, final.temperature) == ("be brief", 0.5)


def test_responses_function_call_events() -> None:
    deltas = [ToolCallDelta(0, name="f"), ToolCallDelta(0, arguments='{"a":'), ToolCallDelta(0, arguments="1}")]
    events = named(encode(ResponsesEncoder(model="m"), deltas))
    names = [n for n, _ in events]
    assert names[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2][1]["item"]["status"] == "in_progress"
    assert events[5][1]["arguments"] == '{"a":1}'
    assert events[5][1]["name"] == "f"
    assert events[6][1]["item"]["arguments"] == '{"a":1}'
    assert events[6][1]["item"]["status"] == "completed"


def test_responses_cut_short_end_incomplete() -> None:
    events = named(encode(ResponsesEncoder(model="m"), ["a", "b", Finish("length")]))
    name, payload = events[-1]
    assert name == "response.incomplete"
    assert payload["response"]["status"] == "incomplete"
    assert payload["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2][1]["item"]["status"] == "incomplete"
    RESPONSE_EVENT.validate_python(payload, strict=True)


def test_responses_failure_ends_with_response_failed_and_the_sdk_raises() -> None:
    body = encode_failing(ResponsesEncoder(model="m"), ["partial"], "the model broke")
    events = named(body)
    assert [n for n, _ in events][-2:] == ["response.failed", "error"]
    failed = events[-2][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "the model broke"}
    for _, payload in events:
        RESPONSE_EVENT.validate_python(payload)

    seen: list[str] = []
    stream = openai_client(body).responses.create(model="m", input="hi", stream=True)
    with pytest.raises(openai.APIError, match="the model broke"):
        seen.extend(event.type for event in stream)
    assert seen[-1] == "response.failed"


# --- Anthropic Messages -------------------------------------------------------------------------


def test_messages_text_stream_event_sequence() -> None:
    body = encode(MessagesEncoder(model="m"), [Usage(prompt_tokens=5), "Hi", " there", Usage(completion_tokens=2)])
    events = named(body)
    assert [n for n, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, payload in events:
        if name != "ping":
            ANTHROPIC_EVENT.validate_python(payload, strict=True)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert start["usage"] == {"input_tokens": 5, "output_tokens": 0}
    assert events[-2][1]["usage"] == {"output_tokens": 2, "input_tokens": 5}


def test_messages_stream_helper_builds_the_final_message() -> None:
    deltas = [
        Usage(prompt_tokens=5),
        "Let me look.",
        ToolCallDelta(0, name="get_weather"),
        ToolCallDelta(0, arguments='{"location"'),
        ToolCallDelta(0, arguments=': "Paris"}'),
        Usage(completion_tokens=9),
    ]
    body = encode(MessagesEncoder(model="m"), deltas)
    with anthropic_client(body).messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == "Let me look."
    assert message.stop_reason == "tool_use"
    text_block, tool_block = message.content
    assert text_block.type == "text"
    assert text_block.text == "Let me look."
    assert tool_block.type == "tool_use"
    assert (tool_block.name, tool_block.input) == ("get_weather", {"location": "Paris"})
    assert tool_block.id.startswith("toolu_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 9)


@pytest.mark.parametrize(
    ("finish", "stop_reason", "stop_sequence"),
    [
        (None, "end_turn", None),
        (Finish("length"), "max_tokens", None),
        (Finish("stop", stop_sequence="END"), "stop_sequence", "END"),
        (Finish("content_filter"), "refusal", None),
    ],
)
def test_messages_stop_reasons(finish: Finish | None, stop_reason: str, stop_sequence: str | None) -> None:
    body = encode(MessagesEncoder(model="m"), ["x"] + ([finish] if finish else []))
    with anthropic_client(body).messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        message = stream.get_final_message()
    assert (message.stop_reason, message.stop_sequence) == (stop_reason, stop_sequence)


def test_messages_failure_is_an_error_event_and_the_sdk_raises() -> None:
    body = encode_failing(MessagesEncoder(model="m"), ["partial"], "the model broke")
    assert named(body)[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "the model broke"}})
    stream = anthropic_client(body).messages.create(model="m", max_tokens=10, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(anthropic.APIStatusError, match="the model broke") as info:
        for _ in stream:
            pass
    assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": "the model broke"}}


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit_error"), (400, "invalid_request_error")])
def test_messages_error_types_follow_the_status(status: int, kind: str) -> None:
    body = encode_failing(MessagesEncoder(model="m"), [], "no", status=status)
    assert named(body)[-1][1]["error"]["type"] == kind
