"""The benchmark harness still works: `bench/run --smoke` runs every cell once and checks every response.

No timing is asserted: the smoke run uses 1-second cells on whatever machine runs the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PERFBENCH = ROOT.parent / "shared" / "perfbench"

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk); CI's .ci/run installs it")
    if not (PERFBENCH / "runner.py").is_file():
        pytest.skip(f"the shared perfbench harness is not at {PERFBENCH}")
    trestle = Path(sys.executable).parent / "trestle"
    if not trestle.exists():
        pytest.skip(f"no trestle console script beside {sys.executable}: install the project (pip install -e .)")

    p = subprocess.run(
        [str(ROOT / "bench" / "run"), "--smoke", "--out", str(tmp_path), "--scratch", str(tmp_path / "scratch")],
        env={**os.environ, "BENCH_PYTHON": sys.executable, "TRESTLE_VENV": str(Path(sys.executable).parent.parent)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert p.returncode == 0, p.stderr[-4000:]

    [results_file] = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert results["mode"] == "smoke"
    records = results["records"]
    assert all(r["valid"] for r in records), [r for r in records if not r["valid"]]
    cells = {(r["target"], r["cell"], r.get("label")) for r in records}
    for target in ("asgi-uvicorn", "trestle-sync", "trestle-async"):
        assert (target, "unary", None) in cells
        assert (target, "json-1mb", None) in cells
        assert (target, "msgpack", None) in cells
    assert ("asgi-uvicorn", "stream", "async gen") in cells
    assert ("trestle-sync", "stream", "sync gen") in cells
    assert ("trestle-async", "stream", "async gen") in cells
    assert ("trestle-platform", "async", "async completed") in cells  # webhooks signed, each id once
    assert ("trestle-platform", "async", "sync predict") in cells
    for target, label in (
        ("trestle-sync", "sync gen"),
        ("trestle-async", "async gen"),
        ("trestle-async", "async predict"),
    ):
        assert (target, "cancel", label) in cells
    for target in ("trestle-synthetic", "trestle-synthetic-batched"):
        assert {r["c"] for r in records if r["target"] == target and r["cell"] == "batch"} == {1, 32}
    memory = {r["target"]: r for r in records if r["cell"] == "memory"}
    assert set(memory) == {"trestle-sync", "trestle-async"}
    for r in memory.values():
        assert sum(r["ok"].values()) == r["n"]  # every mixed request answered as expected
    platform = {r["label"] for r in records if r["cell"] == "platform"}
    pushes = {"push to ACTIVE, cold cache", "push to ACTIVE, warm cache", "watch patch"}
    if any(r.get("available") is False for r in records if r["cell"] == "platform"):
        assert platform == pushes | {"gateway added latency"}  # reported "not available"
    else:
        assert platform == pushes
        gateway = {(r["label"], r["c"]) for r in records if r["cell"] == "gateway"}
        assert gateway == {(label, c) for label in ("direct", "via gateway") for c in (1, 16)}
        stall = {r["label"]: r for r in records if r["cell"] == "push stall"}
        assert set(stall) == {"idle", "during push"}  # the big push went through while latency was measured
        assert stall["during push"]["push_s"] > 0
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## Targets (issue 5)" in report
    assert "Invalid cells in this run: **0**" in report
