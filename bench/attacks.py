"""The platform port under the hardening issue's attacks: ``python -m bench.attacks``.

Starts ``trestle platform start`` on a fresh data dir, pushes ``bench/models/async`` (promoted) and a
websocket echo, then measures what an operator would want to know (issue 12's figures):

* **load held**: another client's predict latency through the gateway (c=1, keep-alive, per-request
  timing), idle and while the attacks below run; errors are counted, never retried;
* **load held during a big push**: the same latency while a truss with ``--push-mib`` MiB of ``data/``
  is uploaded, then while it is deployed as another model (the goal: p99 within 2x idle);
* **connections held**: ``--idle`` sockets that send nothing and ``--slow`` that send a request head one
  header line a second (slowloris), all open at once; how many the platform has closed after its
  header deadline, and the latency above while they are held;
* **memory under big bodies**: the RSS of the platform process (and of its tree, replicas included) before,
  at its peak and after 4 concurrent 99 MiB uploads through the gateway (streamed, 1 MiB writes), and
  how long a 2 GiB ``Content-Length`` waits for its 413 (no body is sent);
* **memory under websocket bombs**: the same RSS for 4 websockets through the gateway, each sending one
  compressed message that inflates to 64 MiB (about 64 KiB on the wire), with the close code they get;
  then ``--ws-rounds`` - 1 more rounds, to tell memory that is kept from memory that grows.

The result goes to ``bench/results/attacks-<date>.json`` and to the attacks section of
``BENCHMARKS.md`` (between its ``attacks`` markers; ``bench/run`` keeps it). Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.report import put_marked_section
from bench.scratch_platform import scratch_platform, wait_until
from bench.targets import MODELS

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-attacks"
NAME = "bench-async"
WS_MODEL = """
class Model:
    async def websocket(self, websocket):
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(str(len(text)))
"""


class Latency:
    """Sequential predicts on one keep-alive connection, in a thread, until stopped."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.times: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = b'{"x": 1}'
        headers = {"Authorization": f"Api-Key {KEY}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                ok = response.status == 200 and json.loads(response.read()) == {"x": 1}
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if ok:
                self.times.append(time.perf_counter() - t0)
            else:
                self.errors += 1
        conn.close()

    @contextmanager
    def running(self) -> Iterator[Latency]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(30)

    def summary(self) -> dict[str, Any]:
        times = sorted(self.times)
        if not times:
            return {"requests": 0, "errors": self.errors}
        return {
            "requests": len(times),
            "errors": self.errors,
            "p50_ms": round(statistics.median(times) * 1000, 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 3),
        }


def measure(port: int, path: str, seconds: float, during: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Latency for ``seconds`` (at least as long as ``during`` runs); ``during``'s record is merged in."""
    with Latency(port, path).running() as latency:
        t0 = time.monotonic()
        extra = during() if during is not None else {}
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    return {**latency.summary(), **extra}


def rss(pid: int) -> tuple[int, int]:
    """The RSS of the platform process and of its whole tree (its replicas included)."""
    own = total = 0
    try:
        proc = psutil.Process(pid)
        own = proc.memory_info().rss
        total = own
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return own, total


@contextmanager
def rss_peak(pid: int) -> Iterator[dict[str, int]]:
    """Samples the tree's RSS every 50 ms while the block runs: ``before``, ``peak``, then ``after`` (2 s on)."""
    own, total = rss(pid)
    found = {"before": own, "peak": own, "tree_before": total, "tree_peak": total}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            own, total = rss(pid)
            found["peak"] = max(found["peak"], own)
            found["tree_peak"] = max(found["tree_peak"], total)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        stop.set()
        sampler.join(5)
        time.sleep(2)
        found["after"], found["tree_after"] = rss(pid)


def hold_connections(port: int, idle: int, slow: int, hold_s: float, path: str) -> dict[str, Any]:
    """Open ``idle`` silent and ``slow`` slowloris sockets; feed the slow ones for ``hold_s``; count closes."""
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    drip = [socket.create_connection(("127.0.0.1", port)) for _ in range(slow)]
    for sock in drip:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode())
    closed: set[socket.socket] = set()
    watch = selectors.DefaultSelector()  # epoll: select() stops at fd 1024
    for sock in silent + drip:
        watch.register(sock, selectors.EVENT_READ)
    t0 = time.monotonic()
    line = 0
    while time.monotonic() - t0 < hold_s:
        line += 1
        for sock in drip:
            if sock not in closed:
                try:
                    sock.sendall(f"X-Drip-{line}: a\r\n".encode())
                except OSError:
                    closed.add(sock)
        for key, _ in watch.select(timeout=1.0):
            closed.add(key.fileobj)  # type: ignore[arg-type]  # readable: an answer (408) or EOF
            watch.unregister(key.fileobj)
    held = {
        "idle": idle,
        "slow": slow,
        "held_s": round(time.monotonic() - t0, 1),
        "closed_idle": sum(1 for s in silent if s in closed),
        "closed_slow": sum(1 for s in drip if s in closed),
    }
    watch.close()
    for sock in silent + drip:
        sock.close()
    return held


def at_once(fn: Callable[[], None], count: int, timeout: float) -> None:
    """``count`` threads running ``fn`` together; returns when all have ended (or ``timeout`` each)."""
    threads = [threading.Thread(target=fn) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def big_bodies(port: int, path: str, count: int = 4, mib: int = 99) -> dict[str, Any]:
    statuses: list[int] = []
    chunk = b"x" * (1 << 20)

    def upload() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            conn.putrequest("POST", path)
            for name, value in (
                ("Authorization", f"Api-Key {KEY}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(mib << 20)),
            ):
                conn.putheader(name, value)
            conn.endheaders()
            for _ in range(mib):
                conn.send(chunk)
            statuses.append(conn.getresponse().status)
        except (OSError, http.client.HTTPException):
            statuses.append(0)
        finally:
            conn.close()

    at_once(upload, count, 600)
    return {"uploads": count, "mib": mib, "statuses": sorted(statuses)}


def pack_big(root: Path, mib: int) -> tuple[Path, str]:
    """A truss with ``mib`` MiB of ``data/``, packed into an archive file: (path, digest)."""
    from trestle.platform.store import packaging

    shutil.copytree(MODELS / "async", root, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "config.yaml"
    config.write_text(config.read_text().replace(NAME, "bench-big").replace("python_version: py311\n", ""))
    (root / "data").mkdir(exist_ok=True)
    with open(root / "data" / "weights.bin", "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))
    archive = packaging.pack(root)
    path = root.with_suffix(".tar")
    path.write_bytes(archive)
    return path, packaging.digest(archive)


def upload_big(port: int, archive: Path, digest: str) -> dict[str, Any]:
    """Upload the archive with curl (its own process, so the measuring client keeps its share)."""
    t0 = time.monotonic()
    url = f"http://127.0.0.1:{port}/v1/artifacts/{digest}"
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(archive), "-H", "Expect:"]
    upload = subprocess.run([*curl, "-H", f"Authorization: Api-Key {KEY}", url], capture_output=True, text=True)
    if upload.returncode != 0:
        raise RuntimeError(f"curl failed: {upload.stderr.strip()}")
    mib = archive.stat().st_size >> 20
    return {"mib": mib, "status": upload.stdout, "s": round(time.monotonic() - t0, 1)}


def deploy_big(http_client: httpx.Client, digest: str) -> dict[str, Any]:
    """Deploy the uploaded archive as a model of its own and wait until it is ACTIVE (unpack, hashing,
    environment, a new replica's start)."""
    t0 = time.monotonic()
    dep = http_client.post("/v1/deployments", json={"artifact": digest}, timeout=600).json()
    final = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED")
    view = wait_until(
        lambda: (v := http_client.get(f"/v1/deployments/{dep['id']}").json())["status"] in final and v, 600
    )
    return {"status": view["status"], "s": round(time.monotonic() - t0, 1)}


def declared_too_big(port: int, path: str) -> dict[str, Any]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.perf_counter()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Api-Key {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 << 30}\r\n\r\n".encode()
    )
    answer = sock.recv(65536)
    ms = (time.perf_counter() - t0) * 1000
    sock.close()
    return {"status_line": answer.split(b"\r\n", 1)[0].decode(errors="replace"), "ms": round(ms, 2)}


def websocket_bombs(url: str, count: int = 4, mib: int = 64) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    codes: list[int | None] = []

    def bomb() -> None:
        try:
            with connect(
                url, additional_headers={"Authorization": f"Api-Key {KEY}"}, compression="deflate", max_size=None
            ) as ws:
                ws.send("a" * (mib << 20))
                try:
                    ws.recv(timeout=60)
                except (ConnectionClosed, TimeoutError):
                    pass
                codes.append(ws.close_code)
        except (OSError, ConnectionClosed) as exc:
            codes.append(getattr(getattr(exc, "rcvd", None), "code", None))

    at_once(bomb, count, 120)
    return {"sockets": count, "inflates_to_mib": mib, "close_codes": codes}


def push(env: dict[str, str], truss: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "trestle", "push", "--output", "json", *extra],
        cwd=truss,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    found: dict[str, Any] = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18992)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--push-mib", type=int, default=1024, help="Size of the big push's data/.")
    parser.add_argument("--ws-rounds", type=int, default=5, help="Rounds of websocket bombs (at least 2).")
    parser.add_argument("--no-write", action="store_true", help="Print the result only.")
    args = parser.parse_args()
    with scratch_platform(args.port, KEY, "trestle-bench-attacks-") as plat:
        work, env, http_client = plat.work, plat.env, plat.http
        echo = work / "echo"
        shutil.copytree(MODELS / "async", echo, ignore=shutil.ignore_patterns("__pycache__"))
        config = echo / "config.yaml"
        config.write_text(config.read_text().replace("python_version: py311\n", ""))
        push(env, echo, "--promote")
        upload = work / "upload"  # the big bodies go to a model of their own
        shutil.copytree(echo, upload)
        (upload / "config.yaml").write_text((echo / "config.yaml").read_text().replace(NAME, "bench-upload"))
        push(env, upload, "--promote")
        ws = work / "ws"
        (ws / "model").mkdir(parents=True)
        (ws / "config.yaml").write_text("model_name: bench-ws\n")
        (ws / "model" / "model.py").write_text(WS_MODEL)
        ws_dep = push(env, ws)["deployment_id"]
        path = "/models/bench-async/environments/production/predict"
        ws_url = f"ws://127.0.0.1:{args.port}/models/bench-ws/deployment/{ws_dep}/sync/v1/websocket"
        port, pid = args.port, plat.process.pid
        result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "revision": _revision()}
        result["idle"] = measure(port, path, 5)
        archive, digest = pack_big(work / "big", args.push_mib)
        result["upload"] = measure(port, path, 0, lambda: upload_big(port, archive, digest))
        result["deploy"] = measure(port, path, 0, lambda: deploy_big(http_client, digest))
        result["connections"] = measure(port, path, 0, lambda: hold_connections(port, args.idle, args.slow, 15, path))
        with rss_peak(pid) as used:
            uploads = "/models/bench-upload/environments/production/predict"
            result["bodies"] = measure(port, path, 0, lambda: big_bodies(port, uploads))
        result["bodies"]["rss_mib"] = {k: round(v / (1 << 20), 1) for k, v in used.items()}
        result["declared_2gib"] = declared_too_big(port, path)
        with rss_peak(pid) as used:
            result["websockets"] = measure(port, path, 0, lambda: websocket_bombs(ws_url))
        result["websockets"]["rss_mib"] = {k: round(v / (1 << 20), 1) for k, v in used.items()}
        for _ in range(args.ws_rounds - 1):  # again: memory kept by the first round is reused, or it grows
            with rss_peak(pid) as used:
                result["websockets_again"] = measure(port, path, 0, lambda: websocket_bombs(ws_url))
            result["websockets_again"]["rss_mib"] = {k: round(v / (1 << 20), 1) for k, v in used.items()}
            result.setdefault("ws_rss_after_mib", []).append(result["websockets_again"]["rss_mib"]["after"])
        result["after"] = measure(port, path, 5)
        time.sleep(10)  # the bombed sockets' close handshakes and the collector have had their time
        result["settled_rss_mib"] = round(rss(pid)[0] / (1 << 20), 1)
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write(result)
    return 0


def _revision() -> str:
    git = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(git, cwd=ROOT, capture_output=True, text=True).stdout.strip()


def write(result: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results" / f"attacks-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    conn, bodies, ws = result["connections"], result["bodies"], result["websockets"]

    def lat(rec: dict[str, Any]) -> str:
        return f"{rec.get('p50_ms', '–')} / {rec.get('p99_ms', '–')} ms, {rec['requests']} ok, {rec['errors']} errors"

    def mem(rec: dict[str, Any]) -> str:
        r = rec["rss_mib"]
        return (
            f"platform RSS {r['before']} → peak {r['peak']} → {r['after']} MiB (with its replicas "
            f"{r['tree_before']} → {r['tree_peak']} → {r['tree_after']} MiB)"
        )

    rows = [
        ("idle", "another model's predict through the gateway, c=1", lat(result["idle"])),
        (
            "big push: upload",
            f"a truss with {result['upload']['mib']} MiB of `data/` uploaded (`PUT /v1/artifacts`, curl; "
            f"answer {result['upload']['status']}, {result['upload']['s']} s)",
            lat(result["upload"]),
        ),
        (
            "big push: deploy",
            f"the same deployed as another model, until it is {result['deploy']['status']} (unpack, hash, "
            f"a new replica's start; {result['deploy']['s']} s)",
            lat(result["deploy"]),
        ),
        (
            "connections held",
            f"{conn['idle']} silent + {conn['slow']} slowloris sockets for {conn['held_s']} s; the platform "
            f"closed {conn['closed_idle']} silent and {conn['closed_slow']} slowloris",
            lat(conn),
        ),
        (
            "big bodies",
            f"{bodies['uploads']} × {bodies['mib']} MiB uploads streamed through the gateway to a third model "
            f"(answers {bodies['statuses']}); {mem(bodies)}",
            lat(bodies),
        ),
        (
            "declared 2 GiB",
            f"`Content-Length: 2 GiB`, no body: `{result['declared_2gib']['status_line']}` in "
            f"{result['declared_2gib']['ms']} ms",
            "",
        ),
        (
            "websocket bombs",
            f"{ws['sockets']} websockets, one compressed message inflating to {ws['inflates_to_mib']} MiB each "
            f"(close codes {ws['close_codes']}); {mem(ws)}",
            lat(ws),
        ),
        (
            "websocket bombs, again",
            f"{len(result['ws_rss_after_mib'])} more rounds of the same (last close codes "
            f"{result['websockets_again']['close_codes']}): platform RSS after each "
            f"{result['ws_rss_after_mib']} MiB",
            lat(result["websockets_again"]),
        ),
        (
            "after",
            f"the same predicts once the attacks are over; platform RSS 15 s later {result['settled_rss_mib']} MiB",
            lat(result["after"]),
        ),
    ]
    lines = [
        "## The platform port under attack (issue 12)",
        "",
        f"`python -m bench.attacks` on {result['date']} at {result['revision']} ([raw]({out.relative_to(ROOT)})): "
        "the platform and its replicas on this machine's cores, attacks and the measuring client in one process. "
        "Latency is p50 / p99 of sequential keep-alive predicts of another model while the attack runs.",
        "",
        "| attack | what happened | predict latency meanwhile |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    put_marked_section(ROOT / "BENCHMARKS.md", "attacks", lines)


if __name__ == "__main__":
    sys.exit(main())
