"""Trestle: serve Truss models, fast.

Model code may use :func:`disconnect_event` to learn that the client of the current request has
left (or that it timed out): it works in sync methods (worker threads) and async ones, and
:func:`batched` to have concurrent requests served by one call of a method written for a list.

This module stays light: the platform and the CLI import it, and neither should load the model
runtime, so ``disconnect_event`` and ``batched`` are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "batched", "disconnect_event"]

if TYPE_CHECKING:
    from trestle.batching import batched
    from trestle.runtime.cancel import disconnect_event


def __getattr__(name: str) -> Any:
    if name == "disconnect_event":
        from trestle.runtime.cancel import disconnect_event

        return disconnect_event
    if name == "batched":
        from trestle.batching import batched

        return batched
    raise AttributeError(f"module 'trestle' has no attribute {name!r}")
