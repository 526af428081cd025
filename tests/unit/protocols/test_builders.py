"""Non-streaming bodies validate against the official SDKs' response types."""

from __future__ import annotations

import array
import base64
import math

import anthropic.types
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tests.unit.protocols._sdk import openai_client
from trestle.protocols import Finish, Generation, ToolCallDelta, Usage, builders, tool_call

TEXT_AND_TOOL = ["Checking", " now.", tool_call("get_weather", {"location": "Paris"}), Usage(4, 3)]


def test_chat_completion() -> None:
    body = builders.chat_completion(Generation.of(["Hello", " there", Usage(2, 2)]), model="m")
    completion = ChatCompletion.model_validate(body, strict=True)
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 4


def test_chat_completion_with_only_tool_calls_has_null_content() -> None:
    body = builders.chat_completion(Generation.of([tool_call("f", {"a": 1})]), model="m")
    message = ChatCompletion.model_validate(body, strict=True).choices[0].message
    assert message.content is None
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls or []] == [("f", '{"a":1}')]  # type: ignore[union-attr]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_usage_is_zero_when_the_model_reports_none() -> None:
    body = builders.chat_completion(Generation.of(["x"]), model="m")
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_completion() -> None:
    body = builders.completion(Generation.of(["a", "b", Finish("length")]), model="m")
    completion = Completion.model_validate(body, strict=True)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == ("ab", "length")
    assert completion.id.startswith("cmpl-")


def test_embeddings_float_and_base64_decode_to_the_same_vectors() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 1.5, -2.0]]
    as_floats = CreateEmbeddingResponse.model_validate(
        builders.embeddings(vectors, model="e", prompt_tokens=6), strict=True
    )
    assert [d.embedding for d in as_floats.data] == vectors
    assert [d.index for d in as_floats.data] == [0, 1]
    assert as_floats.usage.prompt_tokens == 6

    b64 = builders.embeddings(vectors, model="e", encoding_format="base64")
    decoded = [array.array("f", base64.b64decode(d["embedding"])).tolist() for d in b64["data"]]
    assert decoded == vectors


def test_base64_embeddings_are_what_the_openai_sdk_decodes_by_default() -> None:
    import orjson

    vectors = [[math.pi, -1.0 / 3.0]]
    body = orjson.dumps(builders.embeddings(vectors, model="e", encoding_format="base64"))
    result = openai_client(body, content_type="application/json").embeddings.create(model="e", input="x")
    assert result.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)


def test_response() -> None:
    body = builders.response(Generation.of(TEXT_AND_TOOL), model="m", echo={"tools": [], "temperature": 0.2})
    response = Response.model_validate(body)
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "Checking now."
    call = response.output[1]
    assert call.type == "function_call"
    assert call.arguments == '{"location":"Paris"}'
    assert response.usage is not None
    assert response.usage.total_tokens == 7
    assert response.temperature == 0.2


def test_response_cut_short_is_incomplete() -> None:
    body = builders.response(Generation.of(["a", Finish("length")]), model="m")
    response = Response.model_validate(body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


def test_anthropic_message() -> None:
    body = builders.message(Generation.of(TEXT_AND_TOOL, call_id_prefix="toolu_"), model="m")
    message = anthropic.types.Message.model_validate(body, strict=True)
    assert message.id.startswith("msg_")
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert text.type == "text"
    assert text.text == "Checking now."
    assert tool.type == "tool_use"
    assert tool.input == {"location": "Paris"}
    assert tool.id.startswith("toolu_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 3)


def test_anthropic_message_rejects_arguments_that_are_not_a_json_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        builders.message(Generation.of([ToolCallDelta(0, name="f", arguments="[1]")]), model="m")
