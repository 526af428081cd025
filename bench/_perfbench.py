"""The shared perfbench harness, used in place (server control, CPU accounting, its peers).

perfbench lives beside the repository (``../shared/perfbench``); ``$PERFBENCH_DIR`` overrides.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def perfbench_dir() -> Path:
    return Path(os.environ.get("PERFBENCH_DIR") or ROOT.parent / "shared" / "perfbench").resolve()


def runner() -> ModuleType:
    """perfbench's runner.py: ``Server`` (setsid start, pinned; stop by process tree), ``CpuProbe``,
    ``server_pids``."""
    d = perfbench_dir()
    if not (d / "runner.py").is_file():
        raise FileNotFoundError(f"perfbench not found at {d} (set PERFBENCH_DIR)")
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))
    return importlib.import_module("runner")
