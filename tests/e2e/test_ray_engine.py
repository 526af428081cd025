"""The Ray engine end to end: one local Ray head per test run (loopback, token auth, stopped by its
own processes, never `ray stop`), the real platform with `--engine ray`, and the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform, free_port
from tests.support.trusses import make_truss

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
psutil = pytest.importorskip("psutil")

RAY = str(Path(sys.executable).with_name("ray"))


class RayHead:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        # Ray puts unix sockets under its temp dir and their paths have a ~107-byte limit: pytest's
        # tmp paths (longer under xdist) are too long, so the head gets a short dir of its own.
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
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


def ray_platform(head: RayHead, root: Path) -> Platform:
    """The e2e platform with the Ray engine on ``head`` (token from the environment)."""
    (root / "home").mkdir(exist_ok=True)
    args = (
        "--gateway-wait-seconds", "60",
        "--engine", "ray", "--ray-address", f"http://127.0.0.1:{head.dashboard}",
        "--ray-proxy-url", f"http://127.0.0.1:{head.proxy}",
    )  # fmt: skip
    ray_env = {k: v for k, v in head.env.items() if k.startswith("RAY_")}
    return Platform(root / "data", root / "home", args=args, env={**ray_env, "RAY_AUTH_TOKEN": head.token})


def push(platform: Platform, truss: Path) -> str:
    result = platform.run_cli("push", "--no-wait", cwd=truss, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if line.startswith("Deployment ID:"):
            return line.split()[-1]
    raise AssertionError(result.stdout)


def wait_status(platform: Platform, dep: str, status: str, timeout: float = 180) -> dict[str, Any]:
    try:
        view: dict[str, Any] = platform.wait_for(
            lambda: (body := platform.deployment(dep))["status"] == status and body, timeout=timeout, interval=0.5
        )
    except AssertionError as exc:
        raise AssertionError(f"{dep} never reached {status}: {exc}\n" + platform.log_path.read_text()[-3000:]) from None
    return view


RAY_MODEL = (
    "class Model:\n"
    "    def predict(self, x):\n"
    "        if x.get('stream'):\n"
    "            return (f'chunk{i};' for i in range(3))\n"
    "        return {'echo': x}\n"
)


def test_push_active_predict_stream_and_restart_reconciles(ray_head: RayHead, tmp_path: Path) -> None:
    platform = ray_platform(ray_head, tmp_path)
    platform.start()
    try:
        dep_id = push(platform, make_truss(tmp_path / "truss", "ray-echo", RAY_MODEL))
        view = wait_status(platform, dep_id, "ACTIVE")
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
        wait_status(platform, dep_id, "ACTIVE")
        assert list(ray_head.applications()) == [f"trestle-{dep_id}"]
        assert platform.http.post(predict, json={"b": 2}).json() == {"echo": {"b": 2}}
    finally:
        platform.stop()
