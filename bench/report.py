"""Results JSON -> BENCHMARKS.md: medians (min-max) over rounds, per-round ratios, targets met/missed.

Ratios are computed per round against the same cell in the same round: "x bare" against
``asgi-uvicorn`` (for streams: its async generator), "x Truss" against Truss's server running the
same kind of model (``truss-sync`` for sync targets, ``truss-async`` for async ones); the table
shows the median of the per-round ratios. Invalid records (a failed response check) are left out of
every number and listed at the end.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ray as ray_cells

Record = dict[str, Any]
BARE = "asgi-uvicorn"
BARE_STREAM = "async gen"


def dump_results(results: dict[str, Any]) -> str:
    """Compact, diff-friendly JSON: one record per line."""

    def compact(v: Any) -> str:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    head = [f" {compact(k)}: {compact(v)}" for k, v in results.items() if k != "records"]
    records = ",\n".join("  " + compact(r) for r in results.get("records", []))
    return "{\n" + ",\n".join(head) + ',\n "records": [\n' + records + "\n ]\n}\n"


# ----------------------------------------------------------------------------- numbers
def med(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def num(v: float | None, nd: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def spread(xs: list[float], nd: int = 0, scale: float = 1.0) -> str:
    """'median (min–max)'."""
    if not xs:
        return "–"
    m, lo, hi = (num(v * scale, nd) for v in (statistics.median(xs), min(xs), max(xs)))
    return m if lo == hi else f"{m} ({lo}–{hi})"


class Results:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.targets: dict[str, dict[str, str]] = data.get("targets", {})
        self.records: list[Record] = data.get("records", [])
        self.valid = [r for r in self.records if r.get("valid")]
        self.groups: dict[tuple[str, str, Any], list[Record]] = defaultdict(list)
        for r in self.valid:
            self.groups[(r["target"], r["cell"], r.get("c", r.get("label")))].append(r)

    def get(self, target: str, cell: str, key: Any) -> list[Record]:
        return self.groups.get((target, cell, key), [])

    def values(self, target: str, cell: str, key: Any, field: str) -> list[float]:
        return [r[field] for r in self.get(target, cell, key) if r.get(field) is not None]

    def truss_of(self, target: str) -> str:
        return f"truss-{self.targets.get(target, {}).get('kind', 'async')}"

    def ratios(
        self, target: str, cell: str, key: Any, field: str, base_target: str, base_key: Any = None
    ) -> list[float]:
        """Per-round ratio of `field` to the same cell of `base_target` in the same round."""
        base = {r["round"]: r.get(field) for r in self.get(base_target, cell, key if base_key is None else base_key)}
        out = []
        for r in self.get(target, cell, key):
            b = base.get(r["round"])
            if b and r.get(field) is not None:
                out.append(r[field] / b)
        return out

    def ratio_cell(self, *args: Any, **kw: Any) -> str:
        return spread(self.ratios(*args, **kw), 2)

    def order(self, cell: str) -> list[str]:
        return [t for t in self.targets if any(k[0] == t and k[1] == cell for k in self.groups)]

    def keys(self, cell: str) -> list[Any]:
        return sorted({k[2] for k in self.groups if k[1] == cell}, key=str)


# ----------------------------------------------------------------------------- sections
def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def unary_section(res: Results) -> str:
    concs = sorted(c for c in res.keys("unary") if isinstance(c, int))
    if not concs:
        return ""
    hdr = ["target"] + [h for c in concs for h in (f"c={c} req/s", f"c={c} ×bare", f"c={c} ×Truss")]
    rows = []
    for t in res.order("unary"):
        row = [t]
        for c in concs:
            row += [
                spread(res.values(t, "unary", c, "rps")),
                res.ratio_cell(t, "unary", c, "rps", BARE),
                res.ratio_cell(t, "unary", c, "rps", res.truss_of(t)),
            ]
        rows.append(row)
    lat_hdr = ["target", "c=1 p50 (raw)", "c=1 p99 (raw)"] + [
        h for c in concs if c > 1 for h in (f"c={c} p50", f"c={c} p99")
    ]
    lat_hdr += [f"server CPU µs/req (c={concs[-1]})"]
    lat_rows = []
    for t in res.order("unary"):
        row = [
            t,
            spread(res.values(t, "unary", 1, "raw_p50_us"), 3, 1e-3),
            spread(res.values(t, "unary", 1, "raw_p99_us"), 3, 1e-3),
        ]
        for c in concs:
            if c > 1:
                row += [
                    spread(res.values(t, "unary", c, "p50_us"), 2, 1e-3),
                    spread(res.values(t, "unary", c, "p99_us"), 2, 1e-3),
                ]
        row.append(spread(res.values(t, "unary", concs[-1], "cpu_us")))
        lat_rows.append(row)
    return (
        '## Unary JSON predict: `{"x": 1}` → `{"x": 1}`\n\n'
        "Requests per second, median over rounds (min–max); ratios are medians of per-round ratios.\n\n"
        + table(hdr, rows)
        + "\n\nLatency in ms: c=1 from per-request timing (`raw`), c≥16 from wrk's histogram (closed loop, "
        "corrected for coordinated omission, so it is the latency at saturation).\n\n" + table(lat_hdr, lat_rows) + "\n"
    )


def stream_key_rows(res: Results) -> list[tuple[str, str]]:
    return [(t, lab) for t in res.order("stream") for lab in res.keys("stream") if res.get(t, "stream", lab)]


def stream_section(res: Results) -> str:
    rows = []
    n = next((r.get("n") for r in res.valid if r["cell"] == "stream"), None)
    for t, lab in stream_key_rows(res):
        truss = res.truss_of(t)
        truss_lab = next((k for k in res.keys("stream") if res.get(truss, "stream", k)), lab)
        rows.append(
            [
                f"{t} / {lab}",
                spread(res.values(t, "stream", lab, "ttfc_p50_us"), 3, 1e-3),
                res.ratio_cell(t, "stream", lab, "ttfc_p50_us", BARE, BARE_STREAM),
                spread(res.values(t, "stream", lab, "chunks_per_s")),
                res.ratio_cell(t, "stream", lab, "chunks_per_s", BARE, BARE_STREAM),
                res.ratio_cell(t, "stream", lab, "chunks_per_s", truss, truss_lab),
                spread(res.values(t, "stream", lab, "http_chunks")),
                spread(res.values(t, "stream", lab, "cpu_us_per_chunk"), 1),
            ]
        )
    if not rows:
        return ""
    hdr = [
        "target / generator",
        "TTFC p50 ms",
        "TTFC ×bare",
        "chunks/s",
        "chunks/s ×bare",
        "chunks/s ×Truss",
        "HTTP chunks per stream",
        "server CPU µs/chunk",
    ]
    return (
        f"## Streaming: one stream of {n} small chunks\n\n"
        "One connection, streams back to back (perfbench's `ttfc.py`). TTFC = request written → first body "
        "byte; chunks/s = chunks ÷ the stream's own time (request → last byte), medians. `×bare` is against "
        "the bare ASGI async generator.\n\n" + table(hdr, rows) + "\n"
    )


def cancel_values(res: Results, t: str, lab: str) -> tuple[list[float], str | None]:
    vals: list[float] = []
    never = None
    for r in res.get(t, "cancel", lab):
        vals += [v for v in r.get("ms", []) if v is not None]
        never = never or r.get("never")
    return vals, never


def cancel_section(res: Results) -> str:
    rows = []
    for t in res.order("cancel"):
        for lab in res.keys("cancel"):
            if not res.get(t, "cancel", lab):
                continue
            vals, never = cancel_values(res, t, lab)
            wait = res.get(t, "cancel", lab)[0].get("wait_s")
            cell = f"never (waited {wait} s; the model's `finally` ran: {never})" if never else spread(vals, 1)
            rows.append([f"{t} / {lab}", cell, str(len(vals)), num(max(vals), 1) if vals and not never else "–"])
    if not rows:
        return ""
    return (
        "## Cancellation: client disconnect → the model's `finally`\n\n"
        "The client starts a long stream (2 ms between chunks) or a long `async def predict`, disconnects "
        "once it runs, and the model writes `time.monotonic()` in its `finally`. ms: median (min–max) over "
        "all probes of all rounds.\n\n"
        + table(["target / model code", "disconnect → finally, ms", "probes", "max ms"], rows)
        + "\n"
    )


PAYLOAD_CELLS = (("msgpack", 'msgpack `{"x": 1}`'), ("msgpack-1mb", "msgpack 1 MB"), ("json-1mb", "JSON 1 MB"))


def payload_section(res: Results) -> str:
    parts = []
    for cell, title in PAYLOAD_CELLS:
        concs = sorted(c for c in res.keys(cell) if isinstance(c, int))
        if not concs:
            continue
        hdr = ["target"] + [
            h for c in concs for h in (f"c={c} req/s", f"c={c} p50 ms", f"c={c} ×bare", f"c={c} ×Truss")
        ]
        rows = []
        for t in res.order(cell):
            row = [t]
            for c in concs:
                p50 = "raw_p50_us" if c == 1 else "p50_us"
                row += [
                    spread(res.values(t, cell, c, "rps")),
                    spread(res.values(t, cell, c, p50), 2, 1e-3),
                    res.ratio_cell(t, cell, c, "rps", BARE),
                    res.ratio_cell(t, cell, c, "rps", res.truss_of(t)),
                ]
            rows.append(row)
        parts.append(f"### {title} in, the same out\n\n" + table(hdr, rows))
    if not parts:
        return ""
    return (
        "## Payloads: msgpack and large JSON\n\nEcho of the body (`Content-Type: application/octet-stream` for "
        "msgpack); 1 MB = a list of 111,000 floats.\n\n" + "\n\n".join(parts) + "\n"
    )


def memory_section(res: Results) -> str:
    rows = []
    for r in res.valid:
        if r["cell"] != "memory":
            continue
        mib = 1 / 1024
        grow = (r["rss_after_kb"] - r["rss_before_kb"]) * mib
        ok = r.get("ok", {})
        rows.append(
            [
                r["target"],
                f"{r['n']:,}",
                num(r["rss_ready_kb"] * mib, 1),
                num(r["rss_before_kb"] * mib, 1),
                num(r["rss_after_kb"] * mib, 1),
                f"{grow:+.1f}",
                num(r.get("secs"), 1),
                " / ".join(f"{ok.get(k, 0):,}" for k in ("unary", "stream", "cancel", "fail")),
            ]
        )
    if not rows:
        return ""
    return (
        "## Memory: server RSS around N mixed requests\n\n"
        "Mix: 85 % unary, 5 % streams of 100 chunks, 5 % streams of 2,000 chunks cut after the first chunk "
        f"(client disconnect), 5 % failing predicts (must be 500); {res.data.get('plan', {}).get('memory_conc')} "
        "connections; every response checked. "
        "RSS (MiB) of the whole server process tree: at readiness, after a 1 % warm-up mix, after the N "
        "requests. Peers run fewer requests (Truss runs every cut stream to its end).\n\n"
        + table(
            [
                "target",
                "N",
                "RSS ready",
                "RSS before",
                "RSS after",
                "growth",
                "seconds",
                "ok: unary / stream / cancel / fail",
            ],
            rows,
        )
        + "\n"
    )


def gateway_added(res: Results) -> dict[int, tuple[list[float], list[float]]]:
    """c -> (per-round p50 added by the gateway in ms, per-round gateway/direct req/s ratio)."""
    by: dict[tuple[int, int], dict[str, Record]] = defaultdict(dict)
    for r in res.valid:
        if r["cell"] == "gateway":
            by[(r["round"], r["c"])][r["label"]] = r
    out: dict[int, tuple[list[float], list[float]]] = {}
    for (_, c), pair in sorted(by.items()):
        direct, via = pair.get("direct"), pair.get("via gateway")
        if not (direct and via):
            continue
        field = "raw_p50_us" if c == 1 and "raw_p50_us" in direct else "p50_us"
        added, ratio = out.setdefault(c, ([], []))
        added.append((via[field] - direct[field]) / 1000)
        ratio.append(via["rps"] / direct["rps"])
    return out


def _platform_values(res: Results, label: str) -> list[float]:
    vals: list[float] = []
    for r in res.valid:
        if r["cell"] == "platform" and r.get("label") == label and r.get("available", True):
            vals += r["s"] if isinstance(r["s"], list) else [r["s"]]
    return vals


def push_stall_ratios(res: Results) -> list[float]:
    """Per round: another model's p99 through the gateway while a big push runs / its idle p99."""
    out = []
    for rnd in sorted({r["round"] for r in res.valid if r["cell"] == "push stall"}):
        pair = {r["label"]: r for r in res.valid if r["cell"] == "push stall" and r["round"] == rnd}
        if "idle" in pair and "during push" in pair:
            idle, during = (pair[k].get("raw_p99_us", pair[k]["p99_us"]) for k in ("idle", "during push"))
            if idle:
                out.append(during / idle)
    return out


