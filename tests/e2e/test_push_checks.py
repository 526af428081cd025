"""What ``trestle push`` checks on the platform's host, and ``push --tail``."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import PYTHON, Platform, last_json
from tests.support.trusses import make_truss

MISSING = "trestle-no-such-package"

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="no dpkg-query on this machine")


@needs_dpkg
def test_missing_system_packages_are_a_warning_or_with_strict_a_refusal(platform: Platform, tmp_path: Path) -> None:
    truss = make_truss(tmp_path / "sys", "needs-debs", config=f"system_packages:\n  - coreutils\n  - {MISSING}\n")
    dep = last_json(platform.cli("push", "--output", "json", cwd=truss))
    assert dep["status"] == "ACTIVE"
    assert len(dep["warnings"]) == 1
    assert dep["warnings"][0].startswith(f"system_packages not installed on the platform host: {MISSING} ")
    refused = platform.run_cli("push", "--strict", cwd=truss)
    assert refused.returncode == 1
    assert f"system_packages not installed on the platform host: {MISSING}" in refused.stderr
    assert "refused because of --strict" in refused.stderr


def test_push_tail_streams_the_whole_log_then_follows_it(platform: Platform, tmp_path: Path) -> None:
    model = (
        "class Model:\n    def load(self):\n        print('loading the tailed model', flush=True)\n\n"
        "    def predict(self, x):\n        return x\n"
    )
    truss = make_truss(tmp_path / "tail", "tailed", model)
    proc = subprocess.Popen(
        [PYTHON, "-m", "trestle", "push", "--tail"],
        cwd=truss,
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            seen.append(line)
            if "Following the deployment's log" in line or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(seen)
    assert "[build] building environment" in text or "[build] reusing environment" in text
    assert "loading the tailed model" in text  # the replica's own output, not only the build's
    assert "is ACTIVE" in text
