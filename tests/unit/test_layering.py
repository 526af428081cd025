"""The layering of docs/00-overview.md, checked on what Python really loads (lint-imports checks the source)."""

from __future__ import annotations

import subprocess
import sys

SERVER_PACKAGES = ("trestle.runtime", "trestle.http", "trestle.server")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_the_platform_and_the_cli_load_no_model_server_code() -> None:
    for statement in ("import trestle", "import trestle.platform.edge.app", "import trestle.cli.main"):
        loaded = _loaded_after(statement)
        leaked = [m for m in loaded if m.startswith(SERVER_PACKAGES)]
        assert leaked == [], (statement, leaked)


def test_disconnect_event_is_still_public_and_loads_the_runtime_on_first_use() -> None:
    loaded = _loaded_after("import trestle\nassert not trestle.disconnect_event().is_set()")
    assert "trestle.runtime.cancel" in loaded


def test_the_runtime_loads_no_http_framework() -> None:
    loaded = _loaded_after("import trestle.runtime")
    assert [m for m in loaded if m.startswith(("trestle.http", "trestle.server", "uvicorn"))] == []
    # contract's Request-annotation check imports starlette.requests; nothing of responses or routing
    assert "starlette.responses" not in loaded
