"""Start a real ``trestle serve`` process on loopback for integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.trusses import write_truss

__all__ = ["ServerHandle", "free_port", "run_server", "wait_for", "write_truss"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    port: int
    _log_file: object = field(repr=False, default=None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The log, once ``text`` is in it."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged in {timeout}s:\n{log}")
            time.sleep(0.05)
        return log

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(self.url + "/v1/models/model", timeout, self)

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)


def wait_for(url: str, timeout: float, handle: ServerHandle | None = None, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if handle is not None and handle.process.poll() is not None:
            raise RuntimeError(f"server exited with {handle.process.returncode}:\n{handle.log()}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.05)
    log = handle.log() if handle is not None else ""
    raise TimeoutError(f"{url} not {status} after {timeout}s (last: {last})\n{log}")


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds: for a state the test waits on (a marker, a gauge), never a duration."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout}s for {what}")
        time.sleep(0.01)


def metric(handle: ServerHandle, name: str) -> float:
    """The value of an unlabelled sample on ``/metrics/trestle`` (``trestle_requests_queued``)."""
    for line in httpx.get(handle.url + "/metrics/trestle", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


@contextlib.contextmanager
def run_server(
    truss_dir: Path,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    args: list[str] | None = None,
    ready: bool = True,
    timeout: float = 60.0,
    python: str | None = None,
) -> Iterator[ServerHandle]:
    """Run ``python -m trestle serve truss_dir`` and wait until it is ready (or just live).

    ``python``: another interpreter (a venv built by ``tests.support.venvs``); default: this one.
    The server gets its own ``HOME`` (a temporary directory, unless ``env`` names one) so that
    what it writes there (``~/inference_server_crashed.txt``) stays out of the user's.
    """
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="trestle-server-", suffix=".log")
    home = tempfile.mkdtemp(prefix="trestle-home-")
    proc_env = {**os.environ, "HOME": home, "TRESTLE_LOAD_RETRY_DELAY": "0.1", **(env or {})}
    cmd = [
        python or sys.executable,
        "-m",
        "trestle",
        "serve",
        str(truss_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(cmd + (args or []), stdout=log_fd, stderr=subprocess.STDOUT, env=proc_env)
    os.close(log_fd)
    handle = ServerHandle(process, f"http://127.0.0.1:{port}", Path(log_name), port)
    try:
        if ready:
            handle.wait_ready(timeout)
        else:
            wait_for(handle.url + "/", timeout, handle)
        yield handle
    finally:
        _stop(process)
        with contextlib.suppress(OSError):
            os.unlink(log_name)
        shutil.rmtree(home, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean exit, so that coverage saves the server's data), a second signal to skip
    the drain if it lingers, SIGKILL as the last resort."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGINT, 3.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
