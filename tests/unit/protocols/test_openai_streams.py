"""Chat completions and completions streams, as the official openai SDK reads them."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.unit.protocols._sdk import encode, encode_failing, frames, openai_client
from trestle.protocols import (
    ChatCompletionsEncoder,
    CompletionsEncoder,
    Finish,
    TextDelta,
    ToolCallDelta,
    Usage,
    tool_call,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def chunks_of(body: bytes) -> list[dict[str, object]]:
    pairs = frames(body)
    assert pairs[-1] == (None, "[DONE]")
    assert all(name is None for name, _ in pairs), "chat streams use unnamed events"
    return [json.loads(data) for _, data in pairs[:-1]]


def test_chat_text_stream_is_read_by_the_sdk() -> None:
    body = encode(ChatCompletionsEncoder(model="m"), ["Hel", TextDelta("lo"), " world"])
    stream = openai_client(body).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, None, "stop"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"m"}
    assert abs(chunks[0].created - time.time()) < 60
    assert all(c.usage is None for c in chunks)


def test_chat_chunks_validate_strictly_and_frames_end_with_done() -> None:
    body = encode(ChatCompletionsEncoder(model="m"), ["a", tool_call("f", {"x": 1}), Finish("tool_calls")])
    assert body.endswith(b"\n\ndata: [DONE]\n\n")
    for chunk in chunks_of(body):
        ChatCompletionChunk.model_validate(chunk, strict=True)
        assert "usage" not in chunk  # only with stream_options.include_usage


def test_include_usage_adds_a_final_chunk_with_empty_choices() -> None:
    encoder = ChatCompletionsEncoder(model="m", include_usage=True)
    body = encode(encoder, [Usage(prompt_tokens=7), "a", "b", Usage(completion_tokens=2)])
    chunks = list(openai_client(body).chat.completions.create(model="m", messages=MESSAGES, stream=True))

    *content, last = chunks
    assert all(c.usage is None and len(c.choices) == 1 for c in content)
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (7, 2, 9)
    assert all("usage" in c for c in chunks_of(body)), "every chunk carries usage (null until the last)"


def test_tool_call_deltas_accumulate_in_the_sdk_stream_helper() -> None:
    deltas = [
        "Checking.",
        ToolCallDelta(index=0, id="call_a", name="get_weather"),
        ToolCallDelta(index=0, arguments='{"location": '),
        ToolCallDelta(index=0, arguments='"Paris"}'),
        tool_call("get_time", {"tz": "CET"}, index=1),
    ]
    body = encode(ChatCompletionsEncoder(model="m"), deltas)
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    with openai_client(body).chat.completions.stream(model="m", messages=MESSAGES, tools=tools) as stream:  # type: ignore[arg-type]
        completion = stream.get_final_completion()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_a", "get_weather", {"location": "Paris"}),
        (calls[1].id, "get_time", {"tz": "CET"}),
    ]
    assert calls[1].id.startswith("call_")


@pytest.mark.parametrize(("finish", "expected"), [(Finish("length"), "length"), (None, "stop")])
def test_finish_reason(finish: Finish | None, expected: str) -> None:
    deltas: list[object] = ["x"] + ([finish] if finish else [])
    body = encode(ChatCompletionsEncoder(model="m"), deltas)  # type: ignore[arg-type]
    chunks = list(openai_client(body).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert chunks[-1].choices[0].finish_reason == expected


def test_failure_mid_stream_raises_api_error_in_the_sdk() -> None:
    body = encode_failing(ChatCompletionsEncoder(model="m"), ["one", " two"], "the model broke")
    stream = openai_client(body).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="the model broke") as info:
        seen.extend(chunk.choices[0].delta.content or "" for chunk in stream)
    assert "".join(seen) == "one two"
    assert info.value.body == {"message": "the model broke", "type": "server_error", "param": None, "code": None}
    assert body.endswith(b"data: [DONE]\n\n")


def test_client_errors_are_typed_invalid_request() -> None:
    body = encode_failing(ChatCompletionsEncoder(model="m"), [], "bad input", status=400)
    error = json.loads(frames(body)[-2][1])["error"]
    assert error["type"] == "invalid_request_error"


def test_completions_stream_is_read_by_the_sdk() -> None:
    body = encode(
        CompletionsEncoder(model="m", include_usage=True),
        ["Once", " upon", Usage(prompt_tokens=1, completion_tokens=2), Finish("length")],
    )
    chunks = list(openai_client(body).completions.create(model="m", prompt="p", stream=True))
    text_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in text_chunks) == "Once upon"
    assert {c.object for c in chunks} == {"text_completion"}
    assert chunks[0].id.startswith("cmpl-")
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 3


def test_completions_cannot_carry_tool_calls() -> None:
    encoder = CompletionsEncoder(model="m")
    encoder.start()
    with pytest.raises(ValueError, match="cannot carry tool calls"):
        encoder.feed(tool_call("f"))