def platform_section(res: Results) -> str:
    missing = [r for r in res.records if r["cell"] == "platform" and r.get("available") is False]
    if missing:
        return f"## Platform\n\nNot measured: {missing[0].get('why', '')}.\n"
    rows = [
        [label, spread(_platform_values(res, label), 2)]
        for label in ("push to ACTIVE, cold cache", "push to ACTIVE, warm cache", "watch patch")
    ]
    if not any(row[1] != "–" for row in rows):
        return ""
    out = (
        "## Platform\n\n`trestle platform start` per round (fresh data dir), server core for the platform and its "
        "replicas. Seconds, median (min–max): push = `trestle push --promote` until it returns ACTIVE (the warm "
        "push reuses the built environment); watch patch = `VERSION` edited in model.py under `trestle push "
        "--watch` → first gateway answer with the new version.\n\n" + table(["cell", "seconds"], rows) + "\n"
    )
    gw = gateway_added(res)
    if gw:
        lat = {
            lab: {c: [r for r in res.valid if r["cell"] == "gateway" and r["label"] == lab and r["c"] == c] for c in gw}
            for lab in ("direct", "via gateway")
        }

        def p50(lab: str, c: int) -> list[float]:
            return [r.get("raw_p50_us" if c == 1 else "p50_us", r["p50_us"]) for r in lat[lab][c]]

        def rps(lab: str, c: int) -> list[float]:
            return [r["rps"] for r in lat[lab][c]]

        def cpu(lab: str, c: int, key: str) -> list[float]:
            return [r[key] for r in lat[lab][c] if key in r]

        grows = [
            [
                str(c),
                spread(rps("direct", c)),
                spread(rps("via gateway", c)),
                spread(ratio, 2),
                spread(p50("direct", c), 3, 1e-3),
                spread(p50("via gateway", c), 3, 1e-3),
                spread(added, 3),
                spread(cpu("direct", c, "replica_cpu_us"), 0),
                spread(cpu("via gateway", c, "replica_cpu_us"), 0),
                spread(cpu("via gateway", c, "gateway_cpu_us"), 0),
            ]
            for c, (added, ratio) in gw.items()
        ]
        out += (
            "\nGateway: the production deployment's replica directly vs through "
            "`/models/<name>/environments/production/predict` (p50 at c=1 timed per request).\n\n"
            + table(
                [
                    "c",
                    "direct req/s",
                    "via gateway req/s",
                    "×direct",
                    "direct p50 ms",
                    "gateway p50 ms",
                    "added p50 ms",
                    "replica CPU µs/req, direct",
                    "replica CPU µs/req, via gateway",
                    "gateway CPU µs/req",
                ],
                grows,
            )
            + "\n"
        )
    streams = [r for r in res.valid if r["cell"] == "gateway stream"]
    if streams:

        def sv(label: str, key: str) -> list[float]:
            return [r[key] for r in streams if r["label"] == label and key in r]

        def srow(label: str) -> list[str]:
            return [
                label,
                spread(sv(label, "chunks_per_s")),
                spread(sv(label, "ttfc_p50_us"), 3, 1e-3),
                spread(sv(label, "replica_cpu_us_per_chunk"), 2),
                spread(sv(label, "gateway_cpu_us_per_chunk"), 2),
            ]

        by_round: dict[int, dict[str, float]] = defaultdict(dict)
        for r in streams:
            by_round[r["round"]][r["label"]] = r["chunks_per_s"]
        ratio = [pair["via gateway"] / pair["direct"] for pair in by_round.values() if len(pair) == 2]
        n = streams[0].get("n", "?")
        out += (
            f"\nStreaming: back-to-back streams of {n} chunks on one connection, directly and through the gateway; "
            f"through the gateway / direct chunks/s: {spread(ratio, 2)}.\n\n"
            + table(
                ["", "chunks/s", "first chunk ms", "replica CPU µs/chunk", "gateway CPU µs/chunk"],
                [srow("direct"), srow("via gateway")],
            )
            + "\n"
        )
    runs = [r for r in res.valid if r["cell"] == "async"]
    if runs:

        def per_s(label: str) -> list[float]:
            return [r["rps"] for r in runs if r["label"] == label]

        n = runs[0].get("n", "?")
        out += (
            f"\nAsync inference: {n} requests from 16 client threads through the gateway to the same replica; "
            "sync predict = requests/s to the last answer, async = completed/s to the last webhook received "
            "(signature, data and exactly-once checked).\n\n"
            + table(
                ["", "per second"],
                [
                    ["sync predict", spread(per_s("sync predict"))],
                    ["async completed", spread(per_s("async completed"))],
                ],
            )
            + "\n"
        )
    stall = [r for r in res.valid if r["cell"] == "push stall"]
    if stall:

        def p(label: str, key: str) -> list[float]:
            return [r.get("raw_" + key, r[key]) for r in stall if r["label"] == label]

        mib = next((r["mib"] for r in stall if "mib" in r), "?")
        pushes = [r["push_s"] for r in stall if "push_s" in r]
        out += (
            f"\nA push does not stall other models: the production deployment at c=1 through the gateway, idle "
            f"and while a truss with {mib} MiB of `data/` is uploaded and deployed as another model (push took "
            f"{spread(pushes, 1)} s).\n\n"
            + table(
                ["", "p50 ms", "p99 ms"],
                [
                    ["idle", spread(p("idle", "p50_us"), 3, 1e-3), spread(p("idle", "p99_us"), 3, 1e-3)],
                    [
                        "during the push",
                        spread(p("during push", "p50_us"), 3, 1e-3),
                        spread(p("during push", "p99_us"), 3, 1e-3),
                    ],
                    ["×idle (p99)", "", spread(push_stall_ratios(res), 2)],
                ],
            )
            + "\n"
        )
    return out


