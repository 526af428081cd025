"""End-to-end fixtures: a real platform process (``trestle platform start``) on loopback, driving
real ``trestle serve`` replicas, and the real CLI in subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.coverage import untraced_subprocesses  # noqa: F401 (an autouse fixture)

KEY = "e2e-key"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Platform:
    """``trestle platform start`` on loopback; ``args`` are extra options (``--engine ray ...``) and
    ``env`` extra environment for it and for the CLI the tests run against it."""

    def __init__(
        self, data_dir: Path, home: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.home = home
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "platform.out"
        self.api_key = KEY
        """The key ``start`` registers with ``--api-key`` (a new one rotates the first key)."""
        self.env = {
            **os.environ,
            "HOME": str(home),
            "TRESTLE_RC": str(home / ".trestlerc"),
            "TRESTLE_REMOTE_URL": self.url,
            "TRESTLE_API_KEY": KEY,
            "NO_COLOR": "1",
            "AWS_SECRET_ACCESS_KEY": "the-platform-hosts-own",  # must never reach a replica
            **(env or {}),
        }
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Api-Key {KEY}"}, timeout=60)

    def start(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "trestle",
                "platform",
                "start",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--api-key",
                self.api_key,
                "--gateway-wait-seconds",
                "30",
                *self.args,
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/v1/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("platform did not start:\n" + self.log_path.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def run_cli(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 180,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The CLI as a user runs it; ``env`` overrides the platform's environment (a key, a URL);
        ``stdin`` is piped in (else stdin is empty)."""
        return subprocess.run(
            [PYTHON, "-m", "trestle", *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 180) -> str:
        result = self.run_cli(*args, cwd=cwd, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"trestle {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def stdout(self, *args: str, cwd: Path | None = None) -> str:
        """stdout alone (``trestle predict`` says on stderr which URL it called)."""
        result = self.run_cli(*args, cwd=cwd)
        assert result.returncode == 0, f"trestle {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def deployment(self, dep_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/v1/deployments/{dep_id}").json()
        return body

    def wait_for(self, check: Any, timeout: float = 60, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")

    def logs(self, dep_id: str) -> str:
        return self.http.get(f"/v1/deployments/{dep_id}/logs").text


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    (root / "home").mkdir()
    plat = Platform(root / "data", root / "home")
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


MODEL_CODE = """
import json
import os
import time
from pathlib import Path


class Model:
    def __init__(self, **kwargs):
        self._environment = kwargs.get("environment")

    def load(self):
        counter = Path(os.environ["LOAD_COUNTER"])
        with counter.open("a") as handle:
            handle.write("x")
        self.loads = len(counter.read_text())

    def setup_environment(self, environment):
        self._environment = environment

    def predict(self, model_input):
        if model_input.get("sleep"):
            time.sleep(model_input["sleep"])
        if model_input.get("stream"):
            return self._stream(model_input["stream"])
        return {"version": VERSION, "echo": model_input, "loads": self.loads, "env": self._environment}

    def _stream(self, n):
        for i in range(n):
            yield f"chunk{i};"
            time.sleep(0.3)

    def chat_completions(self, model_input):
        content = "hi " + model_input["messages"][-1]["content"]
        message = {"role": "assistant", "content": content}
        return {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}


VERSION = 1
"""


def last_json(out: str) -> dict[str, Any]:
    """The JSON object line of ``push --output json`` (warnings go to stderr, printed around it)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    body: dict[str, Any] = json.loads(lines[-1])
    return body


def write_truss(root: Path, name: str, counter: Path, extra_config: str = "") -> Path:
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(
        f"model_name: {name}\nenvironment_variables:\n  LOAD_COUNTER: {counter}\n{extra_config}"
    )
    (root / "model" / "model.py").write_text(MODEL_CODE)
    return root


def ray_platform(head: Any, root: Path, *extra: str) -> Platform:
    """The e2e platform with the Ray engine on ``head`` (a ``tests.support.ray_head.RayHead``;
    token from the environment); ``extra`` are more ``platform start`` options."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    args = (
        "--gateway-wait-seconds", "60",
        "--engine", "ray", "--ray-address", head.address, "--ray-proxy-url", head.proxy_url, *extra,
    )  # fmt: skip
    ray_env = {k: v for k, v in head.env.items() if k.startswith("RAY_")}
    return Platform(root / "data", root / "home", args=args, env={**ray_env, "RAY_AUTH_TOKEN": head.token})


@contextlib.contextmanager
def running_on_ray(head: Any, root: Path, *extra: str) -> Iterator[Platform]:
    """A started Ray platform (``ray_platform``); on exit it stops, and its Serve applications are
    taken off the run's shared head, so that the next test has the head's CPUs to itself."""
    platform = ray_platform(head, root, *extra)
    platform.start()
    try:
        yield platform
    finally:
        try:
            ids = [dep["id"] for dep in platform.http.get("/v1/deployments").json()["deployments"]]
        except (httpx.HTTPError, KeyError, ValueError):
            ids = []
        platform.stop()
        platform.http.close()
        head.remove_applications([f"trestle-{dep}" for dep in ids])


def push_no_wait(platform: Platform, truss: Path, *args: str) -> str:
    """``trestle push --no-wait``; the deployment id it printed."""
    result = platform.run_cli("push", "--no-wait", *args, cwd=truss, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if line.startswith("Deployment ID:"):
            return line.split()[-1]
    raise AssertionError(result.stdout)


def wait_status(platform: Platform, dep: str, status: str, timeout: float = 180) -> dict[str, Any]:
    """The deployment's view once it has ``status`` (the platform's log tail if it never does)."""
    try:
        view: dict[str, Any] = platform.wait_for(
            lambda: (body := platform.deployment(dep))["status"] == status and body, timeout=timeout, interval=0.5
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{dep} never reached {status}: {exc}\n{platform.deployment(dep)}\n"
            f"its log:\n{platform.logs(dep)[-3000:]}\nthe platform's:\n{platform.log_path.read_text()[-3000:]}"
        ) from None
    return view
