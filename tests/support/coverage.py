"""The e2e and bench tiers' subprocesses (platforms, replicas, CLI runs, a Ray head and its workers,
benchmark servers) run without coverage's tracer.

``[tool.coverage.run] patch = ["subprocess"]`` makes every Python child of a ``--cov`` run trace itself,
which costs those tiers about a third of their time (they are CPU-bound on two cores). Coverage still
follows the unit and integration tiers' servers, where the model server's lines are measured; the
platform's are measured by its in-process tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

TRACER_VARIABLES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
"""What coverage's subprocess patch puts in the environment for children to start tracing."""


def untraced(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that make a Python child trace itself."""
    return {key: value for key, value in env.items() if key not in TRACER_VARIABLES}


@contextmanager
def untraced_environ() -> Iterator[None]:
    """``os.environ`` without them while the block runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in TRACER_VARIABLES:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module", autouse=True)
def untraced_subprocesses() -> Iterator[None]:
    """Autouse where a conftest imports it: the e2e and bench tiers."""
    with untraced_environ():
        yield
