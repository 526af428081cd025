"""Replicas: ``push --replicas 2`` shares load by fewest outstanding requests, a killed replica leaves the
other serving, ``trestle scale`` changes the count; the autoscaler scales up under load, down and to
zero when idle, and the next request wakes the deployment."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Platform, last_json

PID_MODEL = """
import os
import time


class Model:
    def predict(self, model_input):
        time.sleep(model_input.get("sleep", 0))
        return {"pid": os.getpid()}
"""


def write_pid_truss(root: Path, name: str) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(f"model_name: {name}\n")
    (root / "model" / "model.py").write_text(PID_MODEL)
    return root


def replica_pids(platform: Platform, dep_id: str) -> set[int]:
    return {int(path.read_text()) for path in (platform.data_dir / "run").glob(f"{dep_id}-*.pid")}


def test_two_replicas_share_load_and_survive_a_kill(platform: Platform, tmp_path: Path) -> None:
    truss = write_pid_truss(tmp_path / "duo", "duo")
    dep = last_json(platform.cli("push", "--replicas", "2", "--output", "json", cwd=truss))
    dep_id = dep["deployment_id"]
    url = dep["predict_url"]
    assert dep["replicas"] == 2
    platform.wait_for(lambda: platform.deployment(dep_id)["ready_replicas"] == 2, timeout=60)
    pids = replica_pids(platform, dep_id)
    assert len(pids) == 2

    # one slow request occupies a replica: every quick request meanwhile goes to the other one
    slow: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: slow.append(platform.http.post(url, json={"sleep": 2}).json()))
    thread.start()
    platform.wait_for(
        lambda: any(r["in_flight"] == 1 for r in platform.deployment(dep_id)["replica_states"]), timeout=10
    )
    quick = {platform.http.post(url, json={}).json()["pid"] for _ in range(6)}
    thread.join(15)
    assert len(quick) == 1
    assert slow[0]["pid"] not in quick
    assert quick | {slow[0]["pid"]} == pids

    # kill one replica: once the platform sees it gone (a request sent to it in that instant gets a 502,
    # like one in flight), the other serves every request, and the killed one comes back
    killed = slow[0]["pid"]
    os.kill(killed, signal.SIGKILL)
    platform.wait_for(lambda: platform.deployment(dep_id)["ready_replicas"] == 1, timeout=10, interval=0.02)
    served = [platform.http.post(url, json={}) for _ in range(8)]
    assert [r.status_code for r in served] == [200] * 8
    assert killed not in {r.json()["pid"] for r in served}
    platform.wait_for(lambda: platform.deployment(dep_id)["ready_replicas"] == 2, timeout=60)
    assert platform.deployment(dep_id)["status"] == "ACTIVE"
    assert killed not in replica_pids(platform, dep_id)
    assert "exited with code -9" in platform.logs(dep_id)

    # scale down by hand: one replica left, and the listing says so
    out = platform.cli("scale", dep_id, "--replicas", "1")
    assert "1/1 replicas ready" in out
    platform.wait_for(lambda: len(replica_pids(platform, dep_id)) == 1, timeout=30)
    assert platform.http.post(url, json={}).status_code == 200
    listing = platform.cli("deployments", "duo")
    assert "1/1" in listing


def test_autoscaler_scales_up_then_to_zero_and_wakes(platform: Platform, tmp_path: Path) -> None:
    truss = write_pid_truss(tmp_path / "auto", "auto")
    dep = last_json(platform.cli("push", "--output", "json", cwd=truss))
    dep_id = dep["deployment_id"]
    url = dep["predict_url"]
    platform.cli(
        "scale",
        dep_id,
        "--min-replicas",
        "0",
        "--max-replicas",
        "2",
        "--concurrency-target",
        "1",
        "--autoscaling-window",
        "1",
        "--scale-down-delay",
        "2",
        "--scale-to-zero-delay",
        "3",
    )
    # three requests in flight for a few seconds (one at a time on the replica): a second replica starts
    threads = [threading.Thread(target=lambda: platform.http.post(url, json={"sleep": 2})) for _ in range(3)]
    for thread in threads:
        thread.start()
    platform.wait_for(lambda: platform.deployment(dep_id)["replicas"] == 2, timeout=10)
    platform.wait_for(lambda: platform.deployment(dep_id)["ready_replicas"] == 2, timeout=30)
    for thread in threads:
        thread.join(30)
    # idle: back to one after the scale-down delay, then to zero
    platform.wait_for(lambda: platform.deployment(dep_id)["status"] == "SCALED_TO_ZERO", timeout=30)
    assert platform.deployment(dep_id)["replicas"] == 0
    assert not replica_pids(platform, dep_id)
    logs = platform.logs(dep_id)
    assert "autoscaler: 1 → 2 replicas" in logs
    assert "autoscaler: 2 → 1 replicas" in logs
    assert "autoscaler: scaling to zero" in logs
    # the next request wakes it: SCALED_TO_ZERO → WAKING_UP → ACTIVE, and it is answered
    response = platform.http.post(url, json={})
    assert response.status_code == 200
    assert platform.deployment(dep_id)["status"] == "ACTIVE"
    assert "status: WAKING_UP" in platform.logs(dep_id)
