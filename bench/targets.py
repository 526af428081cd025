"""What the benchmark starts: one `Target` per server, and the endpoints each cell loads.

Every server binds 127.0.0.1 and runs under ``taskset -c <server core>``. Paths of the peers'
virtualenvs and Truss apps are inside the scratch dir built by `bench.envs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench._perfbench import ROOT, perfbench_dir

MODELS = ROOT / "bench" / "models"
APPS = ROOT / "bench" / "apps"
PEERS = ROOT / "bench" / "peers"
TRUSS_PREDICT = "/v1/models/model:predict"

# stream labels (rows of the streaming table)
ASYNC_GEN = "async gen"
SYNC_GEN = "sync gen"
THREAD_HOP = "sync gen, thread hop per chunk"


@dataclass
class Target:
    name: str
    desc: str
    group: str  # "bare" | "truss" | "trestle" | "peer"
    kind: str  # "sync" | "async": the Truss target its "x Truss" ratios use
    cmd: list[str]
    port: int
    ready: str
    cwd: str = str(ROOT)
    env: dict[str, str] = field(default_factory=dict)
    unary: str | None = None  # JSON echo path
    msgpack: str | None = None  # msgpack echo path (Content-Type: application/octet-stream)
    large_json: str | None = None  # path that echoes a 1 MB JSON body
    streams: dict[str, str] = field(default_factory=dict)  # label -> path taking {"op": "stream", "n": N}
    cancel: tuple[str, ...] = ()  # cancellation probes: "async gen", "sync gen", "async predict"
    memory: bool = False
    batch: tuple[str, str] | None = None  # the batch cell: (label, path) (bench/batching.py)
    batch_list: bool = False  # the batch cell's request is a list of one input (BentoML's batchable APIs)
    ready_timeout: float = 120  # seconds from start to readiness (a Ray of its own, or a model, takes longer)
    needs: tuple[Path, ...] = ()  # files that must exist (peer virtualenvs, built apps)

    def spec(self) -> dict[str, object]:
        """The dict perfbench's ``runner.Server`` takes."""
        return {"cmd": self.cmd, "cwd": self.cwd, "env": self.env, "port": self.port, "ready": self.ready}

    def missing(self) -> list[str]:
        return [str(p) for p in self.needs if not p.exists()]


def trestle_target(name: str, variant: str, port: int, venv: Path, probes: str) -> Target:
    gen = SYNC_GEN if variant == "sync" else ASYNC_GEN
    cancel = (SYNC_GEN,) if variant == "sync" else (ASYNC_GEN, "async predict")
    return Target(
        name=name,
        desc=f"`trestle serve bench/models/{variant}` ({variant} predict), default config",
        group="trestle",
        kind=variant,
        cmd=[str(venv / "bin" / "trestle"), "serve", str(MODELS / variant), "--host", "127.0.0.1", "--port", str(port)],
        port=port,
        ready="/v1/models/model",
        env={"TRESTLE_BENCH_PROBES": probes},
        unary=TRUSS_PREDICT,
        msgpack=TRUSS_PREDICT,
        large_json=TRUSS_PREDICT,
        streams={gen: TRUSS_PREDICT},
        cancel=cancel,
        memory=True,
        needs=(venv / "bin" / "trestle",),
    )


BEFORE = "@before"
"""Suffix of the Trestle targets served from ``--baseline-venv`` (the code before a change)."""


