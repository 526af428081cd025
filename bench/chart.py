"""Chart of one results file: unary throughput, unary latency and stream throughput per framework.

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

from bench.report import Results, stream_key_rows

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


def main(src: str, dst: str) -> None:
    res = Results(json.loads(Path(src).read_text()))
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
