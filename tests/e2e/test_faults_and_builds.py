"""Builds cached by requirements, a SIGKILLed replica, platform restarts, and a docker_server truss.
This module runs its own platform because it restarts it."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import httpx

from tests.e2e.conftest import Platform, free_port, last_json, write_truss


def build_wheel(root: Path, value: str) -> Path:
    """A tiny pure-python wheel, so the build test needs no network."""
    files = {
        "tinypkg/__init__.py": f"VALUE = {value!r}\n".encode(),
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypkg-0.1.dist-info/RECORD,,")
    path = root / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("tinypkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


REQ_MODEL = """
import tinypkg


class Model:
    def predict(self, model_input):
        return {"value": tinypkg.VALUE}
"""


def test_requirements_build_and_cache(platform: Platform, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "tiny-ok")
    truss = tmp_path / "req"
    (truss / "model").mkdir(parents=True)
    (truss / "config.yaml").write_text(f"model_name: reqs\nrequirements:\n  - tinypkg @ {wheel.as_uri()}\n")
    (truss / "model" / "model.py").write_text(REQ_MODEL)
    first = last_json(platform.cli("push", "--output", "json", cwd=truss))
    assert platform.http.post(first["predict_url"], json={}).json() == {"value": "tiny-ok"}
    info = platform.deployment(first["deployment_id"])
    assert info["env_reused"] is False
    assert "installing requirements" in platform.logs(first["deployment_id"])
    # same requirements, different code: the environment is reused
    (truss / "model" / "model.py").write_text(REQ_MODEL.replace('{"value"', '{"again": True, "value"'))
    second = last_json(platform.cli("push", "--output", "json", cwd=truss))
    assert platform.http.post(second["predict_url"], json={}).json() == {"again": True, "value": "tiny-ok"}
    again = platform.deployment(second["deployment_id"])
    assert again["env_reused"] is True
    assert again["env_key"] == info["env_key"]
    assert "reusing environment" in platform.logs(second["deployment_id"])


def _replica_pid(platform: Platform, dep_id: str) -> int:
    pidfiles = list((platform.data_dir / "run").glob(f"{dep_id}-*.pid"))
    assert len(pidfiles) == 1, pidfiles
    return int(pidfiles[0].read_text())


def test_killed_replica_returns_and_platform_restarts(platform: Platform, tmp_path: Path) -> None:
    counter = tmp_path / "loads"
    truss = write_truss(tmp_path / "m", "sturdy", counter)
    dep = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))
    prod = "/models/sturdy/environments/production/predict"
    assert platform.http.post(prod, json={}).json()["loads"] == 1

    # SIGKILL the replica while a request is in flight: it gets a clear 502, the replica comes back
    pid = _replica_pid(platform, dep["deployment_id"])
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(platform.http.post(prod, json={"sleep": 10}).status_code))
    thread.start()
    platform.wait_for(lambda: len(counter.read_text()) == 1)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    thread.join(15)
    assert statuses == [502]
    body = platform.http.post(prod, json={}).json()  # waits (bounded) for the restarted replica
    assert "loads" in body, body
    assert body["loads"] == 2
    assert _replica_pid(platform, dep["deployment_id"]) != pid
    assert "exited with code -9" in platform.logs(dep["deployment_id"])

    # graceful restart of the platform: the deployment comes back, routes as before
    platform.stop(signal.SIGTERM)
    assert _no_process(pid)
    platform.start()
    assert platform.http.post(prod, json={}).json()["loads"] == 3
    assert platform.deployment(dep["deployment_id"])["status"] == "ACTIVE"

    # a killed platform: the next start reaps the orphaned replica and starts a fresh one
    orphan = _replica_pid(platform, dep["deployment_id"])
    platform.stop(signal.SIGKILL)
    platform.start()
    assert platform.http.post(prod, json={}).json()["loads"] == 4
    platform.wait_for(lambda: _no_process(orphan), timeout=10)


def _no_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


CUSTOM_SERVER = """
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/health", "/ready"):
            self._send(200, {"ok": self.path})
        else:
            self._send(200, {"get": self.path})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
        self._send(200, {"path": self.path, "got": body})

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_docker_server_truss(platform: Platform, tmp_path: Path) -> None:
    port = free_port()
    truss = tmp_path / "custom"
    truss.mkdir()
    (truss / "server.py").write_text(CUSTOM_SERVER)
    (truss / "config.yaml").write_text(
        "model_name: custom\n"
        "docker_server:\n"
        f"  start_command: python server.py {port}\n"
        f"  server_port: {port}\n"
        "  predict_endpoint: /infer\n"
        "  readiness_endpoint: /ready\n"
        "  liveness_endpoint: /health\n"
    )
    dep = last_json(platform.cli("push", "--output", "json", cwd=truss))
    base = f"/models/custom/deployment/{dep['deployment_id']}"
    assert platform.http.post(f"{base}/predict", json={"a": 1}).json() == {"path": "/infer", "got": {"a": 1}}
    assert platform.http.get(f"{base}/sync/v1/models/model").json() == {"ok": "/ready"}
    assert platform.http.get(f"{base}/sync").json() == {"ok": "/health"}
    assert platform.http.post(f"{base}/sync/v1/chat/completions", json={}).json()["path"] == "/v1/chat/completions"
    assert httpx.get(platform.url + f"{base}/sync").status_code == 401


CRASHER = """
import os


class Model:
    def predict(self, model_input):
        if model_input.get("crash"):
            os._exit(3)
        return {"ok": True}
"""


def test_repeated_crashes_mark_the_deployment_unhealthy(platform: Platform, tmp_path: Path) -> None:
    truss = tmp_path / "crasher"
    (truss / "model").mkdir(parents=True)
    (truss / "model" / "model.py").write_text(CRASHER)
    (truss / "config.yaml").write_text("model_name: crasher\n")
    dep = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))["deployment_id"]
    prod = "/models/crasher/environments/production/predict"
    for _ in range(3):
        assert platform.http.post(prod, json={}).json() == {"ok": True}  # waits for the restarted replica
        assert platform.http.post(prod, json={"crash": True}).status_code == 502  # a clear error, not a hang
    seen: set[str] = set()

    def unhealthy() -> bool:
        seen.add(platform.deployment(dep)["status"])
        return "UNHEALTHY" in seen

    assert platform.wait_for(unhealthy, timeout=10, interval=0.05)
    # the supervisor keeps restarting it (with back-off): it serves again
    assert platform.http.post(prod, json={}).json() == {"ok": True}
