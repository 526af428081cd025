"""Chart of one results file: unary throughput, unary latency and stream throughput per framework;
and, where the run has the batch cell, a second chart beside it (``<stem>-batch.png``): req/s and
p50 against concurrency per batch target, one row per model.

Runs in the bench virtualenv (matplotlib is not a project dependency):
    <scratch>/venv-bench/bin/python -m bench.chart bench/results/<date>.json bench/results/<date>.png
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import BATCH_PAIRS, Results, batch_chart_path, stream_key_rows

COLORS = {"bare": "#7f7f7f", "truss": "#d62728", "peer": "#ff7f0e", "trestle": "#1f77b4"}


def bars(
    ax: plt.Axes, res: Results, labels: list[str], groups: list[str], series: list[list[float]], title: str, unit: str
) -> None:
    meds = [statistics.median(v) if v else 0.0 for v in series]
    lo = [m - min(v) if v else 0.0 for m, v in zip(meds, series, strict=True)]
    hi = [max(v) - m if v else 0.0 for m, v in zip(meds, series, strict=True)]
    ax.barh(labels, meds, xerr=[lo, hi], color=[COLORS.get(g, "#999999") for g in groups], capsize=3)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit)
    for y, m in enumerate(meds):
        if m:
            ax.text(m, y, f" {m:,.0f}" if m >= 10 else f" {m:.2f}", va="center", fontsize=8)


def batch_chart(res: Results, dst: Path) -> None:
    """One row per model of the batch cell: req/s and p50 (log scale) against concurrency."""
    concs = sorted(c for c in res.keys("batch") if isinstance(c, int))
    models = []
    for label, plain, batched, _ in BATCH_PAIRS:
        names = [t for t in (plain, batched) if res.order("batch").count(t)]
        names += [t for t in res.order("batch") if t not in names and f"-{label}" in t]
        if names:
            models.append((label, names))
    if not concs or not models:
        return
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for row, (label, names) in zip(axes, models, strict=True):
        for t in names:
            group = res.targets.get(t, {}).get("group", "")
            style = {"linewidth": 2.4} if group == "trestle" else {"linewidth": 1.4, "linestyle": "--"}
            for ax, field, scale in ((row[0], "rps", 1.0), (row[1], "p50_us", 1e-3)):
                xs = [c for c in concs if res.values(t, "batch", c, field)]
                ys = [statistics.median(res.values(t, "batch", c, field)) * scale for c in xs]
                ax.plot(xs, ys, marker="o", label=t, **style)
        for ax, what in ((row[0], "requests/s (higher is better)"), (row[1], "p50 ms (lower is better)")):
            ax.set_title(f"{label}: {what}", fontsize=10)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(concs, [str(c) for c in concs])
            ax.set_xlabel("concurrency")
            ax.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize=8)
    fig.suptitle(
        f"Dynamic batching — {res.data.get('date', '')[:10]}, server on one core, batches of at most 32, "
        "median over rounds",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def main(src: str, dst: str) -> None:
    res = Results(json.loads(Path(src).read_text()))
    batch_chart(res, batch_chart_path(Path(dst)))
    concs = sorted(c for c in res.keys("unary") if isinstance(c, int))
    c_hi = 16 if 16 in concs else (concs[-1] if concs else 16)
    panels = []
    unary = res.order("unary")
    if unary:
        panels.append(
            (
                unary,
                [res.targets[t]["group"] for t in unary],
                [res.values(t, "unary", c_hi, "rps") for t in unary],
                f"Unary JSON predict, c={c_hi}: requests/s (higher is better)",
                "req/s",
            )
        )
        panels.append(
            (
                unary,
                [res.targets[t]["group"] for t in unary],
                [[v / 1000 for v in res.values(t, "unary", 1, "raw_p50_us")] for t in unary],
                "Unary JSON predict, c=1: p50 latency (lower is better)",
                "ms",
            )
        )
    srows = stream_key_rows(res)
    if srows:
        panels.append(
            (
                [f"{t} / {lab}" for t, lab in srows],
                [res.targets[t]["group"] for t, _ in srows],
                [res.values(t, "stream", lab, "chunks_per_s") for t, lab in srows],
                "One stream of small chunks: chunks/s (higher is better)",
                "chunks/s",
            )
        )
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 + sum(0.32 * len(p[0]) for p in panels)), squeeze=False)
    for ax, (labels, groups, series, title, unit) in zip(axes[:, 0], panels, strict=True):
        bars(ax, res, labels, groups, series, title, unit)
    fig.suptitle(
        f"Trestle vs peers — {res.data.get('date', '')[:10]}, server on one core "
        f"(bars: median, whiskers: min–max over rounds)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