# ----------------------------------------------------------------------------- targets
@dataclass
class Goal:
    goal: str
    measured: str  # "not measured" when the run has no data for it
    status: str  # "met" | "missed" | "–"
    profile: tuple[str, bool] | None = None  # (target, streaming) to profile when missed


def _median_ratio(res: Results, *args: Any, **kw: Any) -> float | None:
    return med(res.ratios(*args, **kw))


def _at_least(floor: float) -> Callable[[float], bool]:
    return lambda v: v >= floor


def goals(res: Results) -> list[Goal]:
    """Issue 5's targets, evaluated on this run."""
    out: list[Goal] = []

    def add(
        goal: str,
        value: float | None,
        ok: Callable[[float], bool],
        shown: str,
        profile: tuple[str, bool] | None,
        not_measured: str = "not measured",
    ) -> None:
        if value is None:
            out.append(Goal(goal, not_measured, "–"))
        else:
            out.append(Goal(goal, shown, "met" if ok(value) else "missed", profile))

    r = _median_ratio(res, "trestle-async", "unary", 16, "rps", BARE)
    rt = _median_ratio(res, "trestle-async", "unary", 16, "rps", "truss-async")
    add(
        "Async unary predict, c=16: ≥ 0.5× bare ASGI (≈ 8× Truss)",
        r,
        lambda v: v >= 0.5,
        f"{num(r, 2)}× bare" + (f", {num(rt, 1)}× Truss" if rt is not None else ""),
        ("trestle-async", False),
    )
    r = _median_ratio(res, "trestle-sync", "unary", 16, "rps", "truss-sync")
    add(
        "Sync unary predict, c=16: ≥ 5× Truss's server",
        r,
        lambda v: v >= 5,
        f"{num(r, 1)}× Truss",
        ("trestle-sync", False),
    )
    for t, lab, floor in (("trestle-async", "async gen", 0.7), ("trestle-sync", "sync gen", 0.5)):
        r = _median_ratio(res, t, "stream", lab, "chunks_per_s", BARE, BARE_STREAM)
        add(
            f"Streaming, {lab}: ≥ {floor}× the bare async stream's chunks/s",
            r,
            _at_least(floor),
            f"{num(r, 2)}×",
            (t, True),
        )
    for t, lab in (("trestle-async", "async gen"), ("trestle-sync", "sync gen")):
        r = _median_ratio(res, t, "stream", lab, "ttfc_p50_us", BARE, BARE_STREAM)
        add(f"Time to first chunk, {lab}: within 2× bare ASGI", r, lambda v: v <= 2, f"{num(r, 2)}×", (t, True))
    for t, lab in (("trestle-async", "async gen"), ("trestle-sync", "sync gen"), ("trestle-async", "async predict")):
        vals, never = cancel_values(res, t, lab)
        goal = f"Cancellation, {lab}: < 50 ms disconnect → `finally`"
        if never:
            out.append(Goal(goal, "never", "missed"))
            continue
        worst = max(vals) if vals else None
        add(goal, worst, lambda v: v < 50, f"max {num(worst, 1)} ms (median {num(med(vals), 1)})", None)
    why = next(
        (r.get("why", "") for r in res.records if r["cell"] == "platform" and r.get("available") is False),
        "no platform cell in this run",
    )
    added = gateway_added(res).get(1, ([], []))[0]
    add(
        "Gateway: < 1 ms added at p50 on one core (c=1)",
        med(added),
        lambda v: v < 1,
        f"{num(med(added), 3)} ms (per round: {', '.join(num(a, 3) for a in added)})",
        None,
        f"not measured: {why}",
    )
    stall = push_stall_ratios(res)
    add(
        "A big push: another model's p99 within 2× its idle p99",
        max(stall) if stall else None,
        lambda v: v <= 2,
        f"max {num(max(stall) if stall else None, 2)}× (per round: {', '.join(num(v, 2) for v in stall)})",
        None,
        f"not measured: {why}",
    )
    patches = _platform_values(res, "watch patch")
    add(
        "`watch` patch: < 1 s from save to serving",
        max(patches) if patches else None,
        lambda v: v < 1,
        f"max {num(max(patches) if patches else None, 2)} s (median {num(med(patches), 2)})",
        None,
        f"not measured: {why}",
    )
    for label, plain, batched, floor in BATCH_PAIRS:
        r = _median_ratio(res, batched, "batch", 32, "rps", plain)
        add(
            f"Batching, {label}, c=32: batched ≥ {floor}× unbatched throughput",
            r,
            _at_least(floor),
            f"{num(r, 2)}×",
            None,
        )
        r = _median_ratio(res, batched, "batch", 1, "raw_p50_us" if label == "synthetic" else "p50_us", plain)
        add(
            f"Batching, {label}, c=1: batched p50 within 5% of unbatched", r, lambda v: v <= 1.05, f"{num(r, 3)}×", None
        )
        for peer in _batch_peers(res, label):
            r = _median_ratio(res, batched, "batch", 32, "rps", peer)
            add(f"Batching, {label}, c=32: Trestle batched ahead of {peer}", r, _at_least(1), f"{num(r, 2)}×", None)
    return out


