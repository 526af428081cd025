"""LitServe peer of the batch cell: examples/embeddings' model (all-MiniLM-L6-v2) behind LitServe's own
``/v1/embeddings`` (``OpenAIEmbeddingSpec``) with its batching, configured as Trestle's batched target
(``LitAPI(max_batch_size=32, batch_timeout=0.005)``).

POST /v1/embeddings {"model": ..., "input": "one text"} -> OpenAI's embeddings list. A batch of
requests is one ``encode`` call, the tokens counted per request (bench/peers/batch_models.py), as
Trestle's ``BatchedEmbeddingModel``. LitServe's spec takes one text per request when it batches.
LitServer defaults otherwise (1 API-server process + 1 worker process). Port: $LS_PORT.
"""

import os
import sys
from pathlib import Path

import litserve as ls
from litserve.specs import OpenAIEmbeddingSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_models import MAX_BATCH_SIZE, WAIT_S, embed_texts, load_embedder


class EmbeddingsAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = load_embedder()

    # Unannotated, as in perfbench's server: LitServe turns annotations into the endpoint's types.
    def predict(self, inputs):  # type: ignore[no-untyped-def]
        # inputs: one text per request (the spec's decode_request gives the request's `input`)
        return embed_texts(self.model, [[text] for text in inputs])

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        vectors, tokens = output
        return {"embeddings": vectors, "prompt_tokens": tokens, "total_tokens": tokens}


if __name__ == "__main__":
    api = EmbeddingsAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=WAIT_S)
    server = ls.LitServer(api, spec=OpenAIEmbeddingSpec(), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ.get("LS_PORT", "8000")), generate_client_file=False)
