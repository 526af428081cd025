"""Trestle: serve Truss models, fast."""

from __future__ import annotations

__version__ = "0.1.0"