BATCH_PAIRS = (
    ("synthetic", "trestle-synthetic", "trestle-synthetic-batched", 8),
    ("embeddings", "trestle-embeddings", "trestle-embeddings-batched", 2),
)
"""(label, unbatched target, batched target, c=32 throughput floor) of the batch cell (bench/batching.py)."""


def _batch_peers(res: Results, label: str) -> list[str]:
    """Peer targets with batch records for ``label`` (their names carry it: litserve-synthetic-batched)."""
    return [t for t in res.order("batch") if res.targets.get(t, {}).get("group") == "peer" and f"-{label}" in t]


def batch_chart_path(png: Path) -> Path:
    """Where bench/chart.py puts the batch cell's chart, beside the run's chart ``png``."""
    return png.with_name(png.stem + "-batch.png")


def batch_section(res: Results, chart: str | None = None) -> str:
    """The batch cell's tables (``chart``: the batch chart, relative to BENCHMARKS.md)."""
    concs = sorted(c for c in res.keys("batch") if isinstance(c, int))
    if not concs:
        return ""
    parts = [
        "## Dynamic batching: the same model unbatched, `@trestle.batched`, and batched by the peers\n\n"
        "Closed loop at each concurrency; requests per second and latency (ms), median over rounds (min–max); "
        "`×unbatched` and `×peer` are medians of per-round ratios. `synthetic`: `bench/models/synthetic`, a "
        "stand-in GPU (5 ms + 0.1 ms per item, one batch at a time), wrk, every body compared byte for byte. "
        "`embeddings`: `examples/embeddings` through `/v1/embeddings`, an asyncio client checking every vector "
        "(cosine ≥ 0.999 with the reference). Batches of at most 32, 5 ms wait (`max_wait_ms` 5, Ray "
        "`batch_wait_timeout_s` 0.005, LitServe `batch_timeout` 0.005; BentoML has no wait setting, its "
        "dispatcher learns one), one replica / worker each; every peer runs the same model code "
        "(`bench/peers/batch_models.py`).\n"
    ]
    if chart:
        parts.append(f"![dynamic batching: req/s and p50 against concurrency]({chart})\n")
    for label, plain, batched, _ in BATCH_PAIRS:
        present = [t for t in (plain, batched) if any(res.get(t, "batch", c) for c in concs)]
        peers = _batch_peers(res, label)
        if not present:
            parts.append(f"### {label}\n\nNot measured in this run.\n")
            continue
        hdr = ["target"] + [h for c in concs for h in (f"c={c} req/s", f"c={c} p50", f"c={c} p99")]
        rows = []
        for t in present + peers:
            row = [t]
            for c in concs:
                row += [
                    spread(res.values(t, "batch", c, "rps")),
                    spread(res.values(t, "batch", c, "p50_us"), 2, 1e-3),
                    spread(res.values(t, "batch", c, "p99_us"), 2, 1e-3),
                ]
            rows.append(row)
        if len(present) == 2:
            rows.append(
                ["batched ×unbatched"]
                + [v for c in concs for v in (res.ratio_cell(batched, "batch", c, "rps", plain), "", "")]
            )
        for t in peers:
            rows.append(
                [f"Trestle batched ×{t}"]
                + [v for c in concs for v in (res.ratio_cell(batched, "batch", c, "rps", t), "", "")]
            )
        parts.append(f"### {label}\n\n" + table(hdr, rows) + "\n")
    gs = [g for g in goals(res) if g.goal.startswith("Batching")]
    parts.append(
        "Goals of issue 15 in this run:\n\n"
        + table(["goal", "measured", "status"], [[g.goal, g.measured, _status(g)] for g in gs])
        + "\n"
    )
    return "<!-- batch:begin -->\n" + "\n".join(parts) + "<!-- batch:end -->\n"


