"""Platform cells: push to ACTIVE, the gateway's added latency, a `watch` patch to new code serving.

Once per round, a fresh ``trestle platform start`` (its own data dir; on the server core, and its
replicas inherit the core), driven with the CLI from the client core:

  push, cold cache   ``trestle push bench/models/async --promote``: seconds until it returns ACTIVE,
                     environment cache empty
  push, warm cache   the same truss again as a new deployment (the environment is reused)
  gateway            wrk at each concurrency on the production replica directly
                     (``/v1/models/model:predict``) and through the gateway
                     (``/models/<name>/environments/production/predict``); every response checked; the CPU
                     the platform process (the gateway) and the replica spent per request
  gateway stream     back-to-back streams of ``stream_n`` chunks on one connection, directly and through
                     the gateway: time to the first chunk, chunks/s, CPU per chunk of each process
  watch patch        ``trestle push --watch`` on a copy of the truss; ``VERSION`` in model.py is edited and
                     the time from the save to the first gateway answer carrying the new version is taken
  push stall         the production deployment's latency through the gateway at c=1 (per-request timing),
                     idle and while a truss with a ``push_stall_mib`` MiB ``data/`` is uploaded and deployed
                     as another model (the archive is packed beforehand, so the client core only streams it)
  async              completed async requests/s end to end (webhook received) beside sync predict on the
                     same replica (``bench/async_cell.py``)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import load
from bench.targets import MODELS

if TYPE_CHECKING:
    from bench.runner import Record, Session

PORT = 18790
NAME = "bench-async"
DESC = (
    "`trestle platform start` (fresh data dir per round) serving bench/models/async; its replicas are "
    "`trestle serve` processes on the same core"
)
LABELS = ("push to ACTIVE, cold cache", "push to ACTIVE, warm cache", "watch patch")


def available(trestle_bin: Path) -> str | None:
    """None if `trestle platform` exists, else why not."""
    try:
        text = subprocess.run([str(trestle_bin), "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"`trestle --help` failed: {e}"
    if not any(line.split()[:1] == ["platform"] for line in text.splitlines()):
        return "`trestle platform` is not available yet"
    return None


class PlatformRound:
    def __init__(self, session: Session, trestle_bin: Path, rnd: int) -> None:
        self.s, self.bin, self.rnd = session, trestle_bin, rnd
        self.key = "bench-" + uuid.uuid4().hex
        self.auth = {"Authorization": f"Api-Key {self.key}"}
        self.dir = session.out / f"platform-r{rnd}"
        self.env = {
            **os.environ,
            "TRESTLE_REMOTE_URL": f"http://127.0.0.1:{PORT}",
            "TRESTLE_API_KEY": self.key,
            "HOME": str(self.dir / "home"),
        }
        self.base: Record = {"round": rnd, "target": "trestle-platform"}

    def emit(self, label: str, **rec: Any) -> None:
        self.s.emit({**self.base, "cell": "platform", "label": label, **rec})

    def run(self) -> None:
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        spec = {
            "cmd": [
                str(self.bin),
                "platform",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(PORT),
                "--data-dir",
                str(self.dir / "data"),
                "--api-key",
                self.key,
                "--allow-private-webhooks",  # the async cell's receiver is on loopback
            ],
            "env": {"HOME": str(self.dir / "home")},
            "port": PORT,
            "ready": "/v1/health",
        }
        srv = self.s.pb.Server(f"platform-r{self.rnd}", spec, "", str(self.s.logdir), self.s.plan.server_core)
        try:
            srv.start()
            self.wait_ready(srv)
            truss = self.dir / "truss"
            shutil.copytree(MODELS / "async", truss, ignore=shutil.ignore_patterns("__pycache__"))
            cold = self.push(truss)
            self.emit(LABELS[0], s=cold["s"], valid=True)
            warm = self.push(truss, "--deployment-name", "warm")
            self.emit(LABELS[1], s=warm["s"], valid=True)
            self.gateway(srv, self.replica_port(srv, warm["deployment_id"]))
            self.push_stall()
            self.async_inference(warm["deployment_id"])
            self.watch()
        except (load.CheckFailed, OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as e:
            self.emit("error", valid=False, why=repr(e)[:500])
        finally:
            srv.stop()

    def wait_ready(self, srv: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if srv.proc.poll() is not None:
                raise RuntimeError(f"platform exited rc={srv.proc.returncode}, see {srv.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                conn.request("GET", "/v1/health", headers=self.auth)
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("platform not ready in time")

    def push(self, truss: Path, *extra: str) -> dict[str, Any]:
        t0 = time.monotonic()
        p = subprocess.run(
            [str(self.bin), "push", str(truss), "--promote", "--output", "json", *extra],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        secs = time.monotonic() - t0
        try:
            out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {}
        if p.returncode or out.get("status") != "ACTIVE":
            raise RuntimeError(f"push rc={p.returncode}: {(p.stdout + p.stderr)[-400:]}")
        return {**out, "s": round(secs, 3)}

    def replica_port(self, srv: Any, deployment_id: str) -> tuple[int, int]:
        """The port and pid of the deployment's replica, from its command line (the API does not expose it)."""
        for pid in self.s.pb.server_pids(srv.sid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if "serve" in argv and "--port" in argv and any(f"/{deployment_id}/" in a for a in argv):
                return int(argv[argv.index("--port") + 1]), pid
        raise RuntimeError(f"no replica process found for deployment {deployment_id}")

    def gateway(self, srv: Any, replica: tuple[int, int]) -> None:
        """wrk on the replica directly and through the gateway; the CPU each process spent per request
        (the platform's: the gateway; the replica's) from /proc, around each run."""
        p = self.s.plan
        via = f"/models/{NAME}/environments/production/predict"
        header = f"Authorization: Api-Key {self.key}"
        replica_port, replica_pid = replica
        routes = (
            ("direct", replica_port, "/v1/models/model:predict", "", None),
            ("via gateway", PORT, via, header, self.auth),
        )
        pids = {"gateway_cpu_us": srv.proc.pid, "replica_cpu_us": replica_pid}
        body = load.UNARY_BODY
        expects = {
            label: load.expected_body(port, path, body, load.JSON, load.unary_echo, hdrs)
            for label, port, path, _, hdrs in routes
        }
        if p.warmup:
            for label, port, path, hdr, _ in routes:
                load.wrk_post(port, path, body, load.JSON, expects[label], 16, p.warmup, p.client_core, hdr)
        keys = ("rps", "p50_us", "p99_us", "raw_p50_us", "raw_p99_us", "requests", "valid", "why")
        for c in p.concs:
            for label, port, path, hdr, _ in routes:
                before = {k: cpu_seconds(pid) for k, pid in pids.items()}
                r = load.wrk_post(port, path, body, load.JSON, expects[label], c, p.duration, p.client_core, hdr)
                rec = {**self.base, "cell": "gateway", "label": label, "c": c, **{k: r[k] for k in keys if k in r}}
                if r.get("requests"):
                    for k, pid in pids.items():
                        rec[k] = round((cpu_seconds(pid) - before[k]) / r["requests"] * 1e6, 1)
                self.s.emit(rec)
        stream = {"op": "stream", "n": p.stream_n}
        for label, port, path, _, hdrs in routes:
            before = {k: cpu_seconds(pid) for k, pid in pids.items()}
            r = load.stream_rate(port, path, stream, p.stream_n, p.ttfc_duration, hdrs or {})
            if r.get("chunks"):
                for k, pid in pids.items():
                    r[k.replace("_us", "_us_per_chunk")] = round((cpu_seconds(pid) - before[k]) / r["chunks"] * 1e6, 2)
            self.s.emit({**self.base, "cell": "gateway stream", "label": label, "n": p.stream_n, **r})

    def push_stall(self) -> None:
        from trestle.platform.store import packaging

        plan = self.s.plan
        big = self.dir / "big"
        shutil.copytree(MODELS / "async", big, ignore=shutil.ignore_patterns("__pycache__"))
        config = big / "config.yaml"
        config.write_text(config.read_text().replace(f"model_name: {NAME}", "model_name: bench-big"))
        (big / "data").mkdir(exist_ok=True)
        with open(big / "data" / "weights.bin", "wb") as out:
            for _ in range(plan.push_stall_mib):
                out.write(os.urandom(1 << 20))
        archive = packaging.pack(big)
        digest = packaging.digest(archive)
        via = f"/models/{NAME}/environments/production/predict"
        header = f"Authorization: Api-Key {self.key}"
        body = load.UNARY_BODY
        expect = load.expected_body(PORT, via, body, load.JSON, load.unary_echo, self.auth)
        keys = ("p50_us", "p99_us", "raw_p50_us", "raw_p99_us", "requests", "valid", "why")
        idle = load.wrk_post(PORT, via, body, load.JSON, expect, 1, plan.duration, plan.client_core, header)
        self.s.emit({**self.base, "cell": "push stall", "label": "idle", **{k: idle[k] for k in keys if k in idle}})
        result: dict[str, Any] = {}

        def push() -> None:
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
            conn.request("PUT", f"/v1/artifacts/{digest}", body=archive, headers=self.auth)
            result["upload"] = conn.getresponse().status
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
            payload = json.dumps({"artifact": digest}).encode()
            conn.request("POST", "/v1/deployments", body=payload, headers={**self.auth, "Content-Type": load.JSON})
            result["push"] = conn.getresponse().status
            conn.close()
            result["s"] = time.monotonic() - t0

        import threading

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        during = load.wrk_post(PORT, via, body, load.JSON, expect, 1, plan.duration, plan.client_core, header)
        pusher.join(600)
        ok = result.get("upload") in (200, 201) and result.get("push") in (200, 201)
        rec = {k: during[k] for k in keys if k in during}
        if not ok:
            rec.update(valid=False, why=f"push of the big truss failed: {result}")
        self.s.emit(
            {
                **self.base,
                "cell": "push stall",
                "label": "during push",
                "mib": plan.push_stall_mib,
                "push_s": round(result.get("s", 0.0), 2),
                **rec,
            }
        )

    def async_inference(self, deployment_id: str) -> None:
        from bench import async_cell

        for rec in async_cell.run(PORT, self.auth, NAME, deployment_id, self.s.plan.async_n):
            self.s.emit({**self.base, "cell": "async", **rec})

    def watch(self) -> None:
        truss = self.dir / "watched"
        shutil.copytree(MODELS / "async", truss, ignore=shutil.ignore_patterns("__pycache__"))
        model = truss / "model" / "model.py"
        with open(self.s.logdir / f"watch-r{self.rnd}.log", "wb") as log:
            proc = subprocess.Popen(
                [str(self.bin), "push", str(truss), "--watch"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                self.wait_version(1, 300)
                secs = []
                for v in range(2, 2 + self.s.plan.watch_patches):
                    time.sleep(0.5)  # let the watcher settle after the previous patch
                    model.write_text(model.read_text().replace(f"VERSION = {v - 1}\n", f"VERSION = {v}\n"))
                    saved = time.time()
                    self.wait_version(v, 30)
                    secs.append(round(time.time() - saved, 3))
                self.emit(LABELS[2], s=secs, valid=True)
            finally:
                _stop(proc)

    def wait_version(self, version: int, timeout: float) -> None:
        """Poll the development deployment through the gateway until it answers `version`."""
        deadline = time.monotonic() + timeout
        last: tuple[int, bytes] | None = None
        while time.monotonic() < deadline:
            try:
                last = load.post(
                    PORT, f"/models/{NAME}/development/predict", b'{"op": "version"}', timeout=10, headers=self.auth
                )
                if last[0] == 200 and json.loads(last[1]) == {"version": version}:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        raise load.CheckFailed(f"development deployment never answered version {version}; last: {last!r}"[:400])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def unavailable(why: str) -> list[Record]:
    return [
        {
            "round": 0,
            "target": "trestle-platform",
            "cell": "platform",
            "label": label,
            "available": False,
            "why": why,
            "valid": True,
        }
        for label in ("gateway added latency", *LABELS)
    ]
