"""One model, every protocol: ``ChatModel`` and ``EmbeddingModel`` mixins for Truss models.

A model that subclasses ``ChatModel`` implements one method, ``generate(request)``, taking a
``GenerationRequest`` and returning (or being) a sync or async generator of deltas. The mixin
then provides the Truss ``/v1`` methods ``chat_completions``, ``completions``, ``responses`` and
``messages`` (and a default ``predict`` that speaks chat completions), each streaming or not as
the request asks::

    from trestle.protocols import ChatModel, GenerationRequest, Usage

    class Model(ChatModel):
        def generate(self, request: GenerationRequest):
            yield "Hello, "
            yield "world."
            yield Usage(prompt_tokens=3, completion_tokens=2)

Requests are validated on their own terms; a bad one is answered 400 in the protocol's error
shape. A stream's first delta is pulled before the response starts, so a model that fails at
once gets an ordinary HTTP error; a failure after that ends the stream with the protocol's error
frame. Disconnects close the model's generator (its ``finally`` runs).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar, Literal

import anyio.to_thread
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request  # a runtime import: the server resolves the annotation
from starlette.responses import Response

from trestle.batching import batched
from trestle.protocols import anthropic as an
from trestle.protocols import builders
from trestle.protocols import openai as oa
from trestle.protocols.deltas import DeltaLike
from trestle.protocols.encoders import (
    ChatCompletionsEncoder,
    CompletionsEncoder,
    MessagesEncoder,
    ResponsesEncoder,
    StreamEncoder,
)
from trestle.protocols.generation import (
    GenerationRequest,
    Protocol,
    ProtocolRequestError,
    from_chat_completions,
    from_completions,
    from_messages,
    from_responses,
)
from trestle.protocols.state import Generation
from trestle.protocols.streaming import END, DeltaSource, EventStreamResponse, encode_stream

__all__ = [
    "BatchedEmbeddingModel",
    "ChatModel",
    "EmbeddingModel",
    "GenerateResult",
    "error_response",
    "serve",
    "serve_embeddings",
    "serve_embeddings_batch",
]

Deltas = Iterable[DeltaLike] | AsyncIterable[DeltaLike]
GenerateResult = Deltas | Awaitable[Deltas]
GenerateFn = Callable[[GenerationRequest], GenerateResult]

_REQUEST_TYPES: dict[Protocol, type[BaseModel]] = {
    "chat.completions": oa.ChatCompletionRequest,
    "completions": oa.CompletionRequest,
    "responses": oa.ResponsesRequest,
    "messages": an.MessagesRequest,
}

_RESPONSES_ECHO = (
    "instructions",
    "max_output_tokens",
    "parallel_tool_calls",
    "previous_response_id",
    "temperature",
    "top_p",
    "tool_choice",
    "tools",
    "metadata",
)


def error_response(protocol: Protocol, status: int, message: str, *, param: str | None = None) -> Response:
    """An error response in the protocol's own shape (OpenAI ``{"error": ...}`` or Anthropic's)."""
    if protocol == "messages":
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors]
    first = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return "Invalid request: " + "; ".join(parts), first or None


def _parse(protocol: Protocol, body: Any) -> tuple[BaseModel, GenerationRequest]:
    raw = body if isinstance(body, dict) else {}
    parsed = _REQUEST_TYPES[protocol].model_validate(body)
    if isinstance(parsed, oa.ChatCompletionRequest):
        return parsed, from_chat_completions(parsed, raw)
    if isinstance(parsed, oa.CompletionRequest):
        return parsed, from_completions(parsed, raw)
    if isinstance(parsed, oa.ResponsesRequest):
        return parsed, from_responses(parsed, raw)
    assert isinstance(parsed, an.MessagesRequest)
    return parsed, from_messages(parsed, raw)


async def _call(generate: GenerateFn, request: GenerationRequest) -> Deltas:
    if inspect.isgeneratorfunction(generate) or inspect.isasyncgenfunction(generate):
        result: Any = generate(request)
    elif inspect.iscoroutinefunction(generate):
        result = await generate(request)
    else:  # a plain function may do real work before returning its deltas: keep it off the loop
        result = await anyio.to_thread.run_sync(generate, request)
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


def _encoder(protocol: Protocol, parsed: BaseModel, model: str) -> StreamEncoder:
    if isinstance(parsed, oa.ChatCompletionRequest | oa.CompletionRequest):
        include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
        cls = ChatCompletionsEncoder if protocol == "chat.completions" else CompletionsEncoder
        return cls(model=model, include_usage=include_usage)
    if isinstance(parsed, oa.ResponsesRequest):
        return ResponsesEncoder(model=model, echo=parsed.model_dump(include=set(_RESPONSES_ECHO)))
    return MessagesEncoder(model=model)


def _build(protocol: Protocol, parsed: BaseModel, gen: Generation, model: str) -> dict[str, Any]:
    if protocol == "chat.completions":
        return builders.chat_completion(gen, model=model)
    if protocol == "completions":
        return builders.completion(gen, model=model)
    if protocol == "responses":
        return builders.response(gen, model=model, echo=parsed.model_dump(include=set(_RESPONSES_ECHO)))
    return builders.message(gen, model=model)


async def serve(protocol: Protocol, body: Any, generate: GenerateFn, *, default_model: str = "model") -> Any:
    """Answer one request of ``protocol`` with ``generate``: a JSON dict, a stream or a 400."""
    try:
        parsed, request = _parse(protocol, body)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        return error_response(protocol, 400, message, param=param)
    except ProtocolRequestError as exc:
        return error_response(protocol, 400, exc.message, param=exc.param)
    model = request.model or default_model
    source = DeltaSource(await _call(generate, request))
    if not request.stream:
        gen = Generation(call_id_prefix="toolu_" if protocol == "messages" else "call_")
        try:
            while (delta := await source.next()) is not END:
                gen.add(delta)
            gen.close()
        finally:
            await source.aclose()
        return _build(protocol, parsed, gen, model)
    try:
        first = await source.next()  # a model that fails before its first delta gets an HTTP error
    except BaseException:
        await source.aclose()
        raise
    return EventStreamResponse(encode_stream(_encoder(protocol, parsed, model), source, first=first))


class ChatModel:
    """Mixin: implement ``generate``; get ``chat_completions``, ``completions``, ``responses``,
    ``messages`` and a default ``predict`` (chat completions) for free."""

    default_model_name: ClassVar[str] = "model"
    """Reported as ``model`` when a request names none."""

    def generate(self, request: GenerationRequest) -> GenerateResult:
        """Yield ``str``/``TextDelta``, ``ToolCallDelta``, ``Usage`` and ``Finish`` for ``request``."""
        raise NotImplementedError(f"{type(self).__name__} must implement generate(request)")

    async def chat_completions(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve("chat.completions", model_input, self.generate, default_model=self.default_model_name)

    async def completions(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve("completions", model_input, self.generate, default_model=self.default_model_name)

    async def responses(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve("responses", model_input, self.generate, default_model=self.default_model_name)

    async def messages(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve("messages", model_input, self.generate, default_model=self.default_model_name)

    async def predict(self, model_input: dict[str, Any], request: Request) -> Any:
        return await self.chat_completions(model_input, request)


async def serve_embeddings(
    body: Any,
    embed: Callable[[list[str]], Sequence[Any]],
    *,
    count_tokens: Callable[[list[str]], int] | None = None,
    default_model: str = "model",
) -> Any:
    """Answer an embeddings request: ``embed`` runs in a worker thread on the input texts."""
    parsed = _embedding_request(body)
    if isinstance(parsed, Response):
        return parsed
    request, strings = parsed
    vectors = await anyio.to_thread.run_sync(embed, strings)
    tokens = await anyio.to_thread.run_sync(count_tokens, strings) if count_tokens is not None else 0
    return _embeddings_answer(request, vectors, tokens, default_model)


async def serve_embeddings_batch(
    bodies: Sequence[Any],
    embed: Callable[[list[str]], Sequence[Any]],
    *,
    count_tokens: Callable[[list[str]], int] | None = None,
    default_model: str = "model",
) -> list[Any]:
    """Answer several embeddings requests with ONE ``embed`` call on all their texts (in a worker
    thread), for a ``@trestle.batched`` ``embeddings``. A request that is not valid gets its own
    400; the others are answered. Results are in the order of ``bodies``."""
    answers: list[Any] = [None] * len(bodies)
    valid: list[tuple[int, oa.EmbeddingRequest, list[str]]] = []
    texts: list[str] = []
    for index, body in enumerate(bodies):
        parsed = _embedding_request(body)
        if isinstance(parsed, Response):
            answers[index] = parsed
        else:
            valid.append((index, *parsed))
            texts.extend(parsed[1])
    if not valid:
        return answers

    def run() -> tuple[Sequence[Any], list[int]]:
        vectors = embed(texts)
        tokens = [count_tokens(strings) if count_tokens is not None else 0 for _, _, strings in valid]
        return vectors, tokens

    vectors, tokens = await anyio.to_thread.run_sync(run)
    start = 0
    for (index, request, strings), count in zip(valid, tokens, strict=True):
        answers[index] = _embeddings_answer(request, vectors[start : start + len(strings)], count, default_model)
        start += len(strings)
    return answers


def _embedding_request(body: Any) -> Response | tuple[oa.EmbeddingRequest, list[str]]:
    """The parsed request and its texts, or the 400 to answer."""
    try:
        parsed = oa.EmbeddingRequest.model_validate(body)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        return error_response("chat.completions", 400, message, param=param)
    texts = [parsed.input] if isinstance(parsed.input, str) else parsed.input
    if not all(isinstance(t, str) for t in texts):
        return error_response("chat.completions", 400, "Only text inputs are supported.", param="input")
    return parsed, [str(t) for t in texts]


def _embeddings_answer(request: oa.EmbeddingRequest, vectors: Sequence[Any], tokens: int, default: str) -> Any:
    encoding: Literal["float", "base64"] = request.encoding_format
    return builders.embeddings(vectors, model=request.model or default, encoding_format=encoding, prompt_tokens=tokens)


def _text_count(body: Any) -> float:
    """A request's weight for batching: how many texts it carries (1 for anything malformed)."""
    texts = body.get("input") if isinstance(body, dict) else None
    return float(len(texts)) if isinstance(texts, list) and texts else 1.0


