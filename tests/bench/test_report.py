from __future__ import annotations

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
