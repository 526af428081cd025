from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where test models write marker files (started, finally ran, cancelled, ...)."""
    return tmp_path_factory.mktemp("markers")
