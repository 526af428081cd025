"""Ray cells (``--cells ray``): the platform's Ray engine beside its local engine, and Trestle on Ray
Serve beside a plain ``@serve.deployment`` echo on the same Ray, in the same round.

Once per round: a Ray head of the round's own (loopback, token auth, pinned to the server core, its
processes stopped by pid at the end: never ``ray stop``), a platform with ``--engine local`` and one
with ``--engine ray``, each serving bench/models/async promoted to production:

  gateway → local / Ray   wrk at c=1 and c=16 through each platform's gateway
                          (``/models/<name>/environments/production/predict``): p50 and req/s
  Serve proxy             wrk at c=1 and c=16 on Ray Serve's proxy, straight to the Trestle
                          application (``/trestle-<id>/v1/models/model:predict``) and to ``bench/apps/ray_echo.py``
                          (a plain ``@serve.deployment`` echo, same concurrency cap)
  cold start from zero    the Ray deployment is scaled to zero; seconds from the first request to
                          its answer (a replica actor starts and loads the model)

Every response is checked as in the other cells. ``bench/run --smoke --cells ray`` runs it once
with 1-second cells (``tests/bench/test_ray_smoke.py``). ``BENCH_RAY_HEAD=FILE`` (a
``tests/support/ray_head.py`` ``RayHead.to_json``: its ports and token) uses a running head instead
of starting one; the round then removes only the applications it added.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import load
from bench._perfbench import ROOT
from bench.targets import MODELS

if TYPE_CHECKING:
    from bench.runner import Record, Session

NAME = "bench-async"
ECHO_APP = "plain-echo"
LABELS = ("gateway → local replica", "gateway → Ray replica", "proxy → Trestle on Ray", "proxy → plain Serve echo")
COLD = "cold start from zero"
CONCS = (1, 16)
MIN_DURATION_S = 3.0
"""Even in a smoke run: a Serve proxy answers in tens of ms on a busy 2-core box, and wrk's 1-s
runs at c=16 then saw no response at all."""
REPLICA_CPUS = 0.5
CONCURRENCY = 32
"""Requests one replica takes at once, Trestle's (``predict_concurrency``) and the plain echo's
(``max_ongoing_requests``): at 1, a request waits in Serve while the replica is busy and both routes
measure Serve's queueing (p50 over a second at c=16), not the replica."""
"""Logical CPUs per replica, Trestle's and the plain echo's alike."""


