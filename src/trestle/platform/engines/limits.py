"""CPU and memory limits for the local engine's replicas (``resources.cpu`` / ``resources.memory``).

Two mechanisms, chosen once at platform start and named in its start banner:

* **cgroup v2** where the platform may manage cgroups: a cgroup per replica under a root that has the
  ``cpu`` and ``memory`` controllers for its children (``TRESTLE_CGROUP_ROOT``, else the platform's own
  cgroup, e.g. a systemd unit with ``Delegate=yes``), with ``cpu.max`` (the CPU count as a quota per
  100 ms period), ``memory.max`` and ``memory.swap.max 0``. The replica's process joins it before it
  runs anything (a pre-exec step), and a kill by the kernel for exceeding ``memory.max`` is read from
  ``memory.events`` (``oom_kill``).
* **best effort** otherwise: a CPU affinity set of ``ceil(cpu)`` cores (the least used first) and,
  for replicas without GPUs, ``RLIMIT_AS`` at the memory limit (CUDA reserves far more address space
  than it uses, so GPU replicas get no address-space limit). An allocation over the limit fails in the
  replica (``MemoryError``), which is reported as OOM.

Only limits a truss sets itself are applied: the defaults (``cpu: 1``, ``memory: 2Gi``) are Truss's
instance-size hints, and enforcing them would change what every existing truss can do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import os
import resource
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

CGROUP_ROOT_ENV = "TRESTLE_CGROUP_ROOT"
CPU_PERIOD_US = 100_000
_OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


class Mechanism(str, enum.Enum):
    CGROUP_V2 = "cgroup v2"
    BEST_EFFORT = "best effort (CPU affinity, RLIMIT_AS)"


@dataclasses.dataclass(frozen=True)
class Limits:
    cpu: float
    memory_bytes: int
    memory_text: str
    address_space: bool = True
    """Whether the best-effort mechanism may limit the address space (not for GPU replicas)."""


class CgroupWriter:
    """Makes and removes the per-replica cgroups under ``root`` (a cgroup v2 directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def usable(self) -> bool:
        """Whether ``root`` gives its children the cpu and memory controllers (enabling them if it can)."""
        try:
            control = self.root / "cgroup.subtree_control"
            enabled = set(control.read_text().split())
            if {"cpu", "memory"} <= enabled:
                return True
            available = set((self.root / "cgroup.controllers").read_text().split())
            if not {"cpu", "memory"} <= available:
                return False
            control.write_text("+cpu +memory")
            # cgroupfs answers "cpu memory"; a test's plain file keeps what was written
            return {"cpu", "memory"} <= {name.lstrip("+") for name in control.read_text().split()}
        except OSError:
            return False

    def path(self, replica_id: str) -> Path:
        return self.root / f"trestle-{replica_id}"

    def create(self, replica_id: str, limits: Limits) -> Path:
        group = self.path(replica_id)
        group.mkdir(exist_ok=True)
        quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
        (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}\n")
        (group / "memory.max").write_text(f"{limits.memory_bytes}\n")
        with contextlib.suppress(OSError):  # absent without swap accounting
            (group / "memory.swap.max").write_text("0\n")
        return group

    def oom_kills(self, replica_id: str) -> int:
        """``oom_kill`` in the replica cgroup's ``memory.events`` (0 when unreadable)."""
        try:
            text = (self.path(replica_id) / "memory.events").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self, replica_id: str) -> None:
        with contextlib.suppress(OSError):
            self.path(replica_id).rmdir()


class ResourceLimiter:
    """Applies ``Limits`` to replica processes with the mechanism this host allows."""

    def __init__(self, cgroups: CgroupWriter | None, cpu_count: int | None = None) -> None:
        self.cgroups = cgroups
        self.mechanism = Mechanism.CGROUP_V2 if cgroups is not None else Mechanism.BEST_EFFORT
        if cpu_count is not None:
            self.cpus = list(range(cpu_count))
        elif hasattr(os, "sched_getaffinity"):
            self.cpus = sorted(os.sched_getaffinity(0))
        else:  # no affinity on this OS (macOS): the memory limit only
            self.cpus = list(range(os.cpu_count() or 1))
        self._cpu_use: Counter[int] = Counter()
        self._pinned: dict[str, list[int]] = {}
        self._oom_before: dict[str, int] = {}

    @classmethod
    def detect(cls, environ: Mapping[str, str] = os.environ) -> ResourceLimiter:
        root = environ.get(CGROUP_ROOT_ENV) or _own_cgroup()
        if root:
            writer = CgroupWriter(Path(root))
            if writer.usable():
                return cls(writer)
        return cls(None)

    def banner(self) -> str:
        where = f" under {self.cgroups.root}" if self.cgroups is not None else ""
        return f"CPU/memory limits: {self.mechanism.value}{where}"

    def prepare(self, replica_id: str, limits: Limits) -> Callable[[], None]:
        """Set up ``replica_id``'s limits; returns the pre-exec step that puts a new process under them
        (it runs in the child between fork and exec, so it only makes system calls)."""
        if self.cgroups is not None:
            group = self.cgroups.create(replica_id, limits)
            self._oom_before[replica_id] = self.cgroups.oom_kills(replica_id)
            procs = str(group / "cgroup.procs")

            def join_cgroup() -> None:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, str(os.getpid()).encode())
                finally:
                    os.close(fd)

            return join_cgroup
        cpus = self._pinned.get(replica_id) or self._pin(replica_id, limits.cpu)
        memory = limits.memory_bytes if limits.address_space else None

        def best_effort() -> None:
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cpus)
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        return best_effort

    def _pin(self, replica_id: str, cpu: float) -> list[int]:
        wanted = max(1, min(len(self.cpus), math.ceil(cpu)))
        chosen = sorted(self.cpus, key=lambda core: (self._cpu_use[core], core))[:wanted]
        self._cpu_use.update(chosen)
        self._pinned[replica_id] = chosen
        return chosen

    def oom(self, replica_id: str, exit_code: int, last_lines: Iterable[str]) -> bool:
        """Whether the replica's process ended because it exceeded its memory limit."""
        if self.cgroups is not None:
            return self.cgroups.oom_kills(replica_id) > self._oom_before.get(replica_id, 0)
        return any(marker in line for line in last_lines for marker in _OOM_MARKERS)

    def after_exit(self, replica_id: str) -> None:
        """A process of the replica ended (it may be restarted): count later OOM kills from here."""
        if self.cgroups is not None:
            self._oom_before[replica_id] = self.cgroups.oom_kills(replica_id)

    def release(self, replica_id: str) -> None:
        """The replica is gone for good."""
        for core in self._pinned.pop(replica_id, []):
            self._cpu_use[core] -= 1
        self._oom_before.pop(replica_id, None)
        if self.cgroups is not None:
            self.cgroups.remove(replica_id)


def _own_cgroup() -> str | None:
    """The platform's cgroup v2 directory, when ``/sys/fs/cgroup`` is a cgroup v2 mount."""
    base = Path("/sys/fs/cgroup")
    if not (base / "cgroup.controllers").is_file():
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return str(base / line[3:].lstrip("/"))
    except OSError:
        return None
    return None
