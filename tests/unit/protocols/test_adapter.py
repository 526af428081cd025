"""One generation method serves every protocol: driven in process by the official SDKs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trestle.contract.methods import ArgForm, CallKind, describe_model
from trestle.protocols import (
    ChatModel,
    DeltaLike,
    EmbeddingModel,
    GenerationRequest,
    Usage,
    tool_call,
)

pytestmark = pytest.mark.anyio

ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/embeddings": "embeddings",
    "/predict": "predict",
}
USER = [{"role": "user", "content": "weather in Paris"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def app_for(model: object) -> Starlette:
    """A stand-in for the model server: each route calls the model method of the same name."""

    def endpoint(name: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            result = await getattr(model, name)(await request.json(), request)
            return result if isinstance(result, Response) else JSONResponse(result)

        return handle

    return Starlette(routes=[Route(path, endpoint(name), methods=["POST"]) for path, name in ROUTES.items()])


def sdk_clients(model: object) -> tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(model)))
    return (
        openai.AsyncOpenAI(base_url="http://m/v1", api_key="k", http_client=http, max_retries=0),
        anthropic.AsyncAnthropic(base_url="http://m", api_key="k", http_client=http, max_retries=0),
    )


def words(request: GenerationRequest) -> list[DeltaLike]:
    """Replies "Hello world", or calls get_weather when tools are offered."""
    if request.tools:
        return ["Checking.", tool_call("get_weather", {"location": "Paris"}), Usage(3, 2)]
    return [Usage(prompt_tokens=3), "Hello", " world", Usage(completion_tokens=2)]


class SyncGenModel(ChatModel):
    def generate(self, request: GenerationRequest) -> Iterator[DeltaLike]:
        yield from words(request)


class AsyncGenModel(ChatModel):
    async def generate(self, request: GenerationRequest) -> AsyncIterator[DeltaLike]:  # type: ignore[override]
        for delta in words(request):
            await asyncio.sleep(0)
            yield delta


class CoroutineModel(ChatModel):
    async def generate(self, request: GenerationRequest) -> list[DeltaLike]:  # type: ignore[override]
        return words(request)


class FunctionModel(ChatModel):
    def generate(self, request: GenerationRequest) -> list[DeltaLike]:
        return words(request)


ALL_KINDS = [SyncGenModel, AsyncGenModel, CoroutineModel, FunctionModel]


@pytest.mark.parametrize("model_cls", ALL_KINDS)
async def test_chat_completions_streaming_and_not(model_cls: type[ChatModel]) -> None:
    oai, _ = sdk_clients(model_cls())
    completion = await oai.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello world"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5
    stream = await oai.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Hello world"


@pytest.mark.parametrize("model_cls", ALL_KINDS)
async def test_every_protocol_from_one_method(model_cls: type[ChatModel]) -> None:
    oai, claude = sdk_clients(model_cls())

    response = await oai.responses.create(model="m", input="hi")
    assert (response.output_text, response.status) == ("Hello world", "completed")
    async with oai.responses.stream(model="m", input="hi") as rstream:
        assert (await rstream.get_final_response()).output_text == "Hello world"

    message = await claude.messages.create(model="m", max_tokens=16, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello world"
    async with claude.messages.stream(model="m", max_tokens=16, messages=USER) as mstream:  # type: ignore[arg-type]
        final = await mstream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 2)

    completion = await oai.completions.create(model="m", prompt="hi")
    assert completion.choices[0].text == "Hello world"


async def test_tool_calls_in_every_protocol() -> None:
    oai, claude = sdk_clients(SyncGenModel())
    chat = await oai.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])  # type: ignore[arg-type,list-item]
    call = (chat.choices[0].message.tool_calls or [])[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"Paris"}')  # type: ignore[union-attr]
    assert chat.choices[0].finish_reason == "tool_calls"

    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    response = await oai.responses.create(model="m", input="weather in Paris", tools=tools)  # type: ignore[arg-type,list-item]
    assert [item.type for item in response.output] == ["message", "function_call"]

    async with claude.messages.stream(
        model="m",
        max_tokens=16,
        messages=USER,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],  # type: ignore[arg-type,list-item]
    ) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.content[1].type == "tool_use"
    assert message.content[1].input == {"location": "Paris"}


async def test_stream_responses_are_event_streams() -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(SyncGenModel())), base_url="http://m")
    r = await http.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": USER, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.text.startswith("event: message_start\n")


async def test_default_predict_speaks_chat_completions() -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(SyncGenModel())), base_url="http://m")
    r = await http.post("/predict", json={"messages": USER})
    assert r.json()["choices"][0]["message"]["content"] == "Hello world"


async def test_invalid_requests_are_answered_in_each_protocols_error_shape() -> None:
    oai, claude = sdk_clients(SyncGenModel())
    with pytest.raises(openai.BadRequestError, match="messages: Input should be a valid list") as oai_error:
        await oai.chat.completions.create(model="m", messages=None)  # type: ignore[arg-type]
    assert oai_error.value.body == {
        "message": "Invalid request: messages: Input should be a valid list",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    with pytest.raises(openai.BadRequestError, match="Only n=1"):
        await oai.chat.completions.create(model="m", messages=USER, n=3)  # type: ignore[arg-type]
    bad_role = [{"role": "system", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError, match="messages.0.role: Input should be") as claude_error:
        await claude.messages.create(model="m", messages=bad_role, max_tokens=5)  # type: ignore[arg-type]
    assert claude_error.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_a_model_that_fails_before_its_first_delta_raises_instead_of_streaming() -> None:
    class Broken(ChatModel):
        def generate(self, request: GenerationRequest) -> Iterator[DeltaLike]:
            raise RuntimeError("no GPU")
            yield "unreachable"

    with pytest.raises(RuntimeError, match="no GPU"):
        await Broken().chat_completions({"messages": USER, "stream": True}, None)  # type: ignore[arg-type]


class FailsMidStream(ChatModel):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def generate(self, request: GenerationRequest) -> Iterator[DeltaLike]:
        yield "partial"
        raise self.exc


def errors_counted(protocol: str) -> float:
    return REGISTRY.get_sample_value("trestle_protocol_stream_errors_total", {"protocol": protocol}) or 0.0


async def test_a_failure_mid_stream_is_an_sdk_error_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    oai, claude = sdk_clients(FailsMidStream(RuntimeError("secret detail")))
    before = errors_counted("chat.completions"), errors_counted("messages")
    with caplog.at_level(logging.ERROR, logger="trestle.protocols"):
        stream = await oai.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError, match="Internal Server Error") as info:
            async for _ in stream:
                pass
        async with claude.messages.stream(model="m", max_tokens=5, messages=USER) as mstream:  # type: ignore[arg-type]
            with pytest.raises(anthropic.APIStatusError, match="api_error"):
                await mstream.get_final_message()
    assert "secret detail" not in str(info.value), "user exception messages stay in the logs"
    assert errors_counted("chat.completions") == before[0] + 1
    assert errors_counted("messages") == before[1] + 1
    records = [r for r in caplog.records if r.name == "trestle.protocols"]
    assert len(records) == 2
    assert all(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in records)


async def test_an_http_exception_mid_stream_keeps_its_detail_and_status() -> None:
    oai, claude = sdk_clients(FailsMidStream(HTTPException(429, "slow down")))
    stream = await oai.responses.create(model="m", input="hi", stream=True)
    with pytest.raises(openai.APIError, match="slow down"):
        async for _ in stream:
            pass
    async with claude.messages.stream(model="m", max_tokens=5, messages=USER) as mstream:  # type: ignore[arg-type]
        with pytest.raises(anthropic.APIStatusError) as info:
            await mstream.get_final_message()
    assert info.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_route_methods_take_the_request_as_the_server_expects() -> None:
    described = describe_model(SyncGenModel())
    for name in ("chat_completions", "completions", "responses", "messages", "predict"):
        method = getattr(described, name)
        assert method is not None, name
        assert (method.form, method.kind) == (ArgForm.INPUTS_AND_REQUEST, CallKind.ASYNC), name


class Embedder(EmbeddingModel):
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 0.5] for t in texts]

    def count_tokens(self, texts: list[str]) -> int:
        return 2 * len(texts)


async def test_embeddings_float_base64_and_errors() -> None:
    oai, _ = sdk_clients(Embedder())
    floats = await oai.embeddings.create(model="e", input=["ab", "abc"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [[2.0, 0.5], [3.0, 0.5]]
    assert floats.usage.prompt_tokens == 4
    decoded = await oai.embeddings.create(model="e", input="abcd")  # the SDK asks for base64 and decodes it
    assert decoded.data[0].embedding == [4.0, 0.5]
    with pytest.raises(openai.BadRequestError, match="Only text inputs"):
        await oai.embeddings.create(model="e", input=[[1, 2, 3]])
