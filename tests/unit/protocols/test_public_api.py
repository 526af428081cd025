from __future__ import annotations

import types

import trestle.protocols

SUBMODULES = {"anthropic", "builders", "openai", "sse"}


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(trestle.protocols).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert sorted(set(trestle.protocols.__all__) - SUBMODULES) == sorted(public)
    assert all(isinstance(getattr(trestle.protocols, name), types.ModuleType) for name in SUBMODULES)


def test_importing_the_helpers_does_not_import_the_server() -> None:
    import json
    import subprocess
    import sys

    code = "import json, sys, trestle.protocols; print(json.dumps([m for m in sys.modules if 'trestle.' in m]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert not [m for m in loaded if m.split(".")[1] in ("http", "server", "cli", "platform", "contract")], loaded