def _status(g: Goal) -> str:
    return "**missed**" if g.status == "missed" else g.status


def batch_marked_section(data: dict[str, Any], json_path: Path, md_path: Path) -> None:
    """A run of the batch cell alone (``bench/run --report-only X.json --section batch``): its section
    of ``md_path`` (the ``batch`` marked section) in place of the one there, everything else kept."""
    res = Results(data)
    md_dir = md_path.parent
    chart = batch_chart_path(json_path.with_suffix(".png"))
    text = batch_section(res, os.path.relpath(chart, md_dir) if chart.exists() else None)
    if not text:
        raise SystemExit(f"{json_path}: no batch records")
    body = text.removeprefix("<!-- batch:begin -->\n").removesuffix("<!-- batch:end -->\n").rstrip("\n")
    m, plan = data.get("machine", {}), data.get("plan", {})
    rel = os.path.relpath(json_path, md_dir)
    command = f"bench/run --cells batch --rounds {plan.get('rounds')} --duration {plan.get('duration')}"
    note = (
        f"\nFrom `{command}` ({data.get('date')}, {data.get('minutes')} min, revision {data.get('revision')}; "
        f"[`{rel}`]({rel})): {plan.get('rounds')} rounds (target order reversed every other round), "
        f"{plan.get('duration')} s per concurrency after a {plan.get('warmup')} s warm-up, server on core "
        f"{plan.get('server_core')} and load on core {plan.get('client_core')} of {m.get('cpu')} "
        f"({m.get('cores')} cores). "
        f"Invalid cells: {len([r for r in res.records if not r.get('valid')])}."
        + (
            " The Ray targets run the whole of their Ray (GCS, raylet, Serve's controller and proxy, the replica) "
            "on the one server core, as the Ray section's head does: their figures say how Ray fares beside the "
            "others on one core, not what it does with cores of its own."
            if any(t.startswith("ray-") for t in res.targets)
            else ""
        )
        + "\n\n"
        + table(["target", "what"], [[t, v.get("desc", "")] for t, v in res.targets.items()])
    )
    put_marked_section(md_path, "batch", [body, note])