def all_targets(scratch: Path, trestle_venv: Path, probes: str, baseline_venv: Path | None = None) -> dict[str, Target]:
    """Every known target, in report order; with ``baseline_venv``, each Trestle target also served
    from that venv (``trestle-sync@before``, ...), so a change is measured against its base in one run."""
    S = scratch
    pb = perfbench_dir()
    home = {"HOME": str(S / "home")}
    py = str(trestle_venv / "bin" / "python")
    t: dict[str, Target] = {}
    t["asgi-uvicorn"] = Target(
        name="asgi-uvicorn",
        desc="bare ASGI app (bench/apps/bare.py) on uvicorn + httptools + uvloop, Trestle's virtualenv, no access log",
        group="bare",
        kind="async",
        cmd=[
            py,
            "-m",
            "uvicorn",
            "--app-dir",
            str(APPS),
            "bare:app",
            "--host",
            "127.0.0.1",
            "--port",
            "18701",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        port=18701,
        ready="/health",
        unary="/predict",
        msgpack="/predict_msgpack",
        large_json="/predict",
        streams={ASYNC_GEN: "/stream", THREAD_HOP: "/stream_thread"},
        needs=(Path(py),),
    )
    for variant, port in (("sync", 18711), ("async", 18712)):
        app = S / "truss" / f"bench-app-{variant}"
        t[f"truss-{variant}"] = Target(
            name=f"truss-{variant}",
            desc=f"Truss's own server (truss_server.py from `truss image build-context`, no Docker) serving "
            f"bench/models/{variant}, default config",
            group="truss",
            kind=variant,
            cmd=[str(S / "venv-truss-server" / "bin" / "python"), "main.py"],
            cwd=str(app),
            env={**home, "INFERENCE_SERVER_PORT": str(port), "TRESTLE_BENCH_PROBES": probes},
            port=port,
            ready="/v1/models/model",
            unary=TRUSS_PREDICT,
            msgpack=TRUSS_PREDICT,
            large_json=TRUSS_PREDICT,
            streams={SYNC_GEN if variant == "sync" else ASYNC_GEN: TRUSS_PREDICT},
            cancel=(SYNC_GEN,) if variant == "sync" else (ASYNC_GEN, "async predict"),
            memory=True,
            needs=(S / "venv-truss-server" / "bin" / "python", app / "main.py"),
        )
    t["litserve"] = Target(
        name="litserve",
        desc="LitServe (perfbench/peers/litserve/server.py, sync LitAPI), defaults",
        group="peer",
        kind="sync",
        cmd=[str(S / "venv-litserve" / "bin" / "python"), "server.py"],
        cwd=str(pb / "peers" / "litserve"),
        env={**home, "LS_MODE": "json", "LS_PORT": "18721"},
        port=18721,
        ready="/health",
        unary="/predict",
        large_json="/predict",
        needs=(S / "venv-litserve" / "bin" / "python",),
    )
    t["litserve-stream"] = Target(
        name="litserve-stream",
        desc="LitServe streaming LitAPI (bench/peers/litserve_stream.py, sync generator), defaults",
        group="peer",
        kind="sync",
        cmd=[str(S / "venv-litserve" / "bin" / "python"), str(PEERS / "litserve_stream.py")],
        env={**home, "LS_PORT": "18722"},
        port=18722,
        ready="/health",
        streams={SYNC_GEN: "/stream"},
        needs=(S / "venv-litserve" / "bin" / "python",),
    )
    bento_env = {**home, "BENTOML_HOME": str(S / "bentoml_home"), "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1"}
    bentoml = str(S / "venv-bentoml" / "bin" / "bentoml")
    t["bentoml"] = Target(
        name="bentoml",
        desc="BentoML (perfbench/peers/bentoml/service.py, async API, workers=1), `bentoml serve`",
        group="peer",
        kind="async",
        cmd=[bentoml, "serve", "service:Echo", "--host", "127.0.0.1", "--port", "18731"],
        cwd=str(pb / "peers" / "bentoml"),
        env=bento_env,
        port=18731,
        ready="/readyz",
        unary="/predict",
        needs=(Path(bentoml),),
    )
    t["bentoml-stream"] = Target(
        name="bentoml-stream",
        desc="BentoML streaming API (bench/peers/bentoml_stream.py, async generator), `bentoml serve`",
        group="peer",
        kind="async",
        cmd=[bentoml, "serve", "bentoml_stream:Stream", "--host", "127.0.0.1", "--port", "18732"],
        cwd=str(PEERS),
        env=bento_env,
        port=18732,
        ready="/readyz",
        streams={ASYNC_GEN: "/stream"},
        needs=(Path(bentoml),),
    )
    t["trestle-sync"] = trestle_target("trestle-sync", "sync", 18751, trestle_venv, probes)
    t["trestle-async"] = trestle_target("trestle-async", "async", 18752, trestle_venv, probes)
    if baseline_venv is not None:
        for name, variant, port in (("trestle-sync", "sync", 18761), ("trestle-async", "async", 18762)):
            before = trestle_target(name + BEFORE, variant, port, baseline_venv, probes)
            t[before.name] = replace(before, desc=before.desc + f", served from `{baseline_venv}`")
    return t


SMOKE_TARGETS = ("asgi-uvicorn", "trestle-sync", "trestle-async", "trestle-synthetic", "trestle-synthetic-batched")


def trestle_venv_default() -> Path:
    return Path(os.environ.get("TRESTLE_VENV") or ROOT / ".venv")
