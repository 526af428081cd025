"""Serving on the Ray engine through the gateway: cancellation on client disconnect, websockets,
replica output in ``trestle logs``, scale from zero on the first request, scale up under load and
back down (Serve's autoscaler, from ``trestle scale``'s settings). The run's shared Ray head."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import KEY, push_no_wait, running_on_ray, wait_status
from tests.support.ray_head import RayHead
from tests.support.trusses import make_truss

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.timeout(300)]

MODEL = """
import asyncio
import os
from pathlib import Path


class Model:
    def load(self):
        print("model loaded on ray", flush=True)

    async def predict(self, x):
        print(f"predict got {x.get('say', '-')}", flush=True)
        if x.get("sleep"):
            try:
                await asyncio.sleep(x["sleep"])
            except asyncio.CancelledError:
                Path(os.environ["MARKERS"], x.get("mark", "cancelled")).write_text("cancelled")
                raise
        return {"echo": x, "pid": os.getpid()}
"""

WS_MODEL = """
from fastapi import WebSocket


class Model:
    async def websocket(self, ws: WebSocket):
        while True:
            message = await ws.receive()
            text = message.get("text")
            if text is None:
                return
            if text == "bye":
                await ws.close(code=4001, reason="see you")
                return
            await ws.send_text("echo: " + text)
"""

SMALL = 'resources:\n  cpu: "250m"\n  memory: 256Mi\n'
"""Replicas small enough that a 2-CPU head fits several (each test's and Serve's own)."""


def serving_truss(root: Path, name: str, markers: Path) -> Path:
    return make_truss(root, name, MODEL, SMALL + f"environment_variables:\n  MARKERS: {markers}\n")


def test_cancel_websocket_and_logs_through_the_gateway(ray_head: RayHead, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        dep = push_no_wait(platform, serving_truss(tmp_path / "truss", "ray-serving", markers))
        predict = wait_status(platform, dep, "ACTIVE")["predict_url"]
        assert platform.http.post(predict, json={"say": "hello"}).json()["echo"] == {"say": "hello"}

        # a client that gives up: its request is cancelled in the replica on Ray
        with pytest.raises(httpx.ReadTimeout):
            platform.http.post(predict, json={"sleep": 60, "mark": "gone"}, timeout=2)
        platform.wait_for(lambda: (markers / "gone").is_file(), timeout=30)
        # and its slot is free again (max_ongoing_requests = predict_concurrency = 1)
        assert platform.http.post(predict, json={"x": 1}, timeout=20).status_code == 200

        # a websocket through the gateway, the model's close code passed through
        ws_dep = push_no_wait(platform, make_truss(tmp_path / "ws", "ray-ws", WS_MODEL, SMALL))
        wait_status(platform, ws_dep, "ACTIVE")
        url = platform.url.replace("http://", "ws://") + f"/models/ray-ws/deployment/{ws_dep}/sync/v1/websocket"
        with connect(url, additional_headers={"Authorization": f"Api-Key {KEY}"}, open_timeout=30) as ws:
            ws.send("hi")
            assert ws.recv(timeout=20) == "echo: hi"
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=20)
            assert ws.close_code == 4001
            assert ws.close_reason == "see you"

        # what the replica printed reaches `trestle logs`
        platform.wait_for(lambda: "predict got hello" in platform.cli("logs", "--deployment", dep), timeout=60)
        logs = platform.cli("logs", "--deployment", dep)
        assert "model loaded on ray" in logs
        assert "[replica " in logs


def _replicas(head: RayHead, dep: str) -> int:
    return sum(1 for replica in head.replicas(f"trestle-{dep}") if replica.get("state") == "RUNNING")


def test_scale_from_zero_then_up_under_load_and_back_down(ray_head: RayHead, tmp_path: Path) -> None:
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        dep = push_no_wait(platform, serving_truss(tmp_path / "truss", "ray-scaling", tmp_path))
        predict = wait_status(platform, dep, "ACTIVE")["predict_url"]
        platform.cli(
            "scale", dep, "--min-replicas", "0", "--max-replicas", "2", "--concurrency-target", "1",
            "--autoscaling-window", "1", "--scale-down-delay", "2", "--scale-to-zero-delay", "2",
        )  # fmt: skip
        # idle: Serve scales it to zero, and the status says so; the deployment stays routable
        platform.wait_for(lambda: _replicas(ray_head, dep) == 0, timeout=90, interval=0.5)
        platform.wait_for(lambda: platform.deployment(dep)["status"] == "SCALED_TO_ZERO", timeout=10)
        # the first request brings a replica back and is answered
        response = platform.http.post(predict, json={"say": "wake"}, timeout=90)
        assert response.status_code == 200, response.text
        assert _replicas(ray_head, dep) >= 1
        platform.wait_for(lambda: platform.deployment(dep)["status"] == "ACTIVE", timeout=10)

        # four slow requests at once, one in flight per replica: a second replica starts
        codes: list[int] = []

        def call() -> None:
            codes.append(platform.http.post(predict, json={"sleep": 6}, timeout=120).status_code)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        platform.wait_for(lambda: platform.deployment(dep)["ready_replicas"] == 2, timeout=90, interval=0.5)
        for thread in threads:
            thread.join(120)
        assert codes == [200, 200, 200, 200]
        # idle again: back down (to zero, its minimum)
        platform.wait_for(lambda: _replicas(ray_head, dep) == 0, timeout=90, interval=0.5)
        assert platform.http.post(predict, json={}, timeout=90).status_code == 200


SECRET_MODEL = """
import hashlib
import os


