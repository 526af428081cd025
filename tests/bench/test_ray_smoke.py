"""The Ray cells of the benchmark still work: `bench/run --smoke --cells ray` on the run's shared Ray
head measures each route once and checks every response. No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_batch_peers import check_peer
from tests.bench.test_smoke import PERFBENCH, ROOT
from tests.support.ray_head import RayHead

pytestmark = [pytest.mark.integration, pytest.mark.ray]


@pytest.mark.timeout(600)
def test_ray_bench_smoke(ray_head: RayHead, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk); CI's .ci/run installs it")
    if not (PERFBENCH / "runner.py").is_file():
        pytest.skip(f"the shared perfbench harness is not at {PERFBENCH}")
    head_file = tmp_path / "head" / "ray.json"  # not beside the results file
    head_file.parent.mkdir()
    head_file.write_text(ray_head.to_json())
    p = subprocess.run(
        [
            str(ROOT / "bench" / "run"),
            "--smoke",
            "--cells",
            "ray",
            "--targets",
            "asgi-uvicorn",
            "--out",
            str(tmp_path),
            "--scratch",
            str(tmp_path / "scratch"),
        ],  # fmt: skip
        env={
            **os.environ,
            "BENCH_PYTHON": sys.executable,
            "TRESTLE_VENV": str(Path(sys.executable).parent.parent),
            "BENCH_RAY_HEAD": str(head_file),
        },
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    [results_file] = tmp_path.glob("*.json")
    records = json.loads(results_file.read_text())["records"]
    ray = [r for r in records if r["cell"] == "ray"]
    assert all(r["valid"] for r in ray), ray
    measured = {(r["label"], r.get("c")) for r in ray}
    for label in (
        "gateway → local replica",
        "gateway → Ray replica",
        "proxy → Trestle on Ray",
        "proxy → plain Serve echo",
    ):
        assert (label, 1) in measured
        assert (label, 16) in measured
    assert ("cold start from zero", None) in measured
    assert "## Ray" in (tmp_path / "BENCHMARKS.md").read_text()
    # the round took its applications off the shared head (Serve deletes them in the background)
    assert (ray_head.applications().get("plain-echo") or {}).get("status") in (None, "DELETING")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["ray-synthetic-batched", "ray-embeddings-batched"])
def test_ray_batch_peer_answers(name: str, tmp_path: Path) -> None:
    """bench/peers/ray_batched.py (a Ray of its own, not the run's shared head: it calls ``serve.run``,
    which a head whose applications come from the REST config refuses) starts and answers correctly."""
    check_peer(name, tmp_path)
