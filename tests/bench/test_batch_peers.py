"""The batch cell's peers (bench/peers: BentoML and LitServe) start and answer one correct request.

Each peer runs from the venv ``bench/run`` builds in its scratch dir (``$BENCH_SCRATCH``, default
/tmp/trestle-bench); where that venv (or, for the embeddings model, its heavy tier) is missing the
test is skipped with the reason. The Ray Serve peers are in test_ray_smoke.py (the ray tier). An
embeddings answer must be one 384-float vector with the same meaning as the model's own vector for
that text, computed in Trestle's venv. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench._perfbench import runner

from bench import batching, load
from tests.bench.test_smoke import PERFBENCH, ROOT

pytestmark = pytest.mark.integration

SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/trestle-bench"))
VENV = Path(sys.executable).parent.parent

_REFERENCE = """
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, sys.argv[1])
from batch_models import embed_bodies, load_embedder
print(json.dumps(embed_bodies(load_embedder(), [json.loads(sys.argv[2])])[0]["data"][0]["embedding"]))
"""


def reference_vector() -> list[float]:
    """The embedding of bench/batching.py's text, by the model itself in Trestle's venv."""
    p = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(ROOT / "bench" / "peers"), json.dumps(batching.EMBED_REQUEST)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    vector: list[float] = json.loads(p.stdout)
    return vector


def check_peer(name: str, tmp_path: Path) -> None:
    """Start the peer target ``name`` as the benchmark does, POST its batch body, check the answer."""
    if not (PERFBENCH / "runner.py").is_file():
        pytest.skip(f"the shared perfbench harness is not at {PERFBENCH}")
    targets = batching.batching_targets(SCRATCH, VENV, str(tmp_path))
    if name not in targets:
        needs = "the ray extra" if name.startswith("ray-") else "the heavy tier (scripts/install --heavy)"
        pytest.skip(f"{name} needs {needs} in {VENV}")
    t = targets[name]
    if t.missing():
        pytest.skip(f"{name}: {t.missing()} missing (bench/run --targets {name} --cells batch sets it up)")
    assert t.batch is not None
    label, path = t.batch
    if label == batching.EMBEDDINGS and not batching.heavy_tier(Path(t.cmd[0]).parent.parent):
        pytest.skip(f"{name}: no torch/sentence-transformers in its venv (bench/run --cells batch installs them)")

    server = runner().Server(name, t.spec(), "", str(tmp_path), 0)
    try:
        server.start()
        server.wait_ready(t.ready_timeout)
        if label == batching.SYNTHETIC:
            body, check = (
                (batching.LIST_UNARY_BODY, batching.list_echo) if t.batch_list else (load.UNARY_BODY, load.unary_echo)
            )
            load.expected_body(t.port, path, body, load.JSON, check)  # two answers, both the echo, same bytes
        else:
            vector = batching.embedding(t.port, path, t.batch_list)
            assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-3)
            status, out = load.post(t.port, path, batching.LIST_EMBED_BODY if t.batch_list else batching.EMBED_BODY)
            assert status == 200
            assert batching.same_meaning(out, vector, t.batch_list)
            assert batching.same_meaning(out, reference_vector(), t.batch_list)
    finally:
        server.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "name", ["bentoml-synthetic-batched", "litserve-embeddings-batched", "bentoml-embeddings-batched"]
)
def test_batch_peer_answers(name: str, tmp_path: Path) -> None:
    check_peer(name, tmp_path)
