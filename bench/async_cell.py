"""The async cell (inside a platform round): completed async requests per second end to end, beside
sync predict on the same replica.

  sync predict     ``async_n`` POSTs to ``/models/<name>/environments/production/predict`` from
                   ``ASYNC_CONC`` client threads (keep-alive); requests/s from the first send to the last
                   answer, every answer checked
  async completed  ``async_n`` POSTs to ``.../async_predict`` (a webhook to a receiver on loopback) from
                   the same threads; completed/s from the first submit to the last webhook received, every
                   webhook's ``X-BASETEN-SIGNATURE`` and ``data`` checked, each id exactly once

The deployment's ``concurrency_target`` is set to ``ASYNC_CONC`` first so async work may use the same
concurrency the sync clients do (the dispatcher's limit is ``replicas × concurrency_target``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ASYNC_CONC = 16


class _Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.got: dict[str, Any] = {}
        self.bad = 0
        self.dupes = 0
        self.done = threading.Event()
        self.want = 0
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.receive(body, self.headers.get("X-BASETEN-SIGNATURE", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, body: bytes, header: str) -> None:
        expected = "v1=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        payload = json.loads(body)
        with self.lock:
            if not any(hmac.compare_digest(part.strip(), expected) for part in header.split(",")):
                self.bad += 1
            if payload["request_id"] in self.got:
                self.dupes += 1
            self.got[payload["request_id"]] = payload
            if len(self.got) >= self.want:
                self.done.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fan_out(n: int, conc: int, port: int, send: Callable[[http.client.HTTPConnection, int], None]) -> None:
    """``send(conn, i)`` for i in range(n), over ``conc`` threads with one keep-alive connection each."""
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                send(conn, i)
        except BaseException as e:  # reported after the join
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client thread(s) failed: {errors[0]!r}")


def run(port: int, auth: dict[str, str], name: str, deployment_id: str, n: int) -> list[dict[str, Any]]:
    """The two records (sync predict, async completed), each with ``rps`` and ``valid``."""
    headers = {**auth, "Content-Type": "application/json"}

    def call(method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data) if data else None

    call("POST", f"/v1/deployments/{deployment_id}/scale", {"concurrency_target": ASYNC_CONC})
    base = f"/models/{name}/environments/production"
    records: list[dict[str, Any]] = []

    bad_sync: list[int] = []

    def sync(conn: http.client.HTTPConnection, i: int) -> None:
        conn.request("POST", f"{base}/predict", body=json.dumps({"i": i}), headers=headers)
        response = conn.getresponse()
        if response.status != 200 or json.loads(response.read()) != {"i": i}:
            bad_sync.append(i)

    t0 = time.monotonic()
    _fan_out(n, ASYNC_CONC, port, sync)
    secs = time.monotonic() - t0
    records.append(
        {"label": "sync predict", "n": n, "c": ASYNC_CONC, "rps": round(n / secs, 1), "valid": not bad_sync}
        | ({"why": f"{len(bad_sync)} wrong answers"} if bad_sync else {})
    )

    receiver = _Receiver(call("GET", "/v1/webhooks/secret")["secret"])
    receiver.want = n
    ids: list[str] = []

    def submit(conn: http.client.HTTPConnection, i: int) -> None:
        body = {"model_input": {"i": i}, "webhook_endpoint": receiver.url}
        conn.request("POST", f"{base}/async_predict", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"async_predict: {response.status} {data[:200]!r}")
        ids.append(json.loads(data)["request_id"])

    try:
        t0 = time.monotonic()
        _fan_out(n, ASYNC_CONC, port, submit)
        finished = receiver.done.wait(600)
        secs = time.monotonic() - t0
        inputs = sorted(p["data"]["i"] for p in receiver.got.values() if isinstance(p.get("data"), dict))
        why = []
        if not finished:
            why.append(f"only {len(receiver.got)} of {n} webhooks in 600 s")
        if receiver.bad:
            why.append(f"{receiver.bad} bad signatures")
        if receiver.dupes:
            why.append(f"{receiver.dupes} duplicate deliveries")
        if set(receiver.got) != set(ids) or inputs != list(range(n)):
            why.append("webhooks do not match the requests")
        rec: dict[str, Any] = {"label": "async completed", "n": n, "c": ASYNC_CONC, "rps": round(n / secs, 1)}
        records.append(rec | {"valid": not why} | ({"why": "; ".join(why)} if why else {}))
    finally:
        receiver.close()
    return records
