"""Hostile connections against a real server: huge or endless heads, stalled bodies, idle sockets by the
hundred. Each answer is the right status, and the server keeps serving everyone else meanwhile."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerHandle, run_server, write_truss
from tests.support.sockets import websocket_bombs

ECHO = "class Model:\n    def predict(self, model_input):\n        return model_input\n"
LIMITS = {
    "TRESTLE_HEADER_TIMEOUT": "1",
    "TRESTLE_BODY_TIMEOUT": "1",
    "TRESTLE_MAX_CONNECTIONS": "40",
    "TRESTLE_MAX_HEADER_BYTES": "16384",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    truss = write_truss(tmp_path_factory.mktemp("conn") / "t", ECHO)
    with run_server(truss, env=LIMITS) as handle:
        yield handle


def _connect(server: ServerHandle) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _still_serves(server: ServerHandle) -> None:
    response = httpx.post(server.url + "/v1/models/model:predict", json={"ok": 1}, timeout=10)
    assert response.status_code == 200 and response.json() == {"ok": 1}


def test_a_huge_header_gets_431_and_the_connection_is_closed(server: ServerHandle) -> None:
    sock = _connect(server)
    sock.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(64):  # 4 MiB of one header value, far past the 16 KiB limit
            sock.sendall(b"a" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"error":"request head larger than 16384 bytes"' in answer
    _still_serves(server)


def test_a_head_over_the_limit_that_completes_in_a_later_read_gets_431(server: ServerHandle) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /v1/models/model HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 10_000)  # under 16 KiB so far
    time.sleep(0.2)  # a separate read on the server
    sock.sendall(b"a" * 10_000 + b"\r\n\r\n")  # 20 KB in all, complete in this read
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    _still_serves(server)


def test_too_many_headers_get_431(server: ServerHandle) -> None:
    headers = {f"x-h{i}": "1" for i in range(150)}
    response = httpx.get(server.url + "/v1/models/model", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.json() == {"error": "more than 100 header fields"}
    _still_serves(server)


def test_a_head_that_never_ends_gets_408(server: ServerHandle) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /v1/models/model HTTP/1.1\r\nHost: x\r\n")  # never the blank line
    answer = _read_all(sock)  # returns when the server closes: it does, after the 1 s head deadline
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request head not received within 1s" in answer


def test_a_connection_that_sends_nothing_is_closed_quietly(server: ServerHandle) -> None:
    sock = _connect(server)
    assert _read_all(sock) == b""  # closed (after the head deadline) without a response
    sock.close()


def test_a_stalled_body_gets_408_and_the_model_is_not_called(server: ServerHandle) -> None:
    sock = _connect(server)
    sock.sendall(b'POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":')
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"no request body received for 1s" in answer
    _still_serves(server)


def test_idle_connections_are_shed_so_new_clients_are_served(tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", ECHO)
    with run_server(truss, env={**LIMITS, "TRESTLE_HEADER_TIMEOUT": "60"}) as server:
        held = [_connect(server) for _ in range(60)]  # more than the cap of 40, none sends a byte
        try:
            for _ in range(5):
                _still_serves(server)  # new clients are served: the oldest idle sockets made room
            closed, _, _ = select.select(held, [], [], 1.0)  # readable = EOF from the server
            oldest, newest = set(held[:20]), set(held[-15:])
            assert len(oldest & set(closed)) >= 15, f"{len(closed)} closed, not the oldest"
            assert not newest & set(closed), "the newest connections were shed before the oldest"
        finally:
            for sock in held:
                sock.close()


def test_a_keep_alive_client_is_not_cut_by_the_deadlines(server: ServerHandle) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):
            assert client.post("/v1/models/model:predict", json={"n": 1}).status_code == 200
        time.sleep(0.5)  # below the keep-alive time-out: the pooled connection is reused
        assert client.post("/v1/models/model:predict", json={"n": 2}).json() == {"n": 2}


def test_limits_do_not_touch_an_ordinary_large_body(server: ServerHandle, tmp_path: Path) -> None:
    payload = {"blob": "x" * (4 << 20)}  # 4 MiB body, arriving in many reads
    response = httpx.post(server.url + "/v1/models/model:predict", json=payload, timeout=30)
    assert response.status_code == 200 and len(response.json()["blob"]) == 4 << 20


WEBSOCKET_ECHO = """
class Model:
    async def websocket(self, websocket):
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(str(len(text)))
"""


def test_a_websocket_message_that_decompresses_past_the_limit_is_refused(tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    truss = write_truss(tmp_path / "ws", WEBSOCKET_ECHO)
    with run_server(truss, env={"TRESTLE_WS_MAX_BYTES": str(1 << 20)}) as server:
        url = server.url.replace("http", "ws") + "/v1/websocket"
        with connect(url, compression="deflate", max_size=None) as ws:
            ws.send("a" * 1000)
            assert ws.recv() == "1000"
            ws.send("a" * (8 << 20))  # 8 MiB of one letter: a few KiB on the wire, past the 1 MiB limit
            with pytest.raises(ConnectionClosed):
                ws.recv()
            assert ws.close_code == 1009  # message too big
        with connect(url) as ws:  # and the server goes on serving
            ws.send("ok")
            assert ws.recv() == "2"


def test_websocket_bombs_do_not_keep_their_memory(tmp_path: Path) -> None:
    """Rounds of messages that inflate past the limit: what each inflated is given back (asgi/memory.py)."""
    truss = write_truss(tmp_path / "ws", WEBSOCKET_ECHO)
    with run_server(truss, env={"TRESTLE_WS_MAX_BYTES": str(16 << 20)}) as server:
        codes, grown = websocket_bombs(server.url.replace("http", "ws") + "/v1/websocket", server.process.pid)
    assert codes == [1009] * 13
    assert grown < 48, f"{grown} MiB kept after 12 bombed sockets of 16 MiB each"
