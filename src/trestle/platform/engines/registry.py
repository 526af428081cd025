"""Engines by name: ``trestle platform start --engine NAME`` picks one from here.

A factory takes the ``EngineContext`` and returns an ``Engine``; it imports its engine's module
itself, so an engine with heavy or optional dependencies (Ray) costs nothing until it is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

from trestle.platform.engines.base import Engine, EngineContext
from trestle.platform.errors import InvalidRequest

EngineFactory = Callable[[EngineContext], Engine]

DEFAULT_ENGINE = "local"

_FACTORIES: dict[str, EngineFactory] = {}


def register(name: str, factory: EngineFactory) -> None:
    """Make an engine available by ``name`` (a later registration under the same name wins)."""
    _FACTORIES[name] = factory


def names() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, context: EngineContext) -> Engine:
    """The engine registered as ``name``, made with ``context``."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InvalidRequest(f"unknown engine {name!r}: choose one of {', '.join(names())}")
    return factory(context)


def _local(context: EngineContext) -> Engine:
    from trestle.platform.engines.local import LocalEngine

    return LocalEngine(context)


def _ray(context: EngineContext) -> Engine:
    """Published deployments on Ray, the development deployment on this host (``split.py``)."""
    from trestle.platform.engines.local import LocalEngine
    from trestle.platform.engines.ray import create
    from trestle.platform.engines.split import SplitEngine

    return SplitEngine(cluster=create(context), local=LocalEngine(context))


register("local", _local)
register("ray", _ray)
