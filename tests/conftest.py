from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.ray_head import RayHead

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier from the folder it lives in."""
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        if parts and parts[0] in _TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, the loop the server uses."""
    return "asyncio"


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[RayHead]:
    """The run's one local Ray head (``tests/support/ray_head.py``), shared by every ray test of
    every xdist worker; skips without the ray extra."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    pytest.importorskip("psutil")
    from tests.support.ray_head import shared_head

    base = tmp_path_factory.getbasetemp()
    run_root = base.parent if worker_id != "master" else base
    with shared_head(run_root, worker_id) as head:
        yield head