def available(trestle_bin: Path) -> str | None:
    """None if the Trestle venv has Ray Serve (the ray extra), else why not."""
    ray = trestle_bin.with_name("ray")
    if not ray.exists():
        return f"no `ray` beside {trestle_bin}: install the ray extra (pip install -e '.[ray]')"
    python = trestle_bin.with_name("python")
    probe = subprocess.run([str(python), "-c", "import ray.serve"], capture_output=True, timeout=120)
    return None if probe.returncode == 0 else "ray.serve does not import in the Trestle venv"


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RayRound:
    def __init__(self, session: Session, trestle_bin: Path, rnd: int) -> None:
        self.s, self.bin, self.rnd = session, trestle_bin, rnd
        self.ray = trestle_bin.with_name("ray")
        self.dir = session.out / f"ray-r{rnd}"
        self.key = "bench-" + uuid.uuid4().hex
        self.auth = {"Authorization": f"Api-Key {self.key}"}
        self.temp = Path(f"/tmp/bench-ray-{uuid.uuid4().hex[:8]}")  # short: Ray's unix socket paths
        self.ports = {name: _free_port() for name in ("gcs", "dashboard", "proxy", "client", "agent", "local", "ray")}
        self.ray_env = {
            **os.environ,
            "HOME": str(self.dir / "home"),
            "RAY_AUTH_MODE": "token",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(ROOT),  # the plain echo app's module (bench.apps.ray_echo)
        }
        self.token = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.deployments: list[str] = []
        self.external = os.environ.get("BENCH_RAY_HEAD")
        if self.external:
            head = json.loads(Path(self.external).read_text())
            self.ports.update(dashboard=head["ports"]["dashboard"], proxy=head["ports"]["proxy"])
            self.token = head["token"]

    def emit(self, label: str, **rec: Any) -> None:
        self.s.emit({"round": self.rnd, "target": "trestle-ray", "cell": "ray", "label": label, **rec})

    def run(self) -> None:
        (self.dir / "home").mkdir(parents=True, exist_ok=True)
        try:
            if not self.external:
                self.start_head()
            local = self.start_platform("local", [])
            ray = self.start_platform(
                "ray",
                [
                    "--engine", "ray", "--ray-address", f"http://127.0.0.1:{self.ports['dashboard']}",
                    "--ray-proxy-url", f"http://127.0.0.1:{self.ports['proxy']}",
                ],
            )  # fmt: skip
            self.push(local)
            ray_dep = self.push(ray)
            self.deploy_plain_echo()
            routes = (
                (LABELS[0], local, f"/models/{NAME}/environments/production/predict", True),
                (LABELS[1], ray, f"/models/{NAME}/environments/production/predict", True),
                (LABELS[2], self.ports["proxy"], f"/trestle-{ray_dep}/v1/models/model:predict", False),
                (LABELS[3], self.ports["proxy"], f"/{ECHO_APP}", False),
            )
            self.measure(routes)
            self.cold_start(ray, ray_dep)
        except (load.CheckFailed, OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as e:
            self.emit("error", valid=False, why=repr(e)[:500])
        finally:
            self.stop()

    # setup ------------------------------------------------------------------------------------

    def start_head(self) -> None:
        subprocess.run(
            [str(self.ray), "get-auth-token", "--generate"], env=self.ray_env, check=True, capture_output=True
        )
        self.token = (self.dir / "home" / ".ray" / "auth_token").read_text().strip()
        core = str(self.s.plan.server_core)
        argv = [
            "taskset", "-c", core, str(self.ray), "start", "--head", "--num-cpus", "2",
            "--node-ip-address", "127.0.0.1", "--port", str(self.ports["gcs"]),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.ports["dashboard"]),
            "--ray-client-server-port", str(self.ports["client"]),
            "--dashboard-agent-listen-port", str(self.ports["agent"]),
            "--temp-dir", str(self.temp), "--disable-usage-stats",
        ]  # fmt: skip
        subprocess.run(argv, env=self.ray_env, check=True, capture_output=True, timeout=300)
        self.wait(lambda: self.dashboard("GET", "/api/serve/applications/")[0] == 200, 120, "Ray dashboard")

    def dashboard(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["dashboard"], timeout=30)
        data = json.dumps(body).encode() if body is not None else None
        try:
            conn.request(method, path, body=data, headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            text = response.read()
        except OSError:
            return 0, None
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, None

    def start_platform(self, engine: str, args: list[str]) -> int:
        port = self.ports[engine]
        env = {**self.ray_env, "RAY_AUTH_TOKEN": self.token}
        log = open(self.s.logdir / f"ray-r{self.rnd}-{engine}-platform.log", "wb")  # noqa: SIM115
        argv = [
            "taskset", "-c", str(self.s.plan.server_core), str(self.bin), "platform", "start",
            "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(self.dir / f"data-{engine}"),
            "--api-key", self.key, *args,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.wait(lambda: _get(port, "/v1/health", self.auth) == 200, 60, "platform")
        return port

    def cli_env(self, port: int) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir / "home"),
            "TRESTLE_REMOTE_URL": f"http://127.0.0.1:{port}",
            "TRESTLE_API_KEY": self.key,
        }

    def push(self, port: int) -> str:
        truss = self.dir / f"truss-{port}"
        shutil.copytree(MODELS / "async", truss, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        config = (truss / "config.yaml").read_text()
        config = config.replace("predict_concurrency: 1", f"predict_concurrency: {CONCURRENCY}")
        # the plain echo's resources (a 2-CPU head fits both) and concurrency
        (truss / "config.yaml").write_text(config + f'resources:\n  cpu: "{REPLICA_CPUS}"\n  memory: 512Mi\n')
        p = subprocess.run(
            [str(self.bin), "push", str(truss), "--promote", "--output", "json"],
            env=self.cli_env(port),
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {}
        if p.returncode or out.get("status") != "ACTIVE":
            raise RuntimeError(f"push rc={p.returncode}: {(p.stdout + p.stderr)[-400:]}")
        self.deployments.append(str(out["deployment_id"]))
        return str(out["deployment_id"])

    def deploy_plain_echo(self) -> None:
        """Add the plain Serve echo beside the platform's application (Serve's config is whole)."""
        status, body = self.dashboard("GET", "/api/serve/applications/")
        apps = [a["deployed_app_config"] for a in (body or {}).get("applications", {}).values()]
        echo = {
            "name": ECHO_APP,
            "route_prefix": f"/{ECHO_APP}",
            "import_path": "bench.apps.ray_echo:app",
            "runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}},
            "deployments": [
                {
                    "name": "PlainEcho",
                    "num_replicas": 1,
                    "max_ongoing_requests": CONCURRENCY,  # Trestle's predict_concurrency, as it maps it
                    "max_queued_requests": -1,
                    "ray_actor_options": {"num_cpus": REPLICA_CPUS, "memory": 512 * 2**20},
                }
            ],
        }
        config = {
            "proxy_location": "HeadOnly",
            "http_options": {"host": "127.0.0.1", "port": self.ports["proxy"]},
            "applications": [*apps, echo],
        }
        status, _ = self.dashboard("PUT", "/api/serve/applications/", config)
        if status != 200:
            raise RuntimeError(f"the plain echo was refused ({status})")

        def running() -> bool:
            _, now = self.dashboard("GET", "/api/serve/applications/")
            return ((now or {}).get("applications", {}).get(ECHO_APP) or {}).get("status") == "RUNNING"

        self.wait(running, 120, "the plain Serve echo")

    # cells ------------------------------------------------------------------------------------

    def measure(self, routes: tuple[tuple[str, int, str, bool], ...]) -> None:
        p = self.s.plan
        body = load.UNARY_BODY
        header = f"Authorization: Api-Key {self.key}"
        expects = {
            label: load.expected_body(port, path, body, load.JSON, load.unary_echo, self.auth if auth else None)
            for label, port, path, auth in routes
        }
        keys = ("rps", "p50_us", "p99_us", "raw_p50_us", "requests", "valid", "why")
        duration = max(p.duration, MIN_DURATION_S)
        for c in CONCS:
            for label, port, path, auth in routes:
                r = load.wrk_post(
                    port, path, body, load.JSON, expects[label], c, duration, p.client_core, header if auth else ""
                )
                self.emit(label, c=c, **{k: r[k] for k in keys if k in r})

    def cold_start(self, port: int, dep: str) -> None:
        env = self.cli_env(port)
        settings = [
            "--min-replicas",
            "0",
            "--max-replicas",
            "1",
            "--scale-down-delay",
            "1",
            "--scale-to-zero-delay",
            "1",
        ]
        subprocess.run([str(self.bin), "scale", dep, *settings], env=env, check=True, capture_output=True, timeout=120)

        def at_zero() -> bool:
            _, body = self.dashboard("GET", "/api/serve/applications/")
            app = (body or {}).get("applications", {}).get(f"trestle-{dep}") or {}
            replicas = ((app.get("deployments") or {}).get("TrestleReplica") or {}).get("replicas") or []
            return not replicas

        self.wait(at_zero, 180, "scale to zero")
        t0 = time.monotonic()
        status, out = load.post(
            port, f"/models/{NAME}/environments/production/predict", load.UNARY_BODY, timeout=300, headers=self.auth
        )
        secs = round(time.monotonic() - t0, 3)
        if status != 200 or not load.unary_echo(out):
            raise load.CheckFailed(f"first request after scale to zero: {status} {out[:200]!r}")
        self.emit(COLD, s=secs, valid=True)

    # teardown ---------------------------------------------------------------------------------

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.external:
            self._remove_own_applications()
            return
        self._kill_head()
        shutil.rmtree(self.temp, ignore_errors=True)

    def _remove_own_applications(self) -> None:
        """On a head this round did not start: take the echo and the Ray platform's apps out."""
        _, body = self.dashboard("GET", "/api/serve/applications/")
        apps = (body or {}).get("applications", {})
        ours = {ECHO_APP, *(f"trestle-{dep}" for dep in self.deployments)}
        keep = [
            a["deployed_app_config"] for name, a in apps.items() if name not in ours and a.get("status") != "DELETING"
        ]
        config = {
            "proxy_location": "HeadOnly",
            "http_options": {"host": "127.0.0.1", "port": self.ports["proxy"]},
            "applications": keep,
        }
        self.dashboard("PUT", "/api/serve/applications/", config)

    def _kill_head(self) -> None:
        """Only this round's head: every process whose command line names its temp dir or whose
        environment has the round's HOME."""
        home = f"HOME={self.dir / 'home'}".encode()
        mine = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            if str(self.temp) in cmdline or home in environ:  # Ray's agents rename their command line
                mine.append(int(entry.name))
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{what} not ready in {timeout:.0f}s")


def unavailable(why: str) -> list[Record]:
    return [
        {
            "round": 0,
            "target": "trestle-ray",
            "cell": "ray",
            "label": label,
            "available": False,
            "why": why,
            "valid": True,
        }
        for label in (*LABELS, COLD)
    ]


def section(records: list[Record]) -> str:
    """BENCHMARKS.md's Ray section: per label and c, median p50 (ms) and req/s over rounds."""
    import statistics

    rows = [r for r in records if r.get("cell") == "ray" and r.get("valid") and r.get("available", True)]
    missing = [r for r in records if r.get("cell") == "ray" and r.get("available") is False]
    if not rows:
        return f"## Ray\n\nNot measured: {missing[0]['why']}.\n" if missing else ""
    lines = ["## Ray\n", "| route | c | p50 ms | req/s |", "|---|---|---|---|"]
    for label in LABELS:
        for c in CONCS:
            got = [r for r in rows if r["label"] == label and r.get("c") == c]
            if got:
                p50 = statistics.median(r["p50_us"] for r in got) / 1000
                rps = statistics.median(r["rps"] for r in got)
                lines.append(f"| {label} | {c} | {p50:.2f} | {rps:.0f} |")
    cold = [r["s"] for r in rows if r["label"] == COLD]
    text = "\n".join(lines) + "\n"
    if cold:
        text += f"\nCold start from zero on Ray (first request answered): {statistics.median(cold):.2f} s.\n"
    ours = [r["rps"] for r in rows if r["label"] == LABELS[2] and r.get("c") == 16]
    plain = [r["rps"] for r in rows if r["label"] == LABELS[3] and r.get("c") == 16]
    if ours and plain:
        ratio = statistics.median(ours) / statistics.median(plain)
        text += f"\nTrestle on Ray / plain Serve echo, req/s at c=16: {ratio:.2f}x (goal ≥ 0.9x).\n"
    return text
