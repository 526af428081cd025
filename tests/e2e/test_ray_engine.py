"""The Ray engine end to end: one local Ray head per test run (loopback, token auth, stopped by its
own processes, never `ray stop`), the real platform with `--engine ray`, and the real CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
psutil = pytest.importorskip("psutil")

RAY = str(Path(sys.executable).with_name("ray"))
KEY = "ray-e2e-key"


class RayHead:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.temp = root / "t"  # short: Ray's socket paths have a length limit
        self.dashboard = free_port()
        self.proxy = free_port()
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "RAY_AUTH_MODE": "token",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def start(self) -> None:
        self.home.mkdir(parents=True)
        subprocess.run([RAY, "get-auth-token", "--generate"], env=self.env, check=True, capture_output=True)
        self.token = (self.home / ".ray" / "auth_token").read_text().strip()
        argv = [
            RAY, "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
            "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard),
            "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
            "--temp-dir", str(self.temp), "--disable-usage-stats",
        ]  # fmt: skip
        subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=120)

    def applications(self) -> dict[str, Any]:
        response = httpx.get(
            f"http://127.0.0.1:{self.dashboard}/api/serve/applications/",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        apps: dict[str, Any] = response.json()["applications"]
        return apps

    def stop(self) -> None:
        """Only this head: every process whose command line names its temp dir."""
        mine = [p for p in psutil.process_iter(["cmdline"]) if str(self.temp) in " ".join(p.info["cmdline"] or [])]
        for proc in mine:
            proc.kill()
        psutil.wait_procs(mine, timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    head = RayHead(Path(tmp_path_factory.mktemp("ray")))
    try:
        head.start()
        yield head
    finally:
        head.stop()


class RayPlatform:
    def __init__(self, head: RayHead, root: Path) -> None:
        self.head = head
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / "data"
        self.log = root / "platform.out"
        self.env = {**head.env, "RAY_AUTH_TOKEN": head.token, "TRESTLE_REMOTE_URL": self.url, "TRESTLE_API_KEY": KEY}
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Api-Key {KEY}"}, timeout=60)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "trestle", "platform", "start", "--port", str(self.port),
            "--data-dir", str(self.data), "--api-key", KEY, "--gateway-wait-seconds", "60",
            "--engine", "ray", "--ray-address", f"http://127.0.0.1:{self.head.dashboard}",
            "--ray-proxy-url", f"http://127.0.0.1:{self.head.proxy}",
        ]  # fmt: skip
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/v1/health").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("platform did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def push(self, truss: Path) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "trestle", "push", "--no-wait"],
            cwd=truss, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        for line in result.stdout.splitlines():
            if line.startswith("Deployment ID:"):
                return line.split()[-1]
        raise AssertionError(result.stdout)

    def wait_status(self, dep: str, status: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.http.get(f"/v1/deployments/{dep}").json()
            if body["status"] == status:
                return body
            time.sleep(0.5)
        raise AssertionError(f"{dep} never reached {status}: {body}\n" + self.log.read_text()[-3000:])


def make_truss(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: ray-echo\n")
    (root / "model" / "model.py").write_text(
        "class Model:\n"
        "    def predict(self, x):\n"
        "        if x.get('stream'):\n"
        "            return (f'chunk{i};' for i in range(3))\n"
        "        return {'echo': x}\n"
    )
    return root


def test_push_active_predict_stream_and_restart_reconciles(ray_head: RayHead, tmp_path: Path) -> None:
    platform = RayPlatform(ray_head, tmp_path)
    platform.start()
    try:
        dep_id = platform.push(make_truss(tmp_path / "truss"))
        view = platform.wait_status(dep_id, "ACTIVE")
        predict = view["predict_url"]
        response = platform.http.post(predict, json={"a": 1})
        assert response.status_code == 200, response.text
        assert response.json() == {"echo": {"a": 1}}
        with platform.http.stream("POST", predict, json={"stream": True}) as stream:
            assert stream.status_code == 200
            assert b"".join(stream.iter_bytes()) == b"chunk0;chunk1;chunk2;"
        assert list(ray_head.applications()) == [f"trestle-{dep_id}"]

        # a platform restart adopts what runs on Ray: no duplicate, nothing lost
        platform.stop()
        platform.start()
        platform.wait_status(dep_id, "ACTIVE")
        assert list(ray_head.applications()) == [f"trestle-{dep_id}"]
        assert platform.http.post(predict, json={"b": 2}).json() == {"echo": {"b": 2}}
    finally:
        platform.stop()
