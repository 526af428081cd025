"""BentoML streaming peer: POST /stream {"op": "stream", "n": N} -> N chunks "chunk-NNNN\\n".

perfbench's BentoML service streams a fixed 100 chunks; the streaming cell needs N (1,000).
Run: bentoml serve bentoml_stream:Stream --host 127.0.0.1 --port <port>
"""

from collections.abc import AsyncGenerator

import bentoml


@bentoml.service(workers=1)
class Stream:
    @bentoml.api(route="/stream")
    async def stream(self, n: int, op: str = "stream") -> AsyncGenerator[str, None]:
        for i in range(n):
            yield f"chunk-{i:04d}\n"
