"""Profiles for missed targets: perfbench's profile_target.py (py-spy under wrk load), called in place.

perfbench profiles its own copies of the Truss echo models (`peers/trestle/<variant>`, served with
``$TRESTLE_BIN serve``); its output is a markdown table of samples by package.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench import report
from bench._perfbench import perfbench_dir
from bench.envs import PYTHON, log, run


def ensure_py_spy(scratch: Path) -> Path:
    spy = scratch / "venv-tools" / "bin" / "py-spy"
    if not spy.exists():
        run([PYTHON, "-m", "venv", str(scratch / "venv-tools")])
        run([str(scratch / "venv-tools" / "bin" / "pip"), "install", "-q", "py-spy"])
    return spy


def profile_missed(results: dict[str, object], scratch: Path, trestle_bin: Path, out: Path) -> dict[str, str]:
    """Profile each (target, unary|stream) behind a missed goal; key -> markdown."""
    wanted = {g.profile for g in report.goals(report.Results(results)) if g.status == "missed" and g.profile}
    if not wanted:
        return {}
    ensure_py_spy(scratch)
    profiles: dict[str, str] = {}
    for target, stream in sorted(wanted):
        key = f"{target} {'stream' if stream else 'unary'}"
        cmd = [
            "python3",
            str(perfbench_dir() / "profile_target.py"),
            "--scratch",
            str(scratch),
            "--target",
            target,
            "--conc",
            "16",
            "--duration",
            "10",
            "--out",
            str(out),
        ] + (["--stream"] if stream else [])
        log("$ " + " ".join(cmd))
        p = subprocess.run(
            cmd, env={**os.environ, "TRESTLE_BIN": str(trestle_bin)}, capture_output=True, text=True, timeout=300
        )
        text = p.stdout.strip()
        if p.returncode or "| package |" not in text:
            text = f"profile failed (rc={p.returncode}): {p.stderr[-300:]}"
        profiles[key] = "\n".join(line.removeprefix("# ") for line in text.splitlines())
    return profiles
