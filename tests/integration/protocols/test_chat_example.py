"""The official openai and anthropic SDKs against a real ``trestle serve examples/chat``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.server import ServerHandle, run_server

CHAT = Path(__file__).resolve().parents[3] / "examples" / "chat"
USER = [{"role": "user", "content": "hello there"}]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def server(markers: Path) -> Iterator[ServerHandle]:
    env = {"CHAT_MARKER_DIR": str(markers), "CHAT_WORD_DELAY_S": "0.002"}
    with run_server(CHAT, env=env) as handle:
        yield handle


@pytest.fixture
def oai(server: ServerHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture
def claude(server: ServerHandle) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=30) as client:
        yield client


def unfinished_markers(markers: Path, protocol: str, seen: set[Path]) -> list[dict[str, Any]]:
    found = []
    for path in markers.glob("*.json"):
        if path in seen:
            continue
        data = json.loads(path.read_text())
        if data["protocol"] == protocol and not data["completed"]:
            seen.add(path)
            found.append(data)
    return found


def wait_for_marker(markers: Path, protocol: str, seen: set[Path], timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = unfinished_markers(markers, protocol, seen)
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"the {protocol} generation's finally did not run within {timeout}s")


# --- OpenAI chat completions ---------------------------------------------------------------------


def test_chat_completion(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "You said: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "chat"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 4)


def test_chat_stream_with_include_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="chat",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4, "streamed word by word"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 6


def test_chat_tool_call_round_trip(oai: openai.OpenAI) -> None:
    with oai.chat.completions.stream(model="chat", messages=WEATHER, tools=[CHAT_TOOL]) as stream:  # type: ignore[arg-type,list-item]
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert call.function.parsed_arguments == {"location": "Paris"}  # type: ignore[union-attr]

    follow_up = [
        *WEATHER,
        {"role": "assistant", "tool_calls": [call.model_dump(include={"id", "type", "function"})]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    answer = oai.chat.completions.create(model="chat", messages=follow_up, tools=[CHAT_TOOL])  # type: ignore[arg-type,list-item]
    assert answer.choices[0].message.content == "The get_weather tool says: sunny, 21 C"


def test_chat_error_mid_stream_raises_in_the_sdk(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "please explode"}],
        stream=True,
    )
    words: list[str] = []
    with pytest.raises(openai.APIError, match="Internal Server Error"):
        words.extend(c.choices[0].delta.content or "" for c in stream)
    assert "".join(words) == "Exploding in three"


def test_the_server_never_gathers_a_protocol_stream(server: ServerHandle) -> None:
    body = {"model": "chat", "messages": USER, "stream": True}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"accept": "application/json"})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")


# --- OpenAI completions and embeddings -----------------------------------------------------------


def test_completions_streaming_and_not(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model="chat", prompt="count to 50", max_tokens=5)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == ("1 2 3 4 5", "length")
    chunks = list(oai.completions.create(model="chat", prompt="count to 3", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "1 2 3"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_float_and_base64(oai: openai.OpenAI) -> None:
    floats = oai.embeddings.create(model="chat", input=["alpha", "beta"], encoding_format="float")
    decoded = oai.embeddings.create(model="chat", input="alpha")  # the SDK asks for base64 and decodes it
    first = floats.data[0].embedding
    assert len(first) == 32
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-9)
    assert decoded.data[0].embedding == pytest.approx(first, rel=1e-6)
    assert floats.data[1].embedding != first
    assert floats.usage.prompt_tokens == 2


# --- OpenAI Responses ----------------------------------------------------------------------------


def test_responses_streaming_and_not(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="chat", input="hello there", instructions="Be nice.")
    assert (response.output_text, response.status) == ("You said: hello there", "completed")
    assert response.id.startswith("resp_")
    assert response.instructions == "Be nice."
    with oai.responses.stream(model="chat", input="hello there") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["You", " said:", " hello", " there"]
    assert final.output_text == "You said: hello there"
    assert final.usage is not None
    assert final.usage.output_tokens == 4


def test_responses_tool_call_and_max_output_tokens(oai: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    response = oai.responses.create(model="chat", input="weather in Paris", tools=tools)  # type: ignore[arg-type,list-item]
    call = response.output[0]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"location": "Paris"})

    short = oai.responses.create(model="chat", input="count to 100", max_output_tokens=3)
    assert short.status == "incomplete"
    assert short.incomplete_details is not None
    assert short.incomplete_details.reason == "max_output_tokens"
    assert short.output_text == "1 2 3"


def test_responses_error_mid_stream(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(model="chat", input="please explode", stream=True)
    types: list[str] = []
    with pytest.raises(openai.APIError, match="Internal Server Error"):
        types.extend(event.type for event in stream)
    assert types[-1] == "response.failed"


# --- Anthropic Messages --------------------------------------------------------------------------


def test_messages_streaming_and_not(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="chat", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert message.content[0].text == "You said: hello there"
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("end_turn", 2, 4)
    with claude.messages.stream(model="chat", max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["You", " said:", " hello", " there"]
    assert final.usage.input_tokens == 2


def test_messages_tool_use_stop_sequences_and_max_tokens(claude: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with claude.messages.stream(model="chat", max_tokens=64, messages=WEATHER, tools=tools) as stream:  # type: ignore[arg-type,list-item]
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    tool = message.content[0]
    assert tool.type == "tool_use"
    assert tool.input == {"location": "Paris"}

    counting = [{"role": "user", "content": "count to 10"}]
    stopped = claude.messages.create(model="chat", max_tokens=64, messages=counting, stop_sequences=["4"])  # type: ignore[arg-type]
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == ("1 2 3 ", "stop_sequence", "4")  # type: ignore[union-attr]
    capped = claude.messages.create(model="chat", max_tokens=2, messages=counting)  # type: ignore[arg-type]
    assert (capped.content[0].text, capped.stop_reason) == ("1 2", "max_tokens")  # type: ignore[union-attr]


def test_messages_error_mid_stream(claude: anthropic.Anthropic) -> None:
    explode = [{"role": "user", "content": "please explode"}]
    with (
        claude.messages.stream(model="chat", max_tokens=64, messages=explode) as stream,  # type: ignore[arg-type]
        pytest.raises(anthropic.APIStatusError, match="api_error"),
    ):
        stream.get_final_message()


# --- cancellation --------------------------------------------------------------------------------


def test_closing_a_chat_stream_early_stops_the_generation(oai: openai.OpenAI, markers: Path) -> None:
    seen: set[Path] = set()
    unfinished_markers(markers, "chat.completions", seen)
    stream = oai.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "count to 100000"}],
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 5:
            break
    stream.close()
    marker = wait_for_marker(markers, "chat.completions", seen)
    assert marker["words"] < 5000, marker


def test_closing_a_messages_stream_early_stops_the_generation(claude: anthropic.Anthropic, markers: Path) -> None:
    seen: set[Path] = set()
    unfinished_markers(markers, "messages", seen)
    counting = [{"role": "user", "content": "count to 100000"}]
    with claude.messages.stream(model="chat", max_tokens=200000, messages=counting) as stream:  # type: ignore[arg-type]
        for i, _ in enumerate(stream.text_stream):
            if i == 5:
                break
    marker = wait_for_marker(markers, "messages", seen)
    assert marker["words"] < 5000, marker


# --- predict -------------------------------------------------------------------------------------


def test_predict_streams_plain_text(server: ServerHandle) -> None:
    with httpx.stream("POST", server.url + "/v1/models/model:predict", json={"prompt": "a b", "stream": True}) as r:
        chunks = list(r.iter_text())
    assert "".join(chunks) == "You said: a b"
    plain = httpx.post(server.url + "/v1/models/model:predict", json={"prompt": "a b"})
    assert plain.json() == {"model": "chat", "text": "You said: a b"}
