"""CPU time and memory of replica processes on this host, read from ``/proc`` (Linux; elsewhere, or for
a process that is gone, nothing). Blocking file reads: call it in a thread."""

from __future__ import annotations

import os
from collections.abc import Iterable

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used so far, user + system; resident memory in bytes) of ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)
        rss = int(statm.split()[1]) * _PAGE
    except (IndexError, ValueError):
        return None
    return cpu, rss


def usage_of(pids: Iterable[int]) -> dict[int, tuple[float, int]]:
    out: dict[int, tuple[float, int]] = {}
    for pid in pids:
        found = process_usage(pid)
        if found is not None:
            out[pid] = found
    return out