class Model:
    def __init__(self, secrets):
        self._secrets = secrets

    def predict(self, x):
        value = self._secrets["hf_token"]
        env = os.environ.get("TRUSS_SECRET_hf_token") or ""
        return {
            "digest": hashlib.sha256(value.encode()).hexdigest(),
            "env_digest": hashlib.sha256(env.encode()).hexdigest(),
            "dir": os.environ["TRESTLE_SECRETS_DIR"],
        }
"""


def test_a_declared_secret_reaches_a_ray_replica_without_the_platforms_dir(ray_head: RayHead, tmp_path: Path) -> None:
    import hashlib

    value = "ray-delivered-secret-2b7e"
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        result = platform.run_cli("secrets", "set", "hf_token", stdin=value)
        assert result.returncode == 0, result
        truss = make_truss(tmp_path / "truss", "ray-secret", SECRET_MODEL, SMALL + "secrets:\n  hf_token: null\n")
        dep = push_no_wait(platform, truss)
        predict = wait_status(platform, dep, "ACTIVE")["predict_url"]
        answer = platform.http.post(predict, json={}, timeout=60).json()
        expected = hashlib.sha256(value.encode()).hexdigest()
        assert answer["digest"] == expected  # secrets[...]
        assert answer["env_digest"] == expected  # TRUSS_SECRET_<name>, as on the local engine
        assert not answer["dir"].startswith(str(platform.data_dir))  # fetched by URL, not the host's dir
        assert value not in platform.logs(dep)


def test_a_docker_server_truss_runs_on_ray(ray_head: RayHead, tmp_path: Path) -> None:
    import sys

    from tests.e2e.conftest import free_port
    from tests.e2e.test_faults_and_builds import CUSTOM_SERVER

    port = free_port()
    truss = tmp_path / "custom"
    truss.mkdir()
    (truss / "server.py").write_text(CUSTOM_SERVER)
    (truss / "config.yaml").write_text(
        "model_name: ray-custom\n" + SMALL + "docker_server:\n"
        f"  start_command: {sys.executable} server.py {port}\n"
        f"  server_port: {port}\n"
        "  predict_endpoint: /infer\n"
        "  readiness_endpoint: /ready\n"
        "  liveness_endpoint: /health\n"
    )
    with running_on_ray(ray_head, tmp_path / "p") as platform:
        dep = push_no_wait(platform, truss)
        wait_status(platform, dep, "ACTIVE")
        assert any(app == f"trestle-{dep}" for app in ray_head.applications())  # on Ray, not a local process
        base = f"/models/ray-custom/deployment/{dep}"
        answer = platform.http.post(f"{base}/predict", json={"a": 1}, timeout=60)
        assert answer.json() == {"path": "/infer", "got": {"a": 1}}
        assert platform.http.get(f"{base}/sync/v1/models/model").json() == {"ok": "/ready"}
        assert platform.http.post(f"{base}/sync/v1/chat/completions", json={}).json()["path"] == "/v1/chat/completions"
