"""The local engine's GPU path on a real GPU box: ``python -m bench.gpus`` (needs torch with CUDA).

Starts ``trestle platform start`` on a fresh data dir (the real inventory: NVML or nvidia-smi, not
``TRESTLE_FAKE_GPUS``), pushes two deployments that each ask for one GPU (``use_gpu: true``) and one
CPU deployment, and asks each replica what torch sees. Checked:

* the two GPU deployments hold different GPUs (``CUDA_VISIBLE_DEVICES`` by UUID), and torch in each
  sees exactly one device, the one it was given (the UUID torch reports is the one the platform
  handed out); on a one-GPU box the second one waits (``WAITING_FOR_RESOURCES``) instead;
* the CPU deployment's torch sees no GPU;
* ``GET /v1/gpus`` names the holders and reports memory used.

The result goes to ``bench/results/gpus-<date>.json`` and to the GPU section of ``BENCHMARKS.md``
(between its ``gpus`` markers; ``bench/run`` rewrites the file, so run this after it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.report import put_marked_section
from bench.scratch_platform import scratch_platform, wait_until

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-gpus"
MODEL = """
import os

import torch


class Model:
    def predict(self, model_input):
        seen = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device_count": 0, "uuids": []}
        if torch.cuda.is_available():
            seen["device_count"] = torch.cuda.device_count()
            for index in range(seen["device_count"]):
                props = torch.cuda.get_device_properties(index)
                seen["uuids"].append("GPU-" + str(props.uuid))
                seen.setdefault("names", []).append(props.name)
        return seen
"""


def truss(root: Path, name: str, gpu: bool) -> Path:
    (root / "model").mkdir(parents=True)
    resources = "resources:\n  use_gpu: true\n" if gpu else ""
    (root / "config.yaml").write_text(f"model_name: {name}\nrequirements:\n  - torch\n{resources}")
    (root / "model" / "model.py").write_text(MODEL)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18991)
    parser.add_argument("--no-write", action="store_true", help="Print the result only.")
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        # the deployments list torch: the platform's own must satisfy it, or uv would fetch CUDA torch (GBs)
        print("bench.gpus needs torch (with CUDA) installed in the platform's environment", file=sys.stderr)
        return 2
    from trestle.platform.engines.gpu_inventory import detect

    if not detect({k: v for k, v in os.environ.items() if k != "TRESTLE_FAKE_GPUS"}).gpus:
        print("bench.gpus needs a GPU machine: NVML and nvidia-smi found no GPU", file=sys.stderr)
        return 2
    with scratch_platform(args.port, KEY, "trestle-bench-gpus-", drop_env=("TRESTLE_FAKE_GPUS",)) as plat:
        work, env, http = plat.work, plat.env, plat.http
        banner = plat.output()
        deployments = {}
        for name, gpu in (("gpu-one", True), ("gpu-two", True), ("cpu-only", False)):
            out = subprocess.run(
                [sys.executable, "-m", "trestle", "push", "--no-wait", "--output", "json"],
                cwd=truss(work / name, name, gpu),
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            deployments[name] = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        views = {name: _settle(http, dep["deployment_id"]) for name, dep in deployments.items()}
        seen = {
            name: http.post(deployments[name]["predict_url"], json={}).json()
            for name, view in views.items()
            if view["status"] == "ACTIVE"
        }
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "banner": [line for line in banner.splitlines() if line.startswith(("GPUs:", "CPU/memory"))],
            "statuses": {n: v["status"] for n, v in views.items()},
            "waiting": {n: v.get("waiting") for n, v in views.items()},
            "seen": seen,
            "gpus": http.get("/v1/gpus").json(),
        }
        result["checks"] = checks(result)
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write(result)
    return 0 if all(ok for ok, _ in result["checks"]) else 1


def checks(result: dict[str, Any]) -> list[tuple[bool, str]]:
    seen, found = result["seen"], []
    gpu_seen = [seen[name] for name in ("gpu-one", "gpu-two") if name in seen]
    devices = [entry["cuda_visible_devices"] for entry in gpu_seen]
    found.append((len(set(devices)) == len(devices), f"GPU deployments hold different GPUs: {devices}"))
    for entry in gpu_seen:
        own = entry["cuda_visible_devices"]
        found.append(
            (entry["device_count"] == 1 and entry["uuids"] == [own], f"torch sees only {own}: {entry['uuids']}")
        )
    if len(result["gpus"]["gpus"]) == 1:
        found.append(
            (
                result["statuses"]["gpu-two"] == "WAITING_FOR_RESOURCES",
                f"one GPU: the second waits ({result['waiting'].get('gpu-two')})",
            )
        )
    cpu = seen.get("cpu-only", {})
    found.append(
        (cpu.get("device_count") == 0 and cpu.get("cuda_visible_devices") == "", "the CPU deployment sees no GPU")
    )
    return found


def write(result: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results" / f"gpus-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "## GPUs on the local engine (issue 10)",
        "",
        f"`python -m bench.gpus` on {result['date']} ([raw]({out.relative_to(ROOT)})): " + "; ".join(result["banner"]),
        "",
        "| check | result |",
        "|---|---|",
    ]
    lines += [f"| {text} | {'ok' if ok else 'FAILED'} |" for ok, text in result["checks"]]
    lines += [""]
    put_marked_section(ROOT / "BENCHMARKS.md", "gpus", lines)


def _settle(http: httpx.Client, dep_id: str) -> dict[str, Any]:
    """The deployment once it is ACTIVE, failed, or waiting for a GPU."""
    final = ("ACTIVE", "BUILD_FAILED", "DEPLOY_FAILED", "WAITING_FOR_RESOURCES")
    return wait_until(lambda: (view := http.get(f"/v1/deployments/{dep_id}").json())["status"] in final and view, 900)


if __name__ == "__main__":
    raise SystemExit(main())