def targets_section(res: Results) -> str:
    gs = goals(res)
    rows = [[g.goal, g.measured, "**missed**" if g.status == "missed" else g.status] for g in gs]
    out = (
        "## Targets (issue 5)\n\nRatios from this run (median of per-round ratios).\n\n"
        + table(["target", "measured", "status"], rows)
        + "\n"
    )
    if any(g.status == "missed" for g in gs):
        out += (
            "\nWhere a target is missed, the profiles at the end show where the server spends its time"
            + (
                ""
                if res.data.get("profiles")
                else " (none in this run: `bench/run --profile-only <results.json>` adds them)"
            )
            + ".\n"
        )
    return out


BEFORE = "@before"  # bench.targets.BEFORE: Trestle targets served from --baseline-venv


def before_after_section(res: Results) -> str:
    """Each ``trestle-*@before`` target against its twin in the same rounds: per-round ratios
    after / before (throughput above 1 is faster; latency and CPU below 1 are better)."""
    measures = [("unary", c, f, w, 1, 1.0) for c in res.keys("unary") if isinstance(c, int) for f, w in UNARY_MEASURES]
    measures += [("stream", lab, f, w, nd, sc) for lab in res.keys("stream") for f, w, nd, sc in STREAM_MEASURES]
    rows: list[list[str]] = []
    for before in (t for t in res.targets if t.endswith(BEFORE)):
        after = before[: -len(BEFORE)]
        for cell, key, field, what, nd, scale in measures:
            old, new = res.values(before, cell, key, field), res.values(after, cell, key, field)
            if old and new:
                label = f"{cell} c={key} {what}" if cell == "unary" else f"{cell} ({key}) {what}"
                ratio = res.ratio_cell(after, cell, key, field, before)
                rows.append([after, label, spread(old, nd, scale), spread(new, nd, scale), ratio])
        for lab in res.keys("cancel"):
            old, new = cancel_values(res, before, lab)[0], cancel_values(res, after, lab)[0]
            if old and new:
                rows.append([after, f"cancel ({lab}) max ms", num(max(old), 1), num(max(new), 1), ""])
    if not rows:
        return ""
    return (
        "## Before and after (`--baseline-venv`)\n\n"
        "The Trestle targets served a second time from the baseline venv, in the same rounds, on the same "
        "cores: medians (min–max) and the median of per-round ratios after / before.\n\n"
        + table(["target", "cell", "before", "after", "after / before"], rows)
        + "\n"
    )


