"""BentoML peers of the batch cell: its adaptive batching (``@bentoml.api(batchable=True)``) with
batches of at most 32, as Trestle's batched targets, one worker.

BentoML has no wait setting: its dispatcher learns how long to hold a batch open from the
measured cost of batches (never longer than 0.95 x ``max_latency_ms``), and answers 503 to a
request it expects to finish later than ``max_latency_ms``. That stays at BentoML's default
(60 s), so no request of the benchmark is refused; the wait is BentoML's own.

A batchable API takes a list, so one request carries a list of one input and gets a list of one
output:
  Synthetic   POST /predict {"items": [{"x": 1}]} -> [{"x": 1}]: the stand-in GPU (5 ms + 0.1 ms per
              item, one batch at a time; a sync API, which BentoML runs in a thread)
  Embeddings  POST /v1/embeddings {"items": [<OpenAI body>]} -> [<OpenAI embeddings list>]:
              all-MiniLM-L6-v2, one ``encode`` per batch (bench/peers/batch_models.py)
Run (cwd bench/peers): bentoml serve bentoml_batched:Synthetic --host 127.0.0.1 --port <port>
"""

import sys
from pathlib import Path
from typing import Any

import bentoml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_models import MAX_BATCH_SIZE, embed_bodies, load_embedder, run_on_gpu

MAX_LATENCY_MS = 60_000


@bentoml.service(workers=1)
class Synthetic:
    @bentoml.api(route="/predict", batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        run_on_gpu(len(items))
        return items


@bentoml.service(workers=1)
class Embeddings:
    def __init__(self) -> None:
        self.model = load_embedder()

    @bentoml.api(route="/v1/embeddings", batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def embeddings(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return embed_bodies(self.model, items)
