"""Requests of every protocol normalise to one GenerationRequest; deltas fold into blocks."""

from __future__ import annotations

import pytest

from trestle.protocols import Finish, Generation, ProtocolRequestError, TextDelta, ToolCallDelta, ToolChoice
from trestle.protocols import anthropic as an
from trestle.protocols import openai as oa
from trestle.protocols.generation import from_chat_completions, from_completions, from_messages, from_responses


def test_chat_request() -> None:
    req = oa.ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": "END",
            "vendor_extension": {"kept": True},
        }
    )
    gen = from_chat_completions(req)
    assert [(m.role, m.content) for m in gen.messages] == [
        ("system", "Be brief."),
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny"),
    ]
    assert gen.messages[2].tool_calls[0].name == "get_weather"
    assert (gen.messages[3].tool_call_id, gen.messages[3].name) == ("c1", "get_weather")
    assert [t.name for t in gen.tools] == ["get_weather"]
    assert gen.tool_choice == ToolChoice(mode="required", name="get_weather")
    assert gen.max_tokens == 20
    assert gen.stop == ["END"]
    assert gen.raw["vendor_extension"] == {"kept": True}
    assert gen.last_user_text() == "Weather in Paris?"


def test_chat_request_rejects_several_choices() -> None:
    req = oa.ChatCompletionRequest.model_validate({"model": "m", "messages": [], "n": 2})
    with pytest.raises(ProtocolRequestError, match="n=1") as info:
        from_chat_completions(req)
    assert info.value.param == "n"


def test_responses_request() -> None:
    req = oa.ResponsesRequest.model_validate(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"location":"Paris"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}}, {"type": "web_search"}],
            "tool_choice": "none",
            "max_output_tokens": 5,
        }
    )
    gen = from_responses(req)
    assert [(m.role, m.content) for m in gen.messages] == [
        ("system", "Be brief."),
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "sunny"),
    ]
    assert gen.messages[2].tool_calls[0].parsed_arguments() == {"location": "Paris"}
    assert gen.messages[3].name == "get_weather"
    assert [t.name for t in gen.tools] == ["get_weather"]
    assert gen.tool_choice.mode == "none"
    assert gen.max_tokens == 5


def test_responses_string_input_is_one_user_message() -> None:
    gen = from_responses(oa.ResponsesRequest.model_validate({"model": "m", "input": "hi"}))
    assert [(m.role, m.content) for m in gen.messages] == [("user", "hi")]


def test_anthropic_request() -> None:
    req = an.MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"location": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}]}
                    ],
                },
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["END"],
        }
    )
    gen = from_messages(req)
    assert [(m.role, m.content) for m in gen.messages] == [
        ("system", "Be brief."),
        ("user", "Weather in Paris?"),
        ("assistant", "Checking."),
        ("tool", "sunny"),
    ]
    assert gen.messages[2].tool_calls[0].parsed_arguments() == {"location": "Paris"}
    assert (gen.messages[3].tool_call_id, gen.messages[3].name) == ("t1", "get_weather")
    assert gen.tool_choice == ToolChoice(mode="required")
    assert (gen.max_tokens, gen.stop) == (64, ["END"])


def test_anthropic_named_tool_choice() -> None:
    req = an.MessagesRequest.model_validate(
        {"max_tokens": 1, "messages": [], "tool_choice": {"type": "tool", "name": "f"}}
    )
    assert from_messages(req).tool_choice == ToolChoice(mode="required", name="f")


def test_completions_request() -> None:
    gen = from_completions(oa.CompletionRequest.model_validate({"model": "m", "prompt": ["Once upon"]}))
    assert (gen.prompt, gen.max_tokens) == ("Once upon", 16)  # OpenAI's default max_tokens
    assert [(m.role, m.content) for m in gen.messages] == [("user", "Once upon")]
    with pytest.raises(ProtocolRequestError, match="single string prompt"):
        from_completions(oa.CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]}))
    with pytest.raises(ProtocolRequestError, match="echo and suffix are not supported"):
        from_completions(oa.CompletionRequest.model_validate({"model": "m", "prompt": "a", "echo": True}))


# --- Generation ---------------------------------------------------------------------------------


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    gen = Generation.of(["a", "", TextDelta("b"), ToolCallDelta(0, name="f"), "c"])
    assert [type(b).__name__ for b in gen.blocks] == ["TextBlock", "CallBlock", "TextBlock"]
    assert gen.text == "abc"
    assert gen.finish_reason == "tool_calls"


def test_explicit_finish_wins() -> None:
    assert Generation.of([ToolCallDelta(0, name="f"), Finish("length")]).finish_reason == "length"


@pytest.mark.parametrize(
    ("deltas", "error"),
    [
        ([ToolCallDelta(0, arguments="{}")], "must carry the tool's name"),
        ([ToolCallDelta(0, name="f"), ToolCallDelta(1, name="g"), ToolCallDelta(0, arguments="{}")], "contiguous"),
    ],
)
def test_malformed_tool_call_fragments_are_rejected(deltas: list[ToolCallDelta], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Generation.of(deltas)


def test_unknown_delta_types_are_rejected() -> None:
    with pytest.raises(TypeError, match="yields str"):
        Generation.of([42])  # type: ignore[list-item]
