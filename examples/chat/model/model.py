"""A deterministic, dependency-free chat model: Trestle's default demo.

One ``generate`` method serves /v1/chat/completions, /v1/completions, /v1/responses and
/v1/messages (through ``trestle.protocols.ChatModel``); ``embed`` serves /v1/embeddings.

What it says, given the last message:
- a tool result: "The <tool> tool says: <result>";
- "weather in <city>" while tools are offered: a ``get_weather`` call with ``{"location": city}``;
- "count to <n>": "1 2 3 ... n";
- anything containing "explode": three words, then an error (to see a mid-stream error frame);
- anything else: "You said: <text>".
It streams word by word (``CHAT_WORD_DELAY_S`` or ``model_metadata.word_delay_s`` seconds apart),
honours ``max_tokens`` (one word = one token) and stop sequences, and reports usage. With
``CHAT_MARKER_DIR`` set, each generation writes ``<dir>/<id>.json`` from its ``finally`` block,
recording whether it ran to the end, so you can watch cancellation work.
"""

import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from trestle.protocols import (
    ChatModel,
    DeltaLike,
    EmbeddingModel,
    Finish,
    GenerationRequest,
    Message,
    Usage,
    tool_call,
)

WEATHER = re.compile(r"weather (?:in|for|at) ([A-Za-z][A-Za-z .'-]*[A-Za-z])", re.IGNORECASE)
COUNT = re.compile(r"count to (\d+)", re.IGNORECASE)
EMBEDDING_DIMENSIONS = 32  # SHA-512 gives 64 bytes: 32 two-byte values


class Model(ChatModel, EmbeddingModel):
    default_model_name = "chat"

    def __init__(self, **kwargs: Any) -> None:
        metadata = (kwargs.get("config") or {}).get("model_metadata") or {}
        self._delay = float(os.environ.get("CHAT_WORD_DELAY_S", metadata.get("word_delay_s", 0)))
        marker_dir = os.environ.get("CHAT_MARKER_DIR")
        self._marker_dir = Path(marker_dir) if marker_dir else None

    def load(self) -> None:
        pass

    # --- one generation method for every chat protocol ---------------------------------------

    def generate(self, request: GenerationRequest) -> Generator[DeltaLike, None, None]:
        yield Usage(prompt_tokens=sum(len(m.content.split()) for m in request.messages))
        emitted = 0
        completed = False
        try:
            call = self._tool_call(request)
            if call is not None:
                yield call
                yield Usage(completion_tokens=1)
                completed = True
                return
            text = ""
            for word in self._words(request.messages[-1] if request.messages else Message(role="user")):
                if request.max_tokens is not None and emitted >= request.max_tokens:
                    yield Usage(completion_tokens=emitted)
                    yield Finish("length")
                    completed = True
                    return
                piece = word if not text else " " + word
                hit = next((s for s in request.stop if s and s in text + piece), None)
                if hit is not None:
                    cut = (text + piece).index(hit)
                    if cut > len(text):
                        yield (text + piece)[len(text) : cut]
                    yield Usage(completion_tokens=emitted)
                    yield Finish("stop", stop_sequence=hit)
                    completed = True
                    return
                if self._delay and emitted:
                    time.sleep(self._delay)
                text += piece
                emitted += 1
                yield piece
            yield Usage(completion_tokens=emitted)
            completed = True
        finally:
            if self._marker_dir is not None:
                marker = {"completed": completed, "words": emitted, "protocol": request.protocol}
                (self._marker_dir / f"{uuid.uuid4().hex}.json").write_text(json.dumps(marker))

    def _tool_call(self, request: GenerationRequest) -> DeltaLike | None:
        if not request.tools or request.tool_choice.mode == "none" or not request.messages:
            return None
        last = request.messages[-1]
        match = WEATHER.search(last.content) if last.role == "user" else None
        names = [t.name for t in request.tools]
        if match is None or "get_weather" not in names:
            return None
        return tool_call("get_weather", {"location": match.group(1).strip()})

    def _words(self, last: Message) -> Iterator[str]:
        if last.role == "tool":
            yield from f"The {last.name or 'tool'} tool says: {last.content}".split()
            return
        count = COUNT.search(last.content)
        if count is not None:
            yield from (str(i) for i in range(1, int(count.group(1)) + 1))
            return
        if "explode" in last.content.lower():
            yield from ("Exploding", "in", "three")
            raise RuntimeError("The chat model exploded, as asked.")
        yield from f"You said: {last.content}".split()

    # --- embeddings ----------------------------------------------------------------------------

    def embed(self, texts: list) -> list:
        """A unit vector per text, derived from its SHA-512 (same text, same vector)."""
        vectors = []
        for text in texts:
            digest = hashlib.sha512(text.encode()).digest()
            pairs = (digest[2 * i : 2 * i + 2] for i in range(EMBEDDING_DIMENSIONS))
            raw = [int.from_bytes(pair, "big") / 32767.5 - 1.0 for pair in pairs]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return vectors

    def count_tokens(self, texts: list) -> int:
        return sum(len(t.split()) for t in texts)

    # --- predict: {"prompt": ..., "stream": bool, "max_tokens": n} -------------------------------

    def predict(self, model_input: dict) -> Any:
        request = GenerationRequest(
            protocol="completions",
            model=self.default_model_name,
            messages=[Message(role="user", content=str(model_input.get("prompt", "")))],
            max_tokens=model_input.get("max_tokens"),
            stream=bool(model_input.get("stream")),
            raw=model_input,
        )
        if request.stream:
            return self._text_stream(request)
        text = "".join(d for d in self.generate(request) if isinstance(d, str))
        return {"model": self.default_model_name, "text": text}

    def _text_stream(self, request: GenerationRequest) -> Iterator[str]:
        deltas = self.generate(request)
        try:
            for delta in deltas:
                if isinstance(delta, str):
                    yield delta
        finally:
            deltas.close()
