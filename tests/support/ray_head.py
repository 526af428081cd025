"""A local Ray head for the ``ray`` tier: loopback, token auth, one per test run.

Ray takes ~7 s and ~1.6 GB to start, so every ray test shares one head (``shared_head``): the
first pytest worker that needs it starts it under a file lock in the run's shared temp root and
writes where it listens; the others read that; each worker registers itself and the last one to
finish stops it. A head is stopped by killing the processes whose command line names its own temp
dir or whose environment has its own HOME, never by ``ray stop`` (which stops every Ray on the
machine, other people's included).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.coverage import untraced
from tests.support.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))


class RayHead:
    def __init__(self, root: Path, ports: dict[str, int] | None = None, temp: Path | None = None) -> None:
        self.root = root
        self.home = root / "home"
        # Ray puts unix sockets under its temp dir and their paths have a ~107-byte limit: pytest's
        # tmp paths (longer under xdist) are too long, so the head gets a short dir of its own.
        self.temp = temp or Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        names = ("dashboard", "proxy", "gcs", "client", "agent")
        self.ports = ports or {name: free_port() for name in names}
        self.dashboard = self.ports["dashboard"]
        self.proxy = self.ports["proxy"]
        self.token = ""
        self.env = {
            **untraced(os.environ),  # the head and every Ray worker it starts (tests/support/coverage.py)
            "HOME": str(self.home),
            "RAY_AUTH_MODE": "token",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy}"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        token_file = self.home / ".ray" / "auth_token"
        if not token_file.is_file():
            subprocess.run([RAY, "get-auth-token", "--generate"], env=self.env, check=True, capture_output=True)
        self.token = token_file.read_text().strip()
        argv = [
            RAY, "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
            "--port", str(self.ports["gcs"]), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(self.dashboard), "--ray-client-server-port", str(self.ports["client"]),
            "--dashboard-agent-listen-port", str(self.ports["agent"]),
            "--temp-dir", str(self.temp), "--disable-usage-stats",
        ]  # fmt: skip
        subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=300)
        deadline = time.monotonic() + 60
        while not self.alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head's dashboard at {self.address} never answered")
            time.sleep(0.5)

    def alive(self) -> bool:
        try:
            return self._get("/api/serve/applications/").status_code == 200
        except httpx.HTTPError:
            return False

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(self.address + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def applications(self) -> dict[str, Any]:
        apps: dict[str, Any] = self._get("/api/serve/applications/").json()["applications"]
        return apps

    def trestle_applications(self) -> list[str]:
        return sorted(name for name in self.applications() if name.startswith("trestle-"))

    def replicas(self, app: str) -> list[dict[str, Any]]:
        """The Serve replicas of a Trestle application (``[]`` when it has none, or is gone)."""
        details = self.applications().get(app) or {}
        deployment = (details.get("deployments") or {}).get("TrestleReplica") or {}
        replicas: list[dict[str, Any]] = deployment.get("replicas") or []
        return replicas

    def remove_applications(self, names: Collection[str]) -> None:
        """Take ``names`` out of the cluster's Serve config (a test's clean-up: the platform leaves
        its applications running when it stops); everyone else's stay."""
        if not self.alive():
            return  # a head a test killed: nothing left to clean
        apps = self.applications()
        if not set(names) & set(apps):
            return
        keep = [
            details["deployed_app_config"]
            for name, details in apps.items()
            if name not in names and details.get("deployed_app_config") and details.get("status") != "DELETING"
        ]
        config = {
            "proxy_location": "HeadOnly",
            "http_options": {"host": "127.0.0.1", "port": self.proxy},
            "applications": keep,
        }
        headers = {"Authorization": f"Bearer {self.token}"}
        httpx.put(self.address + "/api/serve/applications/", json=config, headers=headers, timeout=30)

    def processes(self) -> list[Any]:
        import psutil

        # Ray's agents rename themselves (``ray::DashboardAgent``), so the temp dir on the command
        # line is not enough: this head's HOME in the environment finds those too
        home = f"HOME={self.home}".encode()
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error, OSError):
                named = str(self.temp) in " ".join(proc.info["cmdline"] or [])
                if named or home in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                    mine.append(proc)
        return mine

    def kill(self) -> None:
        """Kill this head's processes (a crash, as far as the platform can tell); the temp dir stays."""
        import psutil

        mine = self.processes()
        for proc in mine:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(mine, timeout=30)

    def stop(self) -> None:
        """Only this head: its processes, then its temp dir."""
        self.kill()
        shutil.rmtree(self.temp, ignore_errors=True)

    def to_json(self) -> str:
        return json.dumps({"root": str(self.root), "temp": str(self.temp), "ports": self.ports, "token": self.token})

    @classmethod
    def from_json(cls, text: str) -> RayHead:
        data = json.loads(text)
        head = cls(Path(data["root"]), ports=data["ports"], temp=Path(data["temp"]))
        head.token = data["token"]
        return head


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared_head(run_root: Path, worker: str) -> Iterator[RayHead]:
    """The run's one Ray head, started by the first worker that asks, stopped by the last to leave.

    ``TRESTLE_TEST_RAY_HEAD=FILE`` (a ``RayHead.to_json``) reuses a running head instead, to iterate
    quickly. ``run_root``: a directory every worker of this run sees (the parent of xdist's per-worker base
    temp); ``worker``: this worker's name."""
    reuse = os.environ.get("TRESTLE_TEST_RAY_HEAD")
    if reuse:  # a head someone started (RayHead.to_json in that file): used, never stopped
        yield RayHead.from_json(Path(reuse).read_text())
        return
    lock = run_root / "ray-head.lock"
    info = run_root / "ray-head.json"
    users = run_root / "ray-head-users"
    with _locked(lock):
        head = RayHead.from_json(info.read_text()) if info.is_file() else None
        if head is None or not head.alive():
            head = RayHead(Path(tempfile.mkdtemp(prefix="ray-head-", dir=run_root)))
            try:
                head.start()
            except BaseException:
                head.stop()
                raise
            info.write_text(head.to_json())
        users.mkdir(exist_ok=True)
        (users / worker).touch()
    try:
        yield head
    finally:
        with _locked(lock):
            (users / worker).unlink(missing_ok=True)
            if not any(users.iterdir()):
                head.stop()
                info.unlink(missing_ok=True)
