"""The relay to a ``docker_server`` truss's own server on a cluster replica (serving/custom_server.py),
against a real server process started from a start command, in process through httpx's ASGI transport."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from trestle.serving.custom_server import CustomServer

pytestmark = pytest.mark.anyio

SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200 if self.path != "/missing" else 404, {"get": self.path})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self._send(200, {"path": self.path, "got": body})

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_requests_are_relayed_to_the_trusss_own_server(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    port = free_port()
    server = CustomServer(f"{sys.executable} server.py {port}", port, "/ready", tmp_path)
    server.start()
    try:
        await server.wait_ready(30)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://replica") as client:
            posted = await client.post("/infer?x=1", json={"a": 1})
            assert posted.json() == {"path": "/infer?x=1", "got": {"a": 1}}
            assert (await client.get("/v1/models/model")).json() == {"get": "/v1/models/model"}
            missing = await client.get("/missing")
            assert missing.status_code == 404  # the server's own status, as it answered
    finally:
        server.stop()
    assert not server.alive


async def test_a_server_that_exits_fails_the_start_with_its_code(tmp_path: Path) -> None:
    server = CustomServer(f"{sys.executable} -c 'raise SystemExit(7)'", free_port(), "/ready", tmp_path)
    server.start()
    with pytest.raises(RuntimeError, match="exited with code 7"):
        await server.wait_ready(30)
