"""ASGI plumbing shared by both stacks: reading a request body, watching for a disconnect.

A base module like ``errors`` and ``_types``: it knows nothing of models, the runtime or the
platform, so the model server (``trestle.http``) and the platform's gateway can both use it.
"""

from __future__ import annotations

from trestle.asgi.body import read_body
from trestle.asgi.disconnect import DisconnectWatch, WatchStarter

__all__ = ["DisconnectWatch", "WatchStarter", "read_body"]
