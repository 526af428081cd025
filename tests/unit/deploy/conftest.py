"""Trusses for the deploy tests, and the golden-file helper.

Regenerate the golden files after an intended change with
``TRESTLE_UPDATE_GOLDEN=1 .venv/bin/pytest -p no:xdist tests/unit/deploy``, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.server import write_truss
from trestle.config import LoadedConfig, load_config

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TRESTLE_UPDATE_GOLDEN", "") not in ("", "0")

GPU_CONFIG = """\
model_name: Llama Chat
description: A chat model on two GPUs
python_version: py311
requirements:
  - torch==2.4.0
system_packages:
  - ffmpeg
environment_variables:
  LOG_LEVEL: info
  USE_FLASH: true
secrets:
  hf_access_token: null
  optional_key: fallback
resources:
  cpu: "4"
  memory: 16Gi
  accelerator: A10G:2
runtime:
  predict_concurrency: 8
  request_timeout_seconds: 120
  drain_timeout_seconds: 45
  health_checks:
    restart_check_delay_seconds: 60
    restart_threshold_seconds: 300
    stop_traffic_threshold_seconds: 20
    startup_threshold_seconds: 900
"""

CPU_CONFIG = "model_name: echo\npython_version: py311\n"

MODEL = "class Model:\n    def predict(self, x):\n        return x\n"


@pytest.fixture
def gpu_truss(tmp_path: Path) -> LoadedConfig:
    return load_config(write_truss(tmp_path / "llama", MODEL, GPU_CONFIG))


@pytest.fixture
def cpu_truss(tmp_path: Path) -> LoadedConfig:
    return load_config(write_truss(tmp_path / "echo", MODEL, CPU_CONFIG))


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``golden/<name>`` (or rewrite it when TRESTLE_UPDATE_GOLDEN is set)."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"{path} is missing: run with TRESTLE_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file (TRESTLE_UPDATE_GOLDEN=1 rewrites it)"
