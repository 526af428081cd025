"""GPUs and limits on the local engine, on a CPU machine: the platform reads a fake inventory
(``TRESTLE_FAKE_GPUS``) and hands its GPUs to replicas exactly as it would on a real box."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, last_json, wait_status
from tests.support.trusses import make_truss
from trestle.platform.store import packaging

FAKE_GPUS = [
    {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "uuid": "GPU-aaaa"},
    {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "uuid": "GPU-bbbb",
        "memory_used_mib": 512,
        "utilization_percent": 40,
    },
]

DEVICES_MODEL = """
import os


class Model:
    def predict(self, model_input):
        return {name: os.environ.get(name) for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")}
"""

GREEDY_MODEL = """
class Model:
    def load(self):
        self.block = bytearray(3 << 30)  # more than resources.memory allows

    def predict(self, model_input):
        return len(self.block)
"""


@pytest.fixture(scope="module")
def gpu_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("gpu-platform")
    (root / "home").mkdir()
    plat = Platform(root / "data", root / "home", env={"TRESTLE_FAKE_GPUS": json.dumps(FAKE_GPUS)})
    plat.start()
    yield plat
    plat.stop()
    plat.http.close()


def gpu_truss(root: Path, name: str, resources: str) -> Path:
    return make_truss(root, name, DEVICES_MODEL, f"resources:\n{resources}")


def devices(platform: Platform, predict_url: str) -> dict[str, str]:
    body: dict[str, str] = platform.http.post(predict_url, json={}).json()
    return body


def test_gpus_are_exclusive_a_third_waits_and_starts_when_one_is_freed(gpu_platform: Platform, tmp_path: Path) -> None:
    platform = gpu_platform
    banner = platform.log_path.read_text()
    assert "GPUs: 2 x H100 (NVIDIA H100 80GB HBM3) (fake inventory from TRESTLE_FAKE_GPUS)" in banner
    assert "CPU/memory limits: " in banner
    first = last_json(
        platform.cli("push", "--output", "json", cwd=gpu_truss(tmp_path / "a", "gpu-a", "  accelerator: H100\n"))
    )
    second = last_json(
        platform.cli("push", "--output", "json", cwd=gpu_truss(tmp_path / "b", "gpu-b", "  use_gpu: true\n"))
    )
    seen = [devices(platform, first["predict_url"]), devices(platform, second["predict_url"])]
    assert {env["CUDA_VISIBLE_DEVICES"] for env in seen} == {"GPU-aaaa", "GPU-bbbb"}
    assert all(env["NVIDIA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"] for env in seen)

    cpu = last_json(
        platform.cli("push", "--output", "json", cwd=make_truss(tmp_path / "cpu", "cpu-only", DEVICES_MODEL))
    )
    assert devices(platform, cpu["predict_url"])["CUDA_VISIBLE_DEVICES"] == ""

    third = last_json(
        platform.cli(
            "push", "--no-wait", "--output", "json", cwd=gpu_truss(tmp_path / "c", "gpu-c", "  accelerator: H100\n")
        )
    )
    waiting = platform.wait_for(
        lambda: (dep := platform.deployment(third["deployment_id"]))["status"] == "WAITING_FOR_RESOURCES" and dep
    )
    assert waiting["waiting"] == "waiting for 1 x H100: 0 free"
    listing = platform.cli("deployments", "gpu-c")
    assert "WAITING_FOR_RESOURCES" in listing and "waiting for 1 x H100: 0 free" in listing

    table = platform.cli("gpus")
    assert "gpu-a" in table and "gpu-b" in table and "512 / 81559 MiB" in table and "40%" in table
    gpus = platform.http.get("/v1/gpus").json()["gpus"]
    assert {row["model_name"] for row in gpus} == {"gpu-a", "gpu-b"}
    metrics = platform.http.get("/v1/metrics").text
    assert 'trestle_gpu_utilization_ratio{index="1",uuid="GPU-bbbb"' in metrics
    assert metrics.count("trestle_gpu_allocated{") == 2

    freed = devices(platform, first["predict_url"])["CUDA_VISIBLE_DEVICES"]
    platform.cli("deactivate", first["deployment_id"])
    platform.wait_for(lambda: platform.deployment(third["deployment_id"])["status"] == "ACTIVE", timeout=60)
    assert devices(platform, third["predict_url"])["CUDA_VISIBLE_DEVICES"] == freed
    assert platform.deployment(third["deployment_id"])["waiting"] is None

    # scaling up stops at what fits: the extra replica waits, the deployment keeps serving
    platform.cli("scale", third["deployment_id"], "--replicas", "2", "--no-wait")
    scaled = platform.wait_for(lambda: (dep := platform.deployment(third["deployment_id"]))["waiting"] and dep)
    assert scaled["status"] == "ACTIVE" and scaled["ready_replicas"] == 1
    assert scaled["waiting"] == "waiting for 1 x H100: 0 free"
    platform.cli("scale", third["deployment_id"], "--replicas", "1", "--no-wait")
    platform.wait_for(lambda: len(platform.deployment(third["deployment_id"])["replica_states"]) == 1)
    assert platform.deployment(third["deployment_id"])["waiting"] is None


def test_a_gpu_type_the_box_lacks_is_refused_at_push(gpu_platform: Platform, tmp_path: Path) -> None:
    result = gpu_platform.run_cli("push", cwd=gpu_truss(tmp_path / "l4", "gpu-l4", "  accelerator: L4\n"))
    assert result.returncode == 1
    assert "resources ask for 1 x L4 but this platform has no L4 GPU; its GPUs: 2 x H100" in result.stderr


def test_a_replica_over_its_memory_limit_is_reported_as_oom(gpu_platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "greedy", "greedy", GREEDY_MODEL, "resources:\n  memory: 1Gi\n")
    dep = last_json(gpu_platform.cli("push", "--no-wait", "--output", "json", cwd=truss))
    failed = gpu_platform.wait_for(
        lambda: (body := gpu_platform.deployment(dep["deployment_id"]))["status"] == "DEPLOY_FAILED" and body,
        timeout=90,
    )
    assert failed["error"].startswith("OOM: exceeded memory 1Gi")
    assert "OOM: exceeded memory 1Gi" in gpu_platform.logs(dep["deployment_id"])


def test_a_restart_patch_of_a_gpu_development_deployment_keeps_its_gpu_and_a_restart_brings_gpus_back(
    gpu_platform: Platform, tmp_path: Path
) -> None:
    platform = gpu_platform
    for dep in platform.http.get("/v1/deployments").json()["deployments"]:
        if dep["status"] not in ("INACTIVE", "DEPLOY_FAILED"):
            platform.cli("deactivate", dep["id"])  # the earlier tests' deployments free their GPUs
    truss = gpu_truss(tmp_path / "dev", "gpu-dev", "  accelerator: H100\n")
    data = packaging.pack(truss)
    digest = packaging.digest(data)
    platform.http.put(f"/v1/artifacts/{digest}", content=data)
    dev = platform.http.post("/v1/deployments", json={"artifact": digest, "development": True}).json()
    platform.wait_for(lambda: platform.deployment(dev["id"])["status"] == "ACTIVE", timeout=60)
    url = "/models/gpu-dev/development/predict"
    before = platform.http.post(url, json={}).json()["CUDA_VISIBLE_DEVICES"]

    # a config change restarts the replica: the old one lets go of its GPU before the new one takes it
    manifest = platform.http.get(f"/v1/deployments/{dev['id']}/manifest").json()
    config = (truss / "config.yaml").read_text() + "environment_variables:\n  PATCHED: 'yes'\n"
    patched = platform.http.post(
        f"/v1/deployments/{dev['id']}/patch",
        json={"prev_hash": manifest["hash"], "files": {"config.yaml": base64.b64encode(config.encode()).decode()}},
        timeout=120,
    )
    assert patched.status_code == 200, patched.text
    assert platform.http.post(url, json={}).json()["CUDA_VISIBLE_DEVICES"] in ("GPU-aaaa", "GPU-bbbb")

    second = last_json(
        platform.cli("push", "--output", "json", cwd=gpu_truss(tmp_path / "pub", "gpu-pub", "  use_gpu: true\n"))
    )
    held = {row["deployment_id"] for row in platform.http.get("/v1/gpus").json()["gpus"]}
    assert held == {dev["id"], second["deployment_id"]}

    # a platform restart brings both back, each on a GPU of its own again
    platform.stop()
    platform.start()
    for dep_id in (dev["id"], second["deployment_id"]):
        wait_status(platform, dep_id, "ACTIVE", timeout=90)
    devices_now = {
        devices(platform, url)["CUDA_VISIBLE_DEVICES"],
        devices(platform, second["predict_url"])["CUDA_VISIBLE_DEVICES"],
    }
    assert devices_now == {"GPU-aaaa", "GPU-bbbb"}
    assert before in devices_now
