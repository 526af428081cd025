"""``python -m bench`` / ``bench/run``: set up, run the matrix, write results, regenerate BENCHMARKS.md.

bench/run                     full matrix (3 rounds x 10 s cells; ~45 min on 2 cores), writes
                              bench/results/<date>.json + .png and BENCHMARKS.md
bench/run --smoke             seconds: bare ASGI + Trestle only, 1 round, 1 s cells, results in a
                              temp dir; fails if any response check fails, asserts no timing
bench/run --smoke --cells ray the Ray cells once (needs the ray extra; starts its own Ray head)
bench/run --report-only bench/results/<date>.json   regenerate BENCHMARKS.md (and the chart)
bench/run --report-only bench/results/batch-<date>.json --section batch
                              a run of the batch cell alone: only BENCHMARKS.md's batch section
                              (and the batch chart), every other section kept
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import envs, platform, report
from bench._perfbench import ROOT
from bench.batching import batching_targets, heavy_venvs
from bench.profile import profile_missed
from bench.runner import SMOKE, Plan, Session, pin_client, plan_dict
from bench.targets import SMOKE_TARGETS, Target, all_targets, trestle_venv_default


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="seconds-long check that the harness works (no timing)")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all; smoke: bare + trestle)")
    ap.add_argument(
        "--cells", default="", help="comma-separated subset of unary,payload,stream,cancel,memory,platform,batch,ray"
    )
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float, help="seconds per wrk run")
    ap.add_argument("--memory-n", type=int, help="mixed requests in the memory cell (Trestle targets)")
    ap.add_argument("--scratch", type=Path, default=Path(os.environ.get("BENCH_SCRATCH", "/tmp/trestle-bench")))
    ap.add_argument("--trestle-venv", type=Path, default=trestle_venv_default())
    ap.add_argument(
        "--baseline-venv",
        type=Path,
        help="also serve the Trestle targets from this venv (e.g. the code before a change), as trestle-*@before",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="where results/report/chart go (default: bench/results + BENCHMARKS.md; smoke: a temp dir)",
    )
    ap.add_argument("--no-setup", action="store_true", help="do not create or update virtualenvs")
    ap.add_argument("--no-profile", action="store_true", help="do not profile the targets behind missed goals")
    ap.add_argument("--report-only", type=Path, metavar="RESULTS_JSON", help="only regenerate the report")
    ap.add_argument(
        "--section",
        choices=["batch"],
        help="with --report-only: write only this cell's marked section of BENCHMARKS.md, keep the rest",
    )
    ap.add_argument(
        "--profile-only",
        type=Path,
        metavar="RESULTS_JSON",
        help="profile the targets behind missed goals of RESULTS_JSON, then regenerate the report",
    )
    return ap.parse_args(argv)


def select(args: argparse.Namespace, known: dict[str, Target]) -> list[Target]:
    names = [n for n in args.targets.split(",") if n] or (list(SMOKE_TARGETS) if args.smoke else list(known))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; known: {', '.join(known)}")
    chosen = [known[n] for n in names]
    if args.smoke and not args.targets:
        return chosen
    missing = {t.name: t.missing() for t in chosen if t.missing()}
    if missing:
        raise SystemExit(f"targets not set up (run without --no-setup?): {missing}")
    return chosen


def draw_chart(chart_py: Path, json_path: Path, png: Path) -> None:
    """bench/chart.py in the chart venv: ``png`` and, with batch records, the batch chart beside it."""
    p = subprocess.run(
        [str(chart_py), "-m", "bench.chart", str(json_path), str(png)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode:
        envs.log(f"chart failed: {p.stderr[-500:]}")


def write_outputs(results: dict[str, object], json_path: Path, md_path: Path, chart_py: Path | None) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.dump_results(results))
    png = json_path.with_suffix(".png")
    if chart_py is not None:
        draw_chart(chart_py, json_path, png)
    text = report.render(results, json_path, png if png.exists() else None, md_path.parent)
    if md_path.exists():  # sections other scripts write (bench/gpus.py) survive a new run
        text = report.keep_marked_sections(md_path.read_text(), text)
    md_path.write_text(text)
    envs.log(f"wrote {json_path}, {md_path}" + (f", {png}" if png.exists() else ""))


def rerender(args: argparse.Namespace, scratch: Path, chart_py: Path) -> int:
    """--report-only / --profile-only: work from an existing results file."""
    src: Path = args.report_only or args.profile_only
    results = json.loads(src.read_text())
    if args.profile_only:
        pin_client(Plan.client_core)
        trestle_bin = args.trestle_venv / "bin" / "trestle"
        results["profiles"] = profile_missed(results, scratch, trestle_bin, scratch / "profiles")
    out_md = args.out / "BENCHMARKS.md" if args.out else ROOT / "BENCHMARKS.md"
    if args.section == "batch":
        if chart_py.exists():
            draw_chart(chart_py, src, src.with_suffix(".png"))
        report.batch_marked_section(results, src.resolve(), out_md.resolve())
        envs.log(f"wrote the batch section of {out_md}")
        return 0
    write_outputs(results, src, out_md, chart_py if chart_py.exists() else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scratch: Path = args.scratch.resolve()
    chart_py = scratch / "venv-bench" / "bin" / "python"
    if args.report_only or args.profile_only:
        return rerender(args, scratch, chart_py)

    plan = dataclasses.replace(SMOKE) if args.smoke else Plan()
    if args.rounds:
        plan.rounds = args.rounds
    if args.duration:
        plan.duration = args.duration
    if args.memory_n:
        plan.memory_n = args.memory_n
    if args.cells:
        plan.cells = tuple(c for c in args.cells.split(",") if c)
    if (os.cpu_count() or 1) < 2:
        envs.log("WARNING: one CPU: server and load share it; numbers are meaningless (smoke only)")
        plan.server_core = plan.client_core = 0

    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "home").mkdir(exist_ok=True)
    envs.ensure_wrk()
    trestle_venv = (
        args.trestle_venv if args.smoke or args.no_setup else envs.ensure_trestle_venv(args.trestle_venv, scratch)
    )
    stamp = time.strftime("%Y-%m-%d")
    out: Path = (
        args.out
        or (Path(tempfile.mkdtemp(prefix="trestle-bench-smoke-")) if args.smoke else ROOT / "bench" / "results")
    ).resolve()
    work = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))  # logs, probes, records.jsonl
    probes = work / "probes"
    probes.mkdir()
    known = all_targets(scratch, trestle_venv, str(probes), args.baseline_venv) | batching_targets(
        scratch, trestle_venv, str(probes)
    )
    wanted = [n for n in args.targets.split(",") if n] or ([] if args.smoke else list(known))
    if not args.no_setup and not args.smoke:
        if any(known[n].group in ("truss", "peer") for n in wanted):
            envs.ensure_peers(scratch)
        if "batch" in plan.cells:  # the embeddings model in the peers' venvs of the batch cell
            envs.ensure_heavy(heavy_venvs([known[n] for n in wanted if n in known]), trestle_venv)
        for variant in ("sync", "async"):
            if f"truss-{variant}" in wanted:
                envs.build_truss_app(scratch, variant)
        envs.ensure_chart_venv(scratch)
    targets = select(args, known)

    pin_client(plan.client_core)
    envs.log(f"targets: {[t.name for t in targets]}; plan: {plan}; logs: {work}")
    session = Session(plan, targets, work, probes, trestle_venv / "bin" / "trestle")
    t0 = time.monotonic()
    session.run()
    records = session.records
    pythons = {"trestle": trestle_venv / "bin" / "python"}
    if any(t.group != "trestle" and t.group != "bare" for t in targets):
        pythons.update(
            {
                "truss-server": scratch / "venv-truss-server" / "bin" / "python",
                "truss-cli": scratch / "venv-truss" / "bin" / "python",
                "litserve": scratch / "venv-litserve" / "bin" / "python",
                "bentoml": scratch / "venv-bentoml" / "bin" / "python",
            }
        )
    results: dict[str, object] = {
        "schema": 1,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "mode": "smoke" if args.smoke else "full",
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "revision": envs.git_revision(),
        "machine": envs.machine(),
        "versions": envs.versions(pythons),
        "plan": plan_dict(plan),
        "targets": {t.name: {"desc": t.desc, "group": t.group, "kind": t.kind} for t in targets}
        | (
            {"trestle-platform": {"desc": platform.DESC, "group": "trestle", "kind": "async"}}
            if "platform" in plan.cells
            else {}
        ),
        "records": records,
    }
    if not args.smoke and not args.no_profile:
        results["profiles"] = profile_missed(results, scratch, trestle_venv / "bin" / "trestle", work / "profiles")
    json_path = out / f"{stamp}.json"
    md_path = out / "BENCHMARKS.md" if (args.smoke or args.out) else ROOT / "BENCHMARKS.md"
    write_outputs(results, json_path, md_path, chart_py if chart_py.exists() else None)
    bad = [r for r in records if not r.get("valid")]
    for r in bad:
        envs.log(f"INVALID: {r.get('target')} {r.get('cell')} {r.get('label') or r.get('c') or ''}: {r.get('why')}")
    print(json.dumps({"results": str(json_path), "report": str(md_path), "invalid": len(bad)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
