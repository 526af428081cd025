"""CPU and memory limits: the cgroup v2 writer against a directory laid out like cgroupfs, and the
best-effort mechanism's CPU sets and OOM reading."""

from __future__ import annotations

from pathlib import Path

from trestle.platform.engines.limits import CgroupWriter, Limits, Mechanism, ResourceLimiter


def cgroupfs(root: Path, *, enabled: str = "", available: str = "cpuset cpu io memory pids") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(available + "\n")
    (root / "cgroup.subtree_control").write_text(enabled + "\n")
    return root


def test_the_cgroup_writer_sets_cpu_max_and_memory_max(tmp_path: Path) -> None:
    root = cgroupfs(tmp_path / "cg", enabled="cpu memory")
    writer = CgroupWriter(root)
    assert writer.usable()
    group = writer.create("dep1-r0.0", Limits(cpu=1.5, memory_bytes=2 << 30, memory_text="2Gi"))
    assert group == root / "trestle-dep1-r0.0"
    assert (group / "cpu.max").read_text() == "150000 100000\n"
    assert (group / "memory.max").read_text() == f"{2 << 30}\n"
    assert (group / "memory.swap.max").read_text() == "0\n"


def test_the_cgroup_writer_enables_the_controllers_it_needs_or_says_it_cannot(tmp_path: Path) -> None:
    root = cgroupfs(tmp_path / "cg")
    assert CgroupWriter(root).usable()  # a plain file takes the write; cgroupfs would enable them
    assert "+cpu +memory" in (root / "cgroup.subtree_control").read_text()
    lacking = cgroupfs(tmp_path / "no-memory", available="cpu pids")
    assert not CgroupWriter(lacking).usable()
    assert not CgroupWriter(tmp_path / "missing").usable()


def test_an_oom_kill_is_read_from_memory_events(tmp_path: Path) -> None:
    root = cgroupfs(tmp_path / "cg", enabled="cpu memory")
    limiter = ResourceLimiter(CgroupWriter(root))
    assert limiter.mechanism is Mechanism.CGROUP_V2
    assert limiter.banner() == f"CPU/memory limits: cgroup v2 under {root}"
    limiter.prepare("r1", Limits(1, 1 << 30, "1Gi"))
    events = root / "trestle-r1" / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not limiter.oom("r1", -9, [])
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert limiter.oom("r1", -9, [])
    limiter.after_exit("r1")  # a restarted process starts from the new count
    assert not limiter.oom("r1", -9, [])
    for control_file in (root / "trestle-r1").iterdir():  # cgroupfs removes a group with its files
        control_file.unlink()
    limiter.release("r1")
    assert not (root / "trestle-r1").exists()


def test_best_effort_pins_replicas_to_the_least_used_cores_and_reads_memory_errors() -> None:
    limiter = ResourceLimiter(None, cpu_count=4)
    assert limiter.mechanism is Mechanism.BEST_EFFORT
    assert "best effort" in limiter.banner()
    limiter.prepare("a", Limits(2, 1 << 30, "1Gi"))
    limiter.prepare("b", Limits(0.5, 1 << 30, "1Gi"))
    limiter.prepare("c", Limits(1, 1 << 30, "1Gi"))
    assert limiter._pinned == {"a": [0, 1], "b": [2], "c": [3]}
    limiter.release("a")
    limiter.prepare("d", Limits(2, 1 << 30, "1Gi"))
    assert limiter._pinned["d"] == [0, 1]
    assert limiter.oom("d", 1, ["Traceback ...", "MemoryError"])
    assert not limiter.oom("d", 1, ["ValueError: bad input"])
