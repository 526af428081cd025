"""Synthetic batched model: a stand-in for a GPU.

One "GPU" (a lock) runs one batch at a time and a batch of n items costs 5 ms + 0.1 ms x n, so a
batch of 32 costs 8.2 ms against 163 ms for the same 32 items one by one. The input is returned
unchanged (the harness checks every response byte for byte).

``TRESTLE_BENCH_BATCHED=1``: ``predict`` is ``@trestle.batched(max_batch_size=32, max_wait_ms=5)``.
Otherwise it takes one input, a batch of one (5.1 ms).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import trestle

BATCHED = os.environ.get("TRESTLE_BENCH_BATCHED") == "1"
FIXED_S = 0.005
PER_ITEM_S = 0.0001
_gpu = threading.Lock()


def run_on_gpu(items: int) -> None:
    with _gpu:
        time.sleep(FIXED_S + PER_ITEM_S * items)


class Model:
    if BATCHED:

        @trestle.batched(max_batch_size=32, max_wait_ms=5)
        def predict(self, inputs: list[Any]) -> list[Any]:
            run_on_gpu(len(inputs))
            return inputs

    else:

        def predict(self, inputs: Any) -> Any:
            run_on_gpu(1)
            return inputs
