"""A real webhook receiver on loopback for the async tests: it checks the X-BASETEN-SIGNATURE of every
delivery against the secrets it is given (as a user's receiver would, with hmac.compare_digest) and
keeps what arrived."""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def signatures_valid(body: bytes, header: str, secrets: list[str]) -> list[bool]:
    """For each secret, whether one of the header's ``v1=`` entries is its HMAC-SHA256 of the body."""
    entries = [part.strip().partition("=") for part in header.split(",")]
    found = []
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        found.append(any(v == "v1" and hmac.compare_digest(sig, expected) for v, _, sig in entries))
    return found


class Receiver:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets = list(secrets or [])
        """Secrets every delivery must be signed with (each one: rotation sends two)."""
        self.fail_first = 0
        """Answer 500 to this many deliveries of each request id before accepting it."""
        self.deliveries: list[dict[str, Any]] = []
        self.headers: list[str] = []
        self.bad_signatures: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.tries: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                header = self.headers.get("X-BASETEN-SIGNATURE", "")
                status = receiver._receive(body, header)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _receive(self, body: bytes, header: str) -> int:
        payload = json.loads(body)
        request_id = payload["request_id"]
        with self.lock:
            self.tries[request_id] += 1
            self.headers.append(header)
            if not self.secrets or not all(signatures_valid(body, header, self.secrets)):
                self.bad_signatures.append(request_id)
            if self.tries[request_id] <= self.fail_first:
                return 500
            self.counts[request_id] += 1
            self.deliveries.append(payload)
        return 200

    def by_id(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {d["request_id"]: d for d in self.deliveries}

    def wait(self, count: int, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """The deliveries by request id once ``count`` distinct ids arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.by_id()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{len(self.by_id())} of {count} webhooks arrived in {timeout}s")


@contextmanager
def webhook_receiver(secrets: list[str] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(secrets)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


async def arrived(receiver: Receiver, count: int, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """``Receiver.wait`` for async tests (it sleeps on the event loop, not the thread)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = receiver.by_id()
        if len(got) >= count:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(receiver.by_id())} of {count} webhooks arrived in {timeout}s")
