"""Object ids in each vendor's style (``chatcmpl-...``, ``msg_...``, ``resp_...``, ``call_...``)."""

from __future__ import annotations

import uuid


def new_id(prefix: str) -> str:
    """``prefix`` followed by 32 random hex digits, e.g. ``new_id("chatcmpl-")``."""
    return prefix + uuid.uuid4().hex
