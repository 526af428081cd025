"""The gateway's client to the replicas (edge/upstream.py) against small servers on loopback that do
what replicas do and what failing ones do, on both loops the platform may run (uvloop's transports are
not asyncio's classes)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from trestle.platform.edge import upstream as upstream_module
from trestle.platform.edge.upstream import Broken, Refused, Silent, Upstream

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=[pytest.param(False, id="asyncio"), pytest.param(True, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return "asyncio", {"use_uvloop": request.param}


class Replica:
    """A loopback server running ``handler`` for each connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    first, *lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
    body = b""
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return first, headers, body


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-length: %d\r\n" % len(body) + extra + b"\r\n" + body


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        first, headers, body = await read_request(reader)
        writer.write(answer(first + b"|" + body, extra=b"x-seen-host: " + headers[b"host"] + b"\r\n"))
        await writer.drain()


async def test_keep_alive_one_connection_for_sequential_requests() -> None:
    replica = Replica(echo)
    async with replica as url:
        client = Upstream(5)
        for n in range(3):
            response = await client.request("POST", url + "/trestle-d1", "/predict?x=1", [], b"n=%d" % n)
            assert response.status == 200
            assert await response.read() == b"POST /trestle-d1/predict?x=1 HTTP/1.1|n=%d" % n
            assert (b"x-seen-host", url.removeprefix("http://").encode()) in response.headers
            response.release()
        assert replica.connections == 1
        client.close()


async def test_a_streamed_body_is_sent_chunked_or_with_the_clients_length() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"ef"):
            yield part

    async with Replica(echo) as url:
        client = Upstream(5)
        for length in (None, 6):
            response = await client.request("PUT", url, "/up", [], parts(), streamed_length=length)
            assert await response.read() == b"PUT /up HTTP/1.1|abcdef"
            response.release()
        client.close()


async def test_the_answer_streams_as_the_replica_writes_it() -> None:
    go_on = asyncio.Event()

    async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go_on.wait()
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()

    async with Replica(streaming) as url:
        client = Upstream(5)
        response = await client.request("GET", url, "/stream", [], b"")
        chunks = response.chunks()
        assert await chunks.__anext__() == b"first"  # before the rest was written
        go_on.set()
        assert [chunk async for chunk in chunks] == [b"last"]
        assert response.complete
        response.release()
        client.close()


async def test_a_silent_replica_is_silent_and_a_closed_port_refused() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with Replica(silent) as url:
        client = Upstream(0.2)
        with pytest.raises(Silent):
            await client.request("POST", url, "/predict", [], b"{}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(Refused):
        await Upstream(1).request("POST", f"http://127.0.0.1:{port}", "/predict", [], b"{}")


async def test_a_replica_dying_mid_answer_is_broken_and_its_connection_not_reused() -> None:
    async def dying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    replica = Replica(dying)
    async with replica as url:
        client = Upstream(5)
        response = await client.request("POST", url, "/predict", [], b"{}")
        with pytest.raises(Broken):
            await response.read()
        response.release()  # not complete: closed, not pooled
        with pytest.raises(Broken):
            await (await client.request("POST", url, "/predict", [], b"{}")).read()
        assert replica.connections == 2


async def test_head_answers_end_with_their_head_and_interim_answers_are_skipped() -> None:
    async def heads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, _, _ = await read_request(reader)
        if first.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n")  # no body follows
        else:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"done"))
        await writer.drain()
        await asyncio.sleep(1)

    async with Replica(heads) as url:
        client = Upstream(0.5)
        head = await client.request("HEAD", url, "/", [], b"")
        assert (head.status, await head.read()) == (200, b"")
        head.release()
        posted = await client.request("POST", url, "/", [], b"x")
        assert (posted.status, await posted.read()) == (200, b"done")
        client.close()


async def test_an_idle_connection_is_dropped_before_the_replica_would(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "KEEPALIVE_SECONDS", 0.05)
    replica = Replica(echo)
    async with replica as url:
        client = Upstream(5)
        for _ in range(2):
            response = await client.request("POST", url, "/", [], b"")
            await response.read()
            response.release()
            await asyncio.sleep(0.1)
        assert replica.connections == 2
        client.close()
