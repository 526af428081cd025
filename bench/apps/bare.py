"""Bare ASGI app: the limit for a Python model server on uvicorn, the baseline of every ratio.

Runs on uvicorn (httptools, uvloop, no access log) from the same virtualenv as Trestle. No
framework: read the body, decode, call the "model" inline, encode, two ASGI messages.

  POST /predict          JSON echo (orjson)
  POST /predict_msgpack  msgpack echo
  POST /stream           {"n": N} -> async generator of N chunks, one ASGI message per chunk
  POST /stream_thread    same from a sync generator, one thread hop per chunk (Starlette's
                         `iterate_in_threadpool` pattern, what Truss does for sync generators)
  GET  /health           200
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio.to_thread
import msgpack
import orjson

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DONE = object()


def sync_chunks(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield f"chunk-{i:04d}\n".encode()


async def async_chunks(n: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield f"chunk-{i:04d}\n".encode()


async def threaded_chunks(n: int) -> AsyncIterator[bytes]:
    it = sync_chunks(n)
    while (item := await anyio.to_thread.run_sync(next, it, _DONE)) is not _DONE:
        yield item  # type: ignore[misc]


async def read_body(receive: Receive) -> bytes:
    msg = await receive()
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body", False):
        return body
    parts = [body]
    while msg.get("more_body", False):
        msg = await receive()
        parts.append(msg.get("body", b""))
    return b"".join(parts)


async def respond(send: Send, body: bytes, content_type: bytes, status: int = 200) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream(send: Send, chunks: AsyncIterator[bytes]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path = scope["path"]
    if path == "/health":
        return await respond(send, b"{}", b"application/json")
    body = await read_body(receive)
    if path == "/predict":
        return await respond(send, orjson.dumps(orjson.loads(body)), b"application/json")
    if path == "/predict_msgpack":
        return await respond(send, msgpack.packb(msgpack.unpackb(body)), b"application/octet-stream")
    if path == "/stream":
        return await stream(send, async_chunks(int(orjson.loads(body)["n"])))
    if path == "/stream_thread":
        return await stream(send, threaded_chunks(int(orjson.loads(body)["n"])))
    return await respond(send, b'{"detail":"not found"}', b"application/json", 404)
