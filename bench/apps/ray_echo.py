"""A plain Ray Serve deployment: the JSON echo bench/models/async answers, with nothing of Trestle.

The baseline of the Ray cells (``bench/ray.py``): the same Ray, the same proxy, the same
concurrency cap; Trestle on Ray should reach at least 0.9x its throughput.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response


@serve.deployment
class PlainEcho:
    async def __call__(self, request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")


def app(args: dict[str, Any]) -> Any:
    deployment: Any = PlainEcho
    return deployment.bind()
