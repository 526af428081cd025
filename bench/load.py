"""Load generators and response checks.

* `wrk_post`: wrk (one thread, pinned) with bench/wrk/check.lua, which compares EVERY response's
  status and body with an expected body; any socket error, non-200 or different body makes the
  measurement invalid.
* `expected_body`: the body a server returns for a request, after decoding it and comparing it with
  what the model must return (echo); it becomes wrk's expected body.
* `ttfc`: perfbench's load/ttfc.py (raw-socket streaming client) for one stream at a time; every
  stream must be a 200 carrying exactly N chunk markers.
* `cancel_probe`: client disconnect -> the model's `finally`, from the probe files the bench models
  write (bench/models/*/model/model.py).
* `mixed_requests`: the memory cell's unary / streamed / cancelled / failed mix, each response checked.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._perfbench import ROOT, perfbench_dir

CHECK_LUA = ROOT / "bench" / "wrk" / "check.lua"
JSON = "application/json"
MSGPACK = "application/octet-stream"


UNARY_BODY = b'{"x": 1}'


def unary_echo(out: bytes) -> bool:
    return bool(json.loads(out) == {"x": 1})


class CheckFailed(Exception):
    """A response was not what the model must return."""


def post(
    port: int, path: str, body: bytes, ct: str = JSON, timeout: float = 30, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ct, **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def expected_body(
    port: int, path: str, body: bytes, ct: str, check: Callable[[bytes], bool], headers: dict[str, str] | None = None
) -> bytes:
    """POST twice; both must be 200, pass `check`, and be byte-identical (wrk compares bytes)."""
    got = []
    for _ in range(2):
        status, out = post(port, path, body, ct, headers=headers)
        if status != 200 or not check(out):
            raise CheckFailed(f"POST {path}: {status} {out[:200]!r}")
        got.append(out)
    if got[0] != got[1]:
        raise CheckFailed(f"POST {path}: two identical requests got different bodies")
    return got[0]


# ----------------------------------------------------------------------------- wrk
def wrk_post(
    port: int, path: str, body: bytes, ct: str, expect: bytes, conc: int, duration: float, core: int, header: str = ""
) -> dict[str, Any]:
    """One bounded wrk run; returns its counters, latencies (µs), rps, and `valid`/`why`."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        bf, ef = Path(tmp) / "body", Path(tmp) / "expect"
        bf.write_bytes(body)
        ef.write_bytes(expect)
        env = {
            **os.environ,
            "WRK_BODY_FILE": str(bf),
            "WRK_EXPECT_FILE": str(ef),
            "WRK_CT": ct,
            "WRK_RAW": "1" if conc == 1 else "0",
            "WRK_HEADER": header,
        }
        secs = max(1, round(duration))
        cmd = [
            "timeout",
            "-k",
            "5",
            str(secs + 30),
            "taskset",
            "-c",
            str(core),
            "wrk",
            "-t1",
            f"-c{conc}",
            f"-d{secs}s",
            "--timeout",
            "10s",
            "-s",
            str(CHECK_LUA),
            f"http://127.0.0.1:{port}{path}",
        ]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=secs + 60)
    for line in p.stdout.splitlines():
        if line.startswith("WRKJSON "):
            d: dict[str, Any] = json.loads(line[8:])
            break
    else:
        return {"valid": False, "why": f"wrk rc={p.returncode}: {(p.stderr or p.stdout)[-300:]}"}
    d["rps"] = round(d["requests"] / (d["duration_us"] / 1e6), 1)
    socket_errors = sum(d[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    why = []
    if d["requests"] == 0:
        why.append("no responses")
    if socket_errors:
        why.append(f"{socket_errors} socket errors")
    if d["bad_status"] or d["err_status"]:
        why.append(f"{max(d['bad_status'], d['err_status'])} non-200 responses")
    if d["bad_body"]:
        why.append(f"{d['bad_body']} wrong bodies")
    d["valid"] = not why
    if why:
        d["why"] = "; ".join(why) + (f" (first: {d['sample']})" if d.get("sample") else "")
    return d


# ----------------------------------------------------------------------------- streaming
def ttfc(port: int, path: str, n: int, duration: float, core: int) -> dict[str, Any]:
    """perfbench's ttfc.py, one connection, back-to-back streams of `n` chunks, each checked."""
    body = json.dumps({"op": "stream", "n": n})
    script = perfbench_dir() / "load" / "ttfc.py"
    cmd = [
        "timeout",
        "-k",
        "5",
        str(int(duration + 60)),
        "taskset",
        "-c",
        str(core),
        sys.executable,
        str(script),
        "--port",
        str(port),
        "--path",
        path,
        "--body",
        body,
        "--conns",
        "1",
        "--duration",
        str(duration),
        "--expect",
        str(n),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    for line in p.stdout.splitlines():
        if line.startswith("TTFCJSON "):
            d: dict[str, Any] = json.loads(line[9:])
            break
    else:
        return {"valid": False, "why": f"ttfc rc={p.returncode}: {p.stderr[-300:]}"}
    d["valid"] = d["ok"] > 0 and d["errors"] == 0
    if not d["valid"]:
        d["why"] = f"{d['ok']} streams ok, {d['errors']} bad: {d['error_samples']}"
    # chunks/s of one stream: n chunks over the stream's own time (request sent -> last byte)
    if d.get("total_p50_us"):
        d["stream_chunks_per_s"] = round(n / (d["total_p50_us"] / 1e6), 1)
    return d


# ----------------------------------------------------------------------------- cancellation
def _read_probe(path: Path) -> tuple[float, str] | None:
    try:
        t, _, how = path.read_text().partition(" ")
        return float(t), how.strip()
    except (OSError, ValueError):
        return None


def _wait_file(path: Path, timeout: float) -> tuple[float, str] | None:
    deadline = time.monotonic() + timeout
    while True:
        got = _read_probe(path) if path.exists() else None
        if got is not None or time.monotonic() > deadline:
            return got
        time.sleep(0.001)


def _read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while not done(buf):
        data = sock.recv(65536)
        if not data:
            raise CheckFailed(f"connection closed early: {buf[:200]!r}")
        buf += data
    return buf


def _first_chunk_seen(buf: bytes) -> bool:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    return bool(sep) and (b"chunk-" in rest or not head.startswith(b"HTTP/1.1 200"))


def cancel_probe(port: int, path: str, kind: str, probes: Path, wait_s: float, run_s: float) -> dict[str, Any]:
    """Start a long stream (or predict), disconnect once it is running, time the model's `finally`.

    kind: "async gen" / "sync gen" (a stream of 2 ms chunks lasting `run_s`; the client disconnects
    after the first chunk) or "async predict" (sleeps `run_s`; the client disconnects once the model
    has written its start marker). Result: ``ms`` (disconnect -> `finally`) or ``never`` if the
    model's `finally` did not run as a cancellation within `wait_s` (it ran to completion, or not at
    all yet).
    """
    pid = uuid.uuid4().hex
    if kind == "async predict":
        req = {"op": "sleep", "s": run_s, "probe": pid}
    else:
        req = {"op": "stream", "n": int(run_s / 0.002), "delay": 0.002, "probe": pid}
    body = json.dumps(req).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    start, end = probes / f"{pid}.start", probes / f"{pid}.end"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(head + body)
        if kind == "async predict":
            if _wait_file(start, 10) is None:
                raise CheckFailed("the model never started the long predict")
        else:
            buf = _read_until(sock, _first_chunk_seen, 10)
            if not buf.startswith(b"HTTP/1.1 200"):
                raise CheckFailed(f"stream did not start: {buf[:200]!r}")
        t_disconnect = time.monotonic()
    finally:
        sock.close()
    got = _wait_file(end, wait_s)
    if got is not None and got[1] == "cancelled":
        return {"ms": round((got[0] - t_disconnect) * 1000, 2)}
    # never cancelled: let the model run out so the next probe finds the server idle
    got = got or _wait_file(end, run_s + 10)
    return {"ms": None, "never": True, "how": got[1] if got else "no finally"}


# ----------------------------------------------------------------------------- memory mix
MIX = ("unary",) * 17 + ("stream", "cancel", "fail")  # 85 % unary, 5 % each of the others
MIX_STREAM_N = 100
MIX_CANCEL_N = 2000


@dataclass
class MixStats:
    ok: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("unary", "stream", "cancel", "fail"), 0))
    bad: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.bad += 1
        if len(self.samples) < 3:
            self.samples.append(what)


async def _read_response(reader: asyncio.StreamReader, first_chunk_only: bool = False) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "chunked" in headers.get("transfer-encoding", ""):
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                # trailers are not used by any target; the empty line was consumed above
                break
            parts.append(data[:-2])
            if first_chunk_only:
                break
        return status, b"".join(parts)
    return status, await reader.readexactly(int(headers.get("content-length", "0")))


def stream_rate(
    port: int, path: str, body: dict[str, Any], n: int, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Back-to-back streams of ``n`` chunks on one keep-alive connection for ``duration`` seconds (with
    ``headers``, so it can go through the gateway): time to the first chunk (p50/p99), chunks/s of a stream
    (its ``n`` chunks over its own time, median), every stream checked for its ``n`` chunk markers."""
    return asyncio.run(_stream_rate(port, path, json.dumps(body).encode(), n, duration, headers))


async def _stream_rate(
    port: int, path: str, body: bytes, n: int, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    firsts: list[float] = []
    totals: list[float] = []
    bad = 0
    stop = time.monotonic() + duration
    try:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if b" 200 " not in head.split(b"\r\n", 1)[0] or b"chunked" not in head.lower():
                bad += 1
                break
            seen = b""
            first = None
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if first is None:
                    first = time.perf_counter() - t0
                if size == 0:
                    break
                seen += data[:-2]
            totals.append(time.perf_counter() - t0)
            firsts.append(first or 0.0)
            if seen.count(b"chunk-") != n:
                bad += 1
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        bad += 1
    finally:
        writer.close()
    out: dict[str, Any] = {"streams": len(totals), "valid": bad == 0 and bool(totals)}
    if totals:
        firsts.sort()
        totals.sort()
        out["ttfc_p50_us"] = round(firsts[len(firsts) // 2] * 1e6)
        out["ttfc_p99_us"] = round(firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))] * 1e6)
        out["chunks_per_s"] = round(n / totals[len(totals) // 2], 1)
        out["chunks"] = len(totals) * n
    if bad:
        out["why"] = f"{bad} bad streams"
    return out


async def _mix_worker(port: int, path: str, next_i: Callable[[], int | None], st: MixStats) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(body: bytes, first_chunk_only: bool = False) -> tuple[int, bytes]:
        nonlocal conn
        if conn is None:
            conn = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = conn
        writer.write(
            (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            + body
        )
        return await asyncio.wait_for(_read_response(reader, first_chunk_only), 30)

    def drop() -> None:
        nonlocal conn
        if conn is not None:
            conn[1].close()
            conn = None

    unary = json.dumps({"x": 1}).encode()
    stream = json.dumps({"op": "stream", "n": MIX_STREAM_N}).encode()
    cancel = json.dumps({"op": "stream", "n": MIX_CANCEL_N}).encode()
    fail = json.dumps({"op": "fail"}).encode()
    while (i := next_i()) is not None:
        kind = MIX[i % len(MIX)]
        try:
            if kind == "unary":
                status, out = await call(unary)
                good = status == 200 and json.loads(out) == {"x": 1}
            elif kind == "stream":
                status, out = await call(stream)
                good = status == 200 and out.count(b"chunk-") == MIX_STREAM_N
            elif kind == "cancel":
                status, out = await call(cancel, first_chunk_only=True)
                good = status == 200 and out.startswith(b"chunk-")
                drop()  # the disconnect
            else:
                status, out = await call(fail)
                good = status == 500
            if good:
                st.ok[kind] += 1
            else:
                st.fail(f"{kind}: {status} {out[:120]!r}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            st.fail(f"{kind}: {e!r}")
            drop()
    drop()


async def _mixed(port: int, path: str, n: int, conc: int) -> MixStats:
    st = MixStats()
    counter = iter(range(n))

    def next_i() -> int | None:
        return next(counter, None)

    await asyncio.gather(*(_mix_worker(port, path, next_i, st) for _ in range(conc)))
    return st


def mixed_requests(port: int, path: str, n: int, conc: int) -> MixStats:
    try:
        import uvloop

        return uvloop.run(_mixed(port, path, n, conc))
    except ImportError:
        return asyncio.run(_mixed(port, path, n, conc))