class EmbeddingModel:
    """Mixin: implement ``embed(texts) -> vectors`` (and optionally ``count_tokens``); get
    ``embeddings`` (OpenAI's ``/v1/embeddings``, float or base64) and a default ``predict``."""

    default_model_name: ClassVar[str] = "model"

    def embed(self, texts: list[str]) -> Sequence[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement embed(texts)")

    def count_tokens(self, texts: list[str]) -> int:
        """Prompt tokens reported in ``usage``; 0 unless overridden."""
        return 0

    async def embeddings(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve_embeddings(
            model_input, self.embed, count_tokens=self.count_tokens, default_model=self.default_model_name
        )

    async def predict(self, model_input: dict[str, Any], request: Request) -> Any:
        return await serve_embeddings(
            model_input, self.embed, count_tokens=self.count_tokens, default_model=self.default_model_name
        )


class BatchedEmbeddingModel(EmbeddingModel):
    """``EmbeddingModel`` whose ``/v1/embeddings`` requests are batched (``@trestle.batched``):
    concurrent requests share one ``embed`` call. A batch holds at most 32 requests and 256 texts
    (a request's weight is its number of texts); ``runtime.batching`` in config.yaml changes that.
    ``predict`` stays unbatched."""

    @batched(max_batch_size=32, max_wait_ms=5, weight=_text_count, max_batch_weight=256)
    async def embeddings(self, model_inputs: list[Any]) -> list[Any]:  # type: ignore[override]
        return await serve_embeddings_batch(
            model_inputs, self.embed, count_tokens=self.count_tokens, default_model=self.default_model_name
        )