UNARY_MEASURES = (("rps", "req/s"), ("cpu_us", "server CPU µs/req"))
STREAM_MEASURES = (("chunks_per_s", "chunks/s", 0, 1.0), ("ttfc_p50_us", "TTFC p50 ms", 3, 1e-3))


def profiles_section(res: Results) -> str:
    profiles: dict[str, str] = res.data.get("profiles") or {}
    if not profiles:
        return ""
    out = [
        "## Profiles of missed targets\n",
        "py-spy, 200 Hz, perfbench's `profile_target.py` (its copies of the same models, wrk at c=16 for 10 s, "
        "server on one core); samples by package: `self` = the leaf frame's package, `inclusive` = anywhere on "
        "the stack.\n",
    ]
    for key, text in profiles.items():
        out.append(f"### {key}\n\n{text.strip()}\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------- the rest
def validity_section(res: Results) -> str:
    bad = [r for r in res.records if not r.get("valid")]
    noise: dict[str, list[float]] = defaultdict(list)
    for r in res.valid:
        if r.get("foreign") is not None:
            noise[r["target"]].append(r["foreign"])
    rows = [[t, str(len(v)), num(med(v), 2), num(max(v), 2)] for t, v in noise.items()]
    out = (
        "## Checks and noise\n\n"
        "Every response was checked (status 200 and the exact body, chunk count for streams, 500 for the "
        "failing predicts). A cell with any socket error, other status or other body is invalid and is not "
        f"in the tables above. Invalid cells in this run: **{len(bad)}**.\n\n"
    )
    if bad:
        out += (
            "\n".join(
                f"- round {r.get('round')} {r.get('target')} {r.get('cell')} "
                f"{r.get('label') or r.get('c') or ''}: {r.get('why')}"
                for r in bad
            )
            + "\n\n"
        )
    if rows:
        out += (
            "CPU used by other processes on the box during each measurement, in cores (perfbench's "
            "accounting; a lower bound): high values mean a noisy run.\n\n"
            + table(["target", "runs", "median", "max"], rows)
            + "\n"
        )
    return out


def setup_section(res: Results) -> str:
    d = res.data
    m = d.get("machine", {})
    p = d.get("plan", {})
    out = [
        "## Machine, versions, method\n",
        f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('mem_gib')} GiB, Linux {m.get('kernel')} "
        f"({m.get('os')}), harness Python {m.get('python')}, {m.get('wrk')}.",
        f"- Run: {d.get('date')}, mode `{d.get('mode')}`, {d.get('minutes')} min, revision {d.get('revision')}.",
        f"- Plan: {p.get('rounds')} rounds (target order reversed every other round); wrk runs of "
        f"{p.get('duration')} s at c={p.get('concs')} (payloads c={p.get('payload_concs')}) after "
        f"{p.get('warmup')} s warm-up; streams {p.get('ttfc_duration')} s; {p.get('cancel_reps')} cancellation "
        f'probes per round ("never" after {p.get("cancel_wait")} s); memory N={p.get("memory_n"):,} '
        f"(peers {p.get('memory_peer_n'):,}); {p.get('watch_patches')} watch patches per round.",
        f"- Server pinned to core {p.get('server_core')} (`taskset`, children inherit), wrk / clients / harness "
        f"to core {p.get('client_core')}; loopback only.",
        "- How it works and how to re-run: [docs/08-benchmarks.md](docs/08-benchmarks.md).\n",
        "| target | what |",
        "|---|---|",
    ]
    out += [f"| {t} | {v.get('desc')} |" for t, v in res.targets.items()]
    out += ["", "| virtualenv | versions |", "|---|---|"]
    for label, vers in d.get("versions", {}).items():
        out.append(f"| {label} | " + ", ".join(f"{k} {v}" for k, v in vers.items()) + " |")
    return "\n".join(out) + "\n"


