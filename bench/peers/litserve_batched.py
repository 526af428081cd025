"""LitServe peer of the batch cell: the synthetic stand-in GPU (bench/models/synthetic) with
LitServe's own batching, configured as Trestle's batched target (batches of 32, 5 ms wait).

POST /predict {"x": 1} -> {"x": 1}. One batch at a time costs 5 ms + 0.1 ms per item
(bench/peers/batch_models.py). LitServer defaults otherwise (1 API-server process + 1 worker
process). Port: $LS_PORT.
"""

import os
import sys
from pathlib import Path

import litserve as ls

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_models import MAX_BATCH_SIZE, WAIT_S, run_on_gpu


class BatchedAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        pass

    # Unannotated, as in perfbench's server: LitServe turns annotations into the endpoint's types.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def batch(self, inputs):  # type: ignore[no-untyped-def]
        return list(inputs)

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        run_on_gpu(len(inputs))
        return inputs

    def unbatch(self, output):  # type: ignore[no-untyped-def]
        return list(output)

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return output


if __name__ == "__main__":
    api = BatchedAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=WAIT_S)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ.get("LS_PORT", "8000")), generate_client_file=False)
