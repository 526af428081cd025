from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config._support import WriteConfig


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write ``text`` as ``<tmp>/config.yaml`` and return the truss directory."""

    def write(text: str) -> Path:
        (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
        return tmp_path

    return write
