"""Bulk file work (a push's upload, unpacking, hashing, removing old trees) in threads of lower priority.

A 1 GiB push is seconds of CPU (gzip, SHA-256, copies into the page cache). Run in the default worker
threads it competes on equal terms with the event loop that proxies every model's requests, and with
the replicas: on a two-core box another model's p99 went to 3-5x its idle value while a push ran. Linux
gives each thread its own nice value, so these threads lower theirs (``NICENESS``) once, when they
start: the scheduler then prefers the loop and the replicas, and the push takes what is left (raising
one's own nice value needs no privilege). Elsewhere (no per-thread nice) they run as any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

NICENESS = 10

P = ParamSpec("P")
T = TypeVar("T")


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICENESS)  # on Linux: this thread only


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trestle-bulk", initializer=_lower_priority)


async def in_bulk(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread`` for bulk work: ``fn`` runs in a low-priority thread."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))
