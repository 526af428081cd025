"""Trestle: serve Truss models, fast.

Model code may use :func:`disconnect_event` to learn that the client of the current request has
left (or that it timed out): it works in sync methods (worker threads) and async ones.
"""

from __future__ import annotations

from trestle.runtime.cancel import disconnect_event

__version__ = "0.1.0"

__all__ = ["__version__", "disconnect_event"]