_MARKED = re.compile(r"<!-- (\w+):begin -->.*?<!-- \1:end -->\n?", re.S)


def keep_marked_sections(old: str, new: str) -> str:
    """``new`` with the ``<!-- NAME:begin --> ... <!-- NAME:end -->`` sections of ``old`` that it lacks
    appended: those are written by other scripts (``bench/gpus.py``), not by this run."""
    names = {m.group(1) for m in _MARKED.finditer(new)}
    kept = [m.group(0) for m in _MARKED.finditer(old) if m.group(1) not in names]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n".join(section.rstrip("\n") + "\n" for section in kept)


def put_marked_section(path: Path, name: str, lines: list[str]) -> None:
    """Write ``lines`` as the ``<!-- NAME:begin --> ... <!-- NAME:end -->`` section of ``path``, in place of
    the one there or appended (``bench/gpus.py`` and ``bench/attacks.py``; ``bench/run`` keeps them)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def _batch_chart(json_path: Path, md_dir: Path) -> str | None:
    chart = batch_chart_path(json_path.with_suffix(".png"))
    return os.path.relpath(chart, md_dir) if chart.exists() else None


def render(data: dict[str, Any], json_path: Path, png: Path | None, md_dir: Path) -> str:
    res = Results(data)
    rel = os.path.relpath(json_path, md_dir)
    head = (
        "# Benchmarks\n\n"
        f"Generated by `bench/run` from [`{rel}`]({rel}) — do not edit by hand. Trestle beside a bare ASGI "
        "app (the limit for a Python server on one core), Truss's own server, LitServe and BentoML, all in the "
        "same run, server on one core and load on the other.\n"
    )
    if data.get("mode") == "smoke":
        head += "\n**Smoke run**: 1 round of 1-second cells to check the harness. The numbers mean nothing.\n"
    parts = [head, targets_section(res), before_after_section(res)]
    if png is not None:
        parts.append(f"![throughput and latency per framework]({os.path.relpath(png, md_dir)})\n")
    parts += [
        unary_section(res),
        stream_section(res),
        cancel_section(res),
        payload_section(res),
        memory_section(res),
        platform_section(res),
        batch_section(res, _batch_chart(json_path, md_dir)),
        ray_cells.section(res.records),
        validity_section(res),
        setup_section(res),
        profiles_section(res),
    ]
    return "\n".join(p for p in parts if p)
