"""CPU cost of the connection limits (``trestle.asgi.connections``) per request, without sockets.

    python -m bench.micro.protocol_overhead [pairs] [n]

Feeds keep-alive requests (head and body in one read, as clients send them) to uvicorn's httptools
protocol and to the guarded one, over an in-memory transport, on uvloop, with a minimal ASGI app.
Alternates the two ``pairs`` times (``n`` requests each) and prints the median CPU microseconds per request
(``time.process_time``) and the median paired difference, so a busy box moves both alike.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from trestle.asgi.connections import guarded_protocol
from trestle.asgi.limits import ConnectionLimits

REQUEST = (
    b"POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 8\r\nUser-Agent: wrk\r\n\r\n{"x": 1}'
)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request_us(protocol: type[HttpToolsProtocol], n: int) -> float:
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    proto = protocol(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        proto.data_received(REQUEST)
        await asyncio.sleep(0)  # the request task runs
        await asyncio.sleep(0)  # its response completes
    elapsed = time.process_time() - start
    assert transport.writes >= n, "not every request was answered"
    return elapsed / n * 1e6


async def main(pairs: int, n: int) -> None:
    guarded = guarded_protocol(ConnectionLimits())
    plain, limited, diffs = [], [], []
    for i in range(pairs):
        order = [(False, HttpToolsProtocol), (True, guarded)]
        if i % 2:
            order.reverse()
        results = {is_guarded: await per_request_us(cls, n) for is_guarded, cls in order}
        plain.append(results[False])
        limited.append(results[True])
        diffs.append(results[True] - results[False])
    print(
        f"uvicorn httptools {statistics.median(plain):.2f} us/request, guarded {statistics.median(limited):.2f}, "
        f"paired difference {statistics.median(diffs):+.2f} us ({pairs} pairs of {n})"
    )


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30, int(sys.argv[2]) if len(sys.argv) > 2 else 5000))
