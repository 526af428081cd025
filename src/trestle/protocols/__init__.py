"""Protocol helpers: make a custom Python model speak OpenAI and Anthropic APIs correctly.

- ``ChatModel``: implement ``generate(request)`` once; serve ``/v1/chat/completions``,
  ``/v1/completions``, ``/v1/responses`` and ``/v1/messages``, streaming and not.
- ``EmbeddingModel``: implement ``embed(texts)``; serve ``/v1/embeddings`` (``BatchedEmbeddingModel``:
  the same, with concurrent requests batched into one ``embed`` call).
- Deltas a generation yields: ``str``/``TextDelta``, ``ToolCallDelta`` (or ``tool_call(...)``),
  ``Usage``, ``Finish``.
- Lower level: the sans-IO stream encoders, ``encode_stream``/``encode_stream_sync``,
  ``EventStreamResponse``, the non-streaming ``builders`` and the pydantic types in
  ``trestle.protocols.openai`` and ``trestle.protocols.anthropic``.

The types are pydantic 2 models: under pydantic 1 the import fails with a message that says so.
"""

from __future__ import annotations

import trestle.protocols._pydantic2  # noqa: F401  (first: a clear error under pydantic 1)
from trestle.protocols import anthropic, builders, openai, sse
from trestle.protocols.adapter import (
    BatchedEmbeddingModel,
    ChatModel,
    EmbeddingModel,
    error_response,
    serve,
    serve_embeddings,
    serve_embeddings_batch,
)
from trestle.protocols.deltas import Delta, DeltaLike, Finish, FinishReason, TextDelta, ToolCallDelta, Usage, tool_call
from trestle.protocols.encoders import (
    ChatCompletionsEncoder,
    CompletionsEncoder,
    MessagesEncoder,
    ResponsesEncoder,
    StreamEncoder,
)
from trestle.protocols.generation import (
    GenerationRequest,
    Message,
    Protocol,
    ProtocolRequestError,
    Tool,
    ToolCall,
    ToolChoice,
)
from trestle.protocols.state import Generation
from trestle.protocols.streaming import (
    STREAM_ERRORS,
    DeltaSource,
    EventStreamResponse,
    encode_stream,
    encode_stream_sync,
)

__all__ = [
    "STREAM_ERRORS",
    "ChatCompletionsEncoder",
    "ChatModel",
    "CompletionsEncoder",
    "Delta",
    "DeltaLike",
    "DeltaSource",
    "BatchedEmbeddingModel",
    "EmbeddingModel",
    "EventStreamResponse",
    "Finish",
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "Message",
    "MessagesEncoder",
    "Protocol",
    "ProtocolRequestError",
    "ResponsesEncoder",
    "StreamEncoder",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "anthropic",
    "builders",
    "encode_stream",
    "encode_stream_sync",
    "error_response",
    "openai",
    "serve",
    "serve_embeddings",
    "serve_embeddings_batch",
    "sse",
    "tool_call",
]
