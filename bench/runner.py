"""Run the matrix: rounds x targets x cells, every response checked, one record per measurement.

Per round and target: start the server on the server core, wait for readiness, then run its cells
(unary JSON at each concurrency, msgpack and 1 MB payloads, one-stream TTFC and chunks/s,
cancellation probes), stop it. Target order is reversed every other round. After the rounds, the
memory cell runs once per target on a fresh server. Records that fail a check carry
``valid: false`` and a reason; the report leaves them out of every median and lists them.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import batching, load, platform
from bench import ray as ray_cells
from bench._perfbench import runner as perfbench_runner
from bench.envs import log
from bench.targets import Target

Record = dict[str, Any]


@dataclass
class Plan:
    rounds: int = 3
    duration: float = 10  # seconds per wrk run
    warmup: float = 2  # seconds of wrk (or ttfc) before the measured runs; 0 = none
    concs: tuple[int, ...] = (1, 16, 64)
    payload_concs: tuple[int, ...] = (1, 16)
    ttfc_duration: float = 5
    stream_n: int = 1000
    cancel_reps: int = 5
    cancel_wait: float = 3  # seconds to wait for a cancelled `finally` before reporting "never"
    cancel_run: float = 6  # how long the probed stream / predict would run if never cancelled
    memory_n: int = 100_000  # mixed requests for Trestle targets
    memory_peer_n: int = 10_000  # for peers (Truss streams run to completion after a disconnect)
    memory_conc: int = 8
    watch_patches: int = 5
    push_stall_mib: int = 512  # the big truss pushed while another model's latency is measured
    batch_concs: tuple[int, ...] = (1, 8, 32, 64)
    async_n: int = 2000  # requests per side of the async cell (sync predict, async completed)
    cells: tuple[str, ...] = ("unary", "payload", "stream", "cancel", "memory", "platform", "batch", "ray")
    server_core: int = 0
    client_core: int = 1


SMOKE = Plan(
    rounds=1,
    duration=1,
    warmup=0,
    concs=(1, 16),
    payload_concs=(1,),
    ttfc_duration=1,
    cancel_reps=1,
    cancel_wait=2,
    cancel_run=3,
    memory_n=400,
    memory_peer_n=200,
    memory_conc=4,
    watch_patches=2,
    push_stall_mib=8,
    batch_concs=(1, 32),
    async_n=40,
    cells=("unary", "payload", "stream", "cancel", "memory", "platform", "batch"),  # ray: --smoke --cells ray
)


def _payloads() -> list[tuple[str, str, bytes, Callable[[bytes], bool]]]:
    """(cell, content type, request body, check of the response body): echo must give back the input."""
    import msgpack

    rng = random.Random(5)
    big = {"data": [round(rng.random(), 6) for _ in range(111_000)]}  # ~1 MB as JSON and as msgpack

    def js(obj: object) -> Callable[[bytes], bool]:
        return lambda out: json.loads(out) == obj

    def mp(obj: object) -> Callable[[bytes], bool]:
        return lambda out: msgpack.unpackb(out) == obj

    return [
        ("msgpack", load.MSGPACK, msgpack.packb({"x": 1}), mp({"x": 1})),
        ("msgpack-1mb", load.MSGPACK, msgpack.packb(big), mp(big)),
        ("json-1mb", load.JSON, json.dumps(big).encode(), js(big)),
    ]


class Session:
    """One benchmark run: plan, targets, where records go."""

    def __init__(self, plan: Plan, targets: list[Target], out: Path, probes: Path, trestle_bin: Path) -> None:
        self.plan, self.targets, self.out, self.probes, self.trestle_bin = plan, targets, out, probes, trestle_bin
        self.logdir = out / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.records: list[Record] = []
        self.startup_s = 0.0
        self.pb = perfbench_runner()
        self._payloads = _payloads() if "payload" in plan.cells else []

    def emit(self, rec: Record) -> None:
        self.records.append(rec)
        with open(self.out / "records.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        brief = {
            k: v
            for k, v in rec.items()
            if k
            in (
                "round",
                "target",
                "cell",
                "c",
                "label",
                "rps",
                "p50_us",
                "ttfc_p50_us",
                "chunks_per_s",
                "ms",
                "rss_after_kb",
                "valid",
                "why",
            )
        }
        log(json.dumps(brief))

    @contextmanager
    def server(self, t: Target, tag: str) -> Iterator[Any]:
        srv = self.pb.Server(f"{t.name}-{tag}", t.spec(), "", str(self.logdir), self.plan.server_core)
        t0 = time.monotonic()
        try:
            srv.start()
            srv.wait_ready(t.ready_timeout)
            self.startup_s = round(time.monotonic() - t0, 2)
            yield srv
        finally:
            srv.stop()
            time.sleep(0.5)

    def cpu_probe(self, srv: Any) -> Any:
        return self.pb.CpuProbe(srv.sid, self.plan.server_core, self.plan.client_core)

    # ------------------------------------------------------------------------- rounds
    def run(self) -> None:
        p = self.plan
        no_platform = platform.available(self.trestle_bin) if "platform" in p.cells else "not in this run"
        if no_platform and "platform" in p.cells:
            for rec in platform.unavailable(no_platform):
                self.emit(rec)
        no_ray = ray_cells.available(self.trestle_bin) if "ray" in p.cells else "not in this run"
        if no_ray and "ray" in p.cells:
            for rec in ray_cells.unavailable(no_ray):
                self.emit(rec)
        for rnd in range(1, p.rounds + 1):
            order = self.targets if rnd % 2 else self.targets[::-1]
            for t in order:
                base: Record = {"round": rnd, "target": t.name}
                try:
                    with self.server(t, f"r{rnd}") as srv:
                        self.emit({**base, "cell": "startup", "s": self.startup_s, "valid": True})
                        self.round_cells(t, srv, base)
                except Exception as e:  # keep going with the other targets
                    self.emit({**base, "cell": "error", "valid": False, "why": repr(e)[:500]})
            if not no_platform:
                platform.PlatformRound(self, self.trestle_bin, rnd).run()
            if not no_ray:
                ray_cells.RayRound(self, self.trestle_bin, rnd).run()
        if "memory" in p.cells:
            for t in self.targets:
                if t.memory:
                    self.memory(t)

    def round_cells(self, t: Target, srv: Any, base: Record) -> None:
        p = self.plan
        if "unary" in p.cells and t.unary:
            self.wrk_cell(
                t, srv, base, "unary", t.unary, load.JSON, load.UNARY_BODY, load.unary_echo, p.concs, p.warmup
            )
        if "payload" in p.cells:
            for cell, ct, body, check in self._payloads:
                path = t.msgpack if ct == load.MSGPACK else t.large_json
                if path:
                    self.wrk_cell(t, srv, base, cell, path, ct, body, check, p.payload_concs, 0)
        if "stream" in p.cells:
            for label, path in t.streams.items():
                self.stream_cell(srv, base, label, path, t.port)
        if "cancel" in p.cells:
            for kind in t.cancel:
                self.cancel_cell(t, base, kind)
        if "batch" in p.cells and t.batch:
            batching.run_cell(self, t, srv, base)

    def wrk_cell(
        self,
        t: Target,
        srv: Any,
        base: Record,
        cell: str,
        path: str,
        ct: str,
        body: bytes,
        check: Callable[[bytes], bool],
        concs: tuple[int, ...],
        warmup: float,
    ) -> None:
        p = self.plan
        try:
            expect = load.expected_body(t.port, path, body, ct, check)
        except (load.CheckFailed, OSError, ValueError) as e:
            self.emit({**base, "cell": cell, "valid": False, "why": f"check: {e}"[:500]})
            return
        if warmup:
            load.wrk_post(t.port, path, body, ct, expect, 16, warmup, p.client_core)
        for c in concs:
            probe = self.cpu_probe(srv)
            probe.start()
            r = load.wrk_post(t.port, path, body, ct, expect, c, p.duration, p.client_core)
            cpu = probe.stop()
            rec = {**base, "cell": cell, "c": c, **_pick(r, "rps", "p50_us", "p99_us", "requests", "valid", "why")}
            if c == 1 and r.get("raw_n"):
                rec.update(_pick(r, "raw_p50_us", "raw_p99_us"))
            if r.get("requests"):
                rec["cpu_us"] = round(cpu["server_cpu_s"] / r["requests"] * 1e6, 1)
            rec["foreign"] = round(cpu["foreign_cpu_s"] / max(cpu["wall_s"], 1e-9), 3)
            self.emit(rec)

    def stream_cell(self, srv: Any, base: Record, label: str, path: str, port: int) -> None:
        p = self.plan
        if p.warmup:
            load.ttfc(port, path, p.stream_n, p.warmup, p.client_core)
        probe = self.cpu_probe(srv)
        probe.start()
        r = load.ttfc(port, path, p.stream_n, p.ttfc_duration, p.client_core)
        cpu = probe.stop()
        rec = {
            **base,
            "cell": "stream",
            "label": label,
            "n": p.stream_n,
            **_pick(r, "ttfc_p50_us", "ttfc_p99_us", "total_p50_us", "valid", "why"),
        }
        if r.get("ok"):
            rec["streams"] = r["ok"]
            rec["chunks_per_s"] = r.get("stream_chunks_per_s")
            rec["http_chunks"] = r.get("http_chunks_per_stream")
            rec["cpu_us_per_chunk"] = round(cpu["server_cpu_s"] / (r["ok"] * p.stream_n) * 1e6, 2)
        rec["foreign"] = round(cpu["foreign_cpu_s"] / max(cpu["wall_s"], 1e-9), 3)
        self.emit(rec)

    def cancel_cell(self, t: Target, base: Record, kind: str) -> None:
        p = self.plan
        path = t.unary or next(iter(t.streams.values()))
        results: list[float | None] = []
        how = ""
        try:
            for _ in range(p.cancel_reps):
                r = load.cancel_probe(t.port, path, kind, self.probes, p.cancel_wait, p.cancel_run)
                results.append(r["ms"])
                if r.get("never"):  # deterministic: no need to wait it out again
                    how = r["how"]
                    break
        except (load.CheckFailed, OSError) as e:
            self.emit({**base, "cell": "cancel", "label": kind, "valid": False, "why": str(e)[:300]})
            return
        rec = {**base, "cell": "cancel", "label": kind, "ms": results, "wait_s": p.cancel_wait, "valid": True}
        if how:
            rec["never"] = how
        self.emit(rec)

    # ------------------------------------------------------------------------- memory
    def rss_kb(self, srv: Any) -> int:
        total = 0
        for pid in self.pb.server_pids(srv.sid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
            except (OSError, StopIteration):
                pass
        return total

    def memory(self, t: Target) -> None:
        p = self.plan
        n = p.memory_n if t.group == "trestle" else p.memory_peer_n
        path = t.unary or ""
        base: Record = {"round": 0, "target": t.name, "cell": "memory", "n": n}
        try:
            with self.server(t, "memory") as srv:
                rss_ready = self.rss_kb(srv)
                warm = load.mixed_requests(t.port, path, max(len(load.MIX), n // 100), p.memory_conc)
                rss_before = self.rss_kb(srv)
                t0 = time.monotonic()
                st = load.mixed_requests(t.port, path, n, p.memory_conc)
                secs = round(time.monotonic() - t0, 1)
                time.sleep(0.5)  # let cancelled streams finish their `finally`
                rss_after = self.rss_kb(srv)
        except Exception as e:
            self.emit({**base, "valid": False, "why": repr(e)[:500]})
            return
        bad = st.bad + warm.bad
        rec = {
            **base,
            "rss_ready_kb": rss_ready,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "ok": st.ok,
            "secs": secs,
            "valid": bad == 0,
        }
        if bad:
            rec["why"] = f"{bad} bad responses: {(st.samples or warm.samples)[:3]}"
        self.emit(rec)


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def plan_dict(plan: Plan) -> dict[str, Any]:
    return asdict(plan)


def pin_client(core: int) -> None:
    os.sched_setaffinity(0, {core})
