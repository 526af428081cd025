"""``trestle platform start``: the first start prints its URL and a new API key, stored hashed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import free_port


class Started:
    """A platform process whose output is collected by a thread."""

    def __init__(self, data: Path, port: int, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trestle", "platform", "start", "--port", str(port), "--data-dir", str(data), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HOME": str(data.parent)},
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(self.output())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.exit_code = self.proc.wait(timeout=30)
        self.reader.join(5)
        return self.output()


def test_first_start_prints_a_key_that_works_and_is_stored_hashed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    text = Started(data, port).stop()
    assert f"http://127.0.0.1:{port}" in text
    match = re.search(r"API key \(shown once, stored hashed\): (\S+)", text)
    assert match, text
    key = match.group(1)
    assert key.encode() not in (data / "platform.db").read_bytes()  # only its hash is stored

    second = Started(data, port)
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(url, headers={"Authorization": f"Api-Key {key}"}).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Api-Key wrong"}).status_code == 401
    finally:
        text = second.stop()
    assert "API key" not in text  # not generated (or shown) again


def test_the_ray_engine_is_refused_without_token_auth_unless_insecure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token
    argv = [sys.executable, "-m", "trestle", "platform", "start", "--engine", "ray", "--data-dir", str(tmp_path / "d")]
    no_address = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert no_address.returncode != 0
    assert "--ray-address" in no_address.stderr
    result = subprocess.run(
        [*argv, "--ray-address", "http://127.0.0.1:9", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no Ray auth token" in result.stderr and "--ray-insecure" in result.stderr
    assert "Traceback" not in result.stderr


def _cli(url: str, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRESTLE_REMOTE_URL": url, "TRESTLE_API_KEY": key, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "trestle", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def _line_with(text: str, *needles: str) -> str:
    for line in text.splitlines():
        if all(needle in line for needle in needles):
            return line
    raise AssertionError(f"no line with {needles} in:\n{text}")


def test_a_second_platform_on_one_data_dir_is_refused_and_events_reach_the_terminal(tmp_path: Path) -> None:
    from tests.e2e.conftest import last_json, write_truss

    data = tmp_path / "data"
    port = free_port()
    first = Started(data, port)
    url = f"http://127.0.0.1:{port}"
    try:
        key = re.search(r"API key \(shown once, stored hashed\): (\S+)", first.output())
        assert key, first.output()
        counter = tmp_path / "loads"
        truss = write_truss(tmp_path / "t", "terminal-model", counter)
        pushed = _cli(url, key.group(1), "push", "--promote", "--output", "json", cwd=truss)
        assert pushed.returncode == 0, pushed.stderr
        dep = last_json(pushed.stdout)["deployment_id"]
        (pidfile,) = (data / "run").glob(f"{dep}-*.pid")
        replica = int(pidfile.read_text())

        # a second platform on the same data dir: refused, naming the running one; its replicas untouched
        second = subprocess.run(
            [sys.executable, "-m", "trestle", "platform", "start", "--port", str(free_port()), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert second.returncode == 1, second
        assert f"pid {first.proc.pid}" in second.stderr and url in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert "API key" not in second.stdout + second.stderr
        assert int(pidfile.read_text()) == replica
        os.kill(replica, 0)  # still running
        assert counter.read_text() == "x"  # not loaded again

        # the platform's own terminal: pushes, promotes, crashes (one line each, with ids)
        os.kill(replica, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while "exited with code -9" not in first.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        text = first.stop()
    model_id = last_json(pushed.stdout)["model_id"]
    assert model_id in _line_with(text, "push", "terminal-model", dep)
    _line_with(text, "promote", dep, "production")
    _line_with(text, "crash", dep, "exited with code -9")
    _line_with(text, "shutting down")
    _line_with(text, "stopped")


def test_a_port_in_use_fails_before_a_key_is_made(tmp_path: Path) -> None:
    import socket

    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "trestle", "platform", "start", "--port", str(port), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},
        )
    assert result.returncode == 1, result
    assert f"127.0.0.1:{port} is already in use" in result.stderr, result.stderr
    assert "API key" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (data / "platform.db").exists()  # nothing written to the store


def test_a_key_from_a_file_a_private_data_dir_no_leftovers_limits_before_auth_and_exit_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "artifacts").mkdir(parents=True)
    (data / "artifacts" / "tmpab12.part").write_bytes(b"half an upload")  # what a SIGKILL leaves
    (data / "deployments" / ".staging-123-456" / "model").mkdir(parents=True)
    data.chmod(0o755)
    key_file = tmp_path / "key"
    key_file.write_text("k-from-a-file\n")
    port = free_port()
    started = Started(data, port, "--api-key-file", str(key_file))
    try:
        cmdline = Path(f"/proc/{started.proc.pid}/cmdline").read_bytes()
        assert b"k-from-a-file" not in cmdline  # not visible in `ps`
        url = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(url, headers={"Authorization": "Api-Key k-from-a-file"}).status_code == 200
        # limits come before the key check: a huge head without a key is refused as such
        huge = httpx.get(url, headers={"X-Pad": "a" * (128 << 10)})
        assert huge.status_code == 431
        assert httpx.get(url, headers={f"x-h{i}": "1" for i in range(150)}).status_code == 431
        assert (data.stat().st_mode & 0o777) == 0o700
        assert ((data / "platform.db").stat().st_mode & 0o777) == 0o600
        assert ((data / "secrets").stat().st_mode & 0o777) == 0o700
        assert not (data / "artifacts" / "tmpab12.part").exists()
        assert not (data / "deployments" / ".staging-123-456").exists()
    finally:
        text = started.stop()
    assert started.exit_code == 0, text  # a clean SIGTERM drain is a success
    assert "removed 2 unfinished upload(s) and staging dir(s)" in text
