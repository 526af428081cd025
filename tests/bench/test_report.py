from __future__ import annotations

from pathlib import Path

from bench import report


def _data(with_baseline: bool) -> dict[str, object]:
    targets = {"trestle-async": {"kind": "async"}}
    records = []
    for rnd, (after, before) in enumerate([(1200.0, 1000.0), (1300.0, 1000.0)], start=1):
        records.append({"round": rnd, "target": "trestle-async", "cell": "unary", "c": 16, "rps": after, "valid": True})
        if with_baseline:
            records.append(
                {"round": rnd, "target": "trestle-async@before", "cell": "unary", "c": 16, "rps": before, "valid": True}
            )
    if with_baseline:
        targets["trestle-async@before"] = {"kind": "async"}
        for rnd, ms in ((1, [0.5, 2.0]), (2, [1.0])):
            for target, scale in (("trestle-async", 1.0), ("trestle-async@before", 2.0)):
                records.append(
                    {"round": rnd, "target": target, "cell": "cancel", "label": "async gen", "valid": True,
                     "ms": [m * scale for m in ms]}
                )  # fmt: skip
    return {"targets": targets, "records": records}


def test_before_after_rows_are_per_round_ratios_against_the_baseline_twin() -> None:
    text = report.before_after_section(report.Results(_data(with_baseline=True)))
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| trestle-async |")}
    # rounds: 1200/1000 and 1300/1000 -> median 1.25, shown with its range
    assert rows["unary c=16 req/s"].endswith("| 1,000.0 | 1,250.0 (1,200.0–1,300.0) | 1.25 (1.20–1.30) |")
    assert rows["cancel (async gen) max ms"].endswith("| 4.0 | 2.0 |  |")


def test_no_section_without_a_baseline() -> None:
    assert report.before_after_section(report.Results(_data(with_baseline=False))) == ""


def test_push_stall_is_the_per_round_p99_ratio_and_a_goal() -> None:
    records = [
        {"round": 1, "target": "trestle-platform", "cell": "push stall", "label": "idle", "p50_us": 400.0,
         "p99_us": 900.0, "raw_p99_us": 1000.0, "valid": True},
        {"round": 1, "target": "trestle-platform", "cell": "push stall", "label": "during push", "p50_us": 500.0,
         "p99_us": 2000.0, "raw_p99_us": 3000.0, "mib": 512, "push_s": 6.5, "valid": True},
    ]  # fmt: skip
    res = report.Results({"targets": {}, "records": records})
    assert report.push_stall_ratios(res) == [3.0]  # raw (per-request) p99s: 3.0 ms / 1.0 ms
    [goal] = [g for g in report.goals(res) if g.goal.startswith("A big push")]
    assert goal.status == "missed" and goal.measured.startswith("max 3.00×")


def test_sections_written_by_other_scripts_survive_a_new_report() -> None:
    old = "# Old\n\nstale numbers\n\n<!-- gpus:begin -->\n## GPUs\nmeasured on an H100\n<!-- gpus:end -->\n"
    new = report.keep_marked_sections(old, "# New\n\nfresh numbers\n")
    assert new == "# New\n\nfresh numbers\n\n<!-- gpus:begin -->\n## GPUs\nmeasured on an H100\n<!-- gpus:end -->\n"
    assert "stale numbers" not in new
    # a section the new report writes itself is not duplicated
    mine = "# New\n<!-- gpus:begin -->\nnew\n<!-- gpus:end -->\n"
    assert report.keep_marked_sections(old, mine) == mine


def _batch_data() -> dict[str, object]:
    targets = {
        "trestle-synthetic": {"group": "trestle"},
        "trestle-synthetic-batched": {"group": "trestle"},
        "ray-synthetic-batched": {"group": "peer", "desc": "Ray Serve"},
    }
    rps = {"trestle-synthetic": 180.0, "trestle-synthetic-batched": 1800.0, "ray-synthetic-batched": 900.0}
    records = [
        {"round": rnd, "target": t, "cell": "batch", "label": "synthetic", "c": c, "rps": rps[t] / c,
         "p50_us": 6000.0, "p99_us": 9000.0, "raw_p50_us": 6000.0, "valid": True}
        for rnd in (1, 2) for t in targets for c in (1, 32)
    ]  # fmt: skip
    plan = {
        "rounds": 2,
        "duration": 6,
        "warmup": 2,
        "server_core": 0,
        "client_core": 1,
        "memory_n": 0,
        "memory_peer_n": 0,
    }
    return {"targets": targets, "records": records, "plan": plan, "machine": {"cpu": "x", "cores": 2}}


def test_a_batch_run_writes_only_the_batch_section(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nfull run\n\n<!-- ray:begin -->\n## Ray\n<!-- ray:end -->\n")
    report.batch_marked_section(_batch_data(), tmp_path / "batch-x.json", md)
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nfull run\n\n<!-- ray:begin -->\n## Ray\n<!-- ray:end -->\n")
    assert text.count("<!-- batch:begin -->") == 1 and text.rstrip().endswith("<!-- batch:end -->")
    assert "| Trestle batched ×ray-synthetic-batched | 2.00 |  |  | 2.00 |  |  |" in text
    assert "| Batching, synthetic, c=32: batched ≥ 8× unbatched throughput | 10.00× | met |" in text
    assert "| Batching, synthetic, c=32: Trestle batched ahead of ray-synthetic-batched | 2.00× | met |" in text
    # a second batch run replaces it; a full report with batch records replaces it too
    report.batch_marked_section(_batch_data(), tmp_path / "batch-x.json", md)
    assert md.read_text() == text
    full = report.render(_batch_data(), tmp_path / "x.json", None, tmp_path)
    assert report.keep_marked_sections(text, full).count("<!-- batch:begin -->") == 1
