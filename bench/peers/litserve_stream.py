"""LitServe streaming peer: POST /stream {"op": "stream", "n": N} -> N chunks "chunk-NNNN\\n".

perfbench's LitServe server streams a fixed 100 chunks; the streaming cell needs N (1,000).
LitServer defaults otherwise (1 API-server process + 1 worker process). Port: $LS_PORT.
"""

import os
from collections.abc import Iterator

import litserve as ls


class StreamAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        pass

    # LitServe turns decode_request's `request` annotation and encode_response's return annotation
    # into the FastAPI endpoint's types: both stay unannotated, as in perfbench's server.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return int(request["n"])

    def predict(self, n: int) -> Iterator[str]:
        for i in range(n):
            yield f"chunk-{i:04d}\n"

    def encode_response(self, output: Iterator[str]):  # type: ignore[no-untyped-def]
        yield from output


if __name__ == "__main__":
    server = ls.LitServer(StreamAPI(api_path="/stream", stream=True), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ.get("LS_PORT", "8000")), generate_client_file=False)
