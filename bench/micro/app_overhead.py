"""CPU cost of Trestle's ASGI app per request, without sockets (run on a quiet core).

    python -m bench.micro.app_overhead [bare|sync|async] [n]

Drives ``ModelApp`` with in-memory ASGI ``receive``/``send`` on uvloop and reports CPU
microseconds per request (``time.process_time``), so other processes on the box barely matter.
It isolates the framework's own work from the HTTP parser and the kernel.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from trestle.config import load_config
from trestle.http.app import ModelApp
from trestle.runtime import ModelRuntime
from trestle.settings import ServerSettings

PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "perfbench" / "peers" / "trestle"


async def main(kind: str, n: int) -> None:
    runtime: ModelRuntime | None = None
    app: Any
    path = "/v1/models/model:predict"
    if kind == "bare":  # the perfbench bare ASGI app: the floor for any ASGI framework
        sys.path.insert(0, str(PEERS.parents[1] / "apps"))
        from raw_asgi import app

        path = "/predict"
    else:
        truss = PEERS / kind
        settings = ServerSettings.from_env(truss, load_config(truss).config)
        app = ModelApp.build(settings)
        runtime = app.runtime
        await runtime.load()
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", b"8")],
    }
    body_msg = {"type": "http.request", "body": b'{"x": 1}', "more_body": False}
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Receive:
        """The body once, then nothing until a disconnect that never comes."""

        __slots__ = ("done",)

        def __init__(self) -> None:
            self.done = False

        async def __call__(self) -> Any:
            if not self.done:
                self.done = True
                return body_msg
            await never

    sent: list[Any] = [0, None]  # count, last message (keeping every message would make GC the bottleneck)

    async def send(message: Any) -> None:
        sent[0] += 1
        sent[1] = message

    async def one() -> None:
        await app(dict(scope), Receive(), send)

    for _ in range(2000):
        await one()
    sent[0] = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await one()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert sent[0] == 2 * n, sent[0]
    assert sent[1]["body"] == b'{"x":1}', sent[1]
    print(f"{kind}: {cpu / n * 1e6:.1f} us CPU/request ({wall / n * 1e6:.1f} us wall), n={n}")
    if runtime is not None:
        runtime.shutdown()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1] if len(sys.argv) > 1 else "async", int(sys.argv[2]) if len(sys.argv) > 2 else 20000))
