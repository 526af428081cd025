"""A throw-away ``trestle platform start`` for the standalone bench scripts (``bench.gpus``,
``bench.attacks``): its own data dir and HOME under a temp dir, a known key, a client for its API,
stopped and removed on exit."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


@dataclasses.dataclass
class ScratchPlatform:
    work: Path
    env: dict[str, str]
    """For ``trestle`` CLI calls against it (remote URL, key, HOME)."""
    http: httpx.Client
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return (self.work / "platform.out").read_text(errors="replace")


@contextlib.contextmanager
def scratch_platform(port: int, key: str, prefix: str, drop_env: tuple[str, ...] = ()) -> Iterator[ScratchPlatform]:
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    env.update(TRESTLE_REMOTE_URL=f"http://127.0.0.1:{port}", TRESTLE_API_KEY=key, HOME=str(work))
    cmd = [sys.executable, "-m", "trestle", "platform", "start", "--port", str(port)]
    cmd += ["--data-dir", str(work / "data"), "--api-key", key]
    with (work / "platform.out").open("wb") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Api-Key {key}"}, timeout=120
        )
        try:
            wait_until(lambda: healthy(http), 60)
            yield ScratchPlatform(work, env, http, process)
        finally:
            http.close()
            process.terminate()
            process.wait(90)
    shutil.rmtree(work, ignore_errors=True)


def healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/v1/health").status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: Any, timeout: float) -> Any:
    """``check()``'s first true value, polled twice a second; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"not done in {timeout:.0f}s")
