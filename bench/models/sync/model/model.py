"""Benchmark model, sync flavour: `def predict`, sync generators.

Inputs (a JSON or msgpack map):
  anything without "op"                    -> returned unchanged (echo; unary and 1 MB cells)
  {"op": "stream", "n": N, "delay": s}     -> sync generator of N chunks "chunk-NNNN\\n",
                                              sleeping `delay` seconds after each
  {"op": "sleep", "s": S}                  -> a long predict: sleeps S seconds, returns {"slept": S}
  {"op": "fail"}                           -> raises (HTTP 500)
  {"op": "version"}                        -> {"version": VERSION} (the platform's watch cell edits VERSION)
Any of these may carry "probe": ID; then the model writes <probes>/<ID>.start when it starts and
<ID>.end, holding `time.monotonic()` and "completed"/"cancelled", in its `finally`
(<probes> = $TRESTLE_BENCH_PROBES). The harness measures disconnect -> `finally` with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

PROBES = os.environ.get("TRESTLE_BENCH_PROBES", "")
VERSION = 1


def mark(probe: str | None, what: str, how: str = "") -> None:
    if not (PROBES and probe):
        return
    path = os.path.join(PROBES, f"{probe}.{what}")
    now = time.monotonic()
    with open(path + ".tmp", "w") as f:
        f.write(f"{now!r} {how}")
    os.replace(path + ".tmp", path)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        pass

    def load(self) -> None:
        pass

    def _chunks(self, n: int, delay: float, probe: str | None) -> Iterator[str]:
        how = "completed"
        mark(probe, "start")
        try:
            for i in range(n):
                yield f"chunk-{i:04d}\n"
                if delay:
                    time.sleep(delay)
        except GeneratorExit:
            how = "cancelled"
            raise
        finally:
            mark(probe, "end", how)

    def _sleep(self, seconds: float, probe: str | None) -> dict[str, float]:
        mark(probe, "start")
        try:
            time.sleep(seconds)
        finally:
            mark(probe, "end", "completed")
        return {"slept": seconds}

    def predict(self, model_input: dict[str, Any]) -> Any:
        op = model_input.get("op")
        if op is None:
            return model_input
        if op == "stream":
            return self._chunks(int(model_input["n"]), float(model_input.get("delay", 0)), model_input.get("probe"))
        if op == "sleep":
            return self._sleep(float(model_input["s"]), model_input.get("probe"))
        if op == "version":
            return {"version": VERSION}
        if op == "fail":
            raise ValueError("bench: failure requested")
        raise ValueError(f"bench: unknown op {op!r}")
