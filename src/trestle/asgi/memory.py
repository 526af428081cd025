"""Memory that only Python's cycle collector gives back, given back soon after an attack.

A websocket closed because a message inflated past the size limit (close code 1009) leaves what the
websocket library had inflated, up to the limit per socket, in reference cycles: the error's traceback
holds the frames that hold the buffer. A quiet server may not run a full collection for a long time,
so 4 such sockets kept 64 MiB each round and the platform grew by that much per round until a
collection happened to run (``bench/attacks.py``; one collection a second after the close brings it
back to where it was). ``collect_soon`` runs that collection, at most one per ``delay``.
"""

from __future__ import annotations

import asyncio
import gc
import time

from trestle._types import Message

MESSAGE_TOO_BIG = 1009
DELAY_SECONDS = 1.0

_due = 0.0  # when the pending collection runs (monotonic); none is pending once it has passed


def collect_soon(delay: float = DELAY_SECONDS) -> bool:
    """Schedule one full collection ``delay`` s from now on the running loop, unless one is pending.
    True when this call scheduled it."""
    global _due
    now = time.monotonic()
    if now < _due:
        return False
    _due = now + delay
    asyncio.get_running_loop().call_later(delay, gc.collect)
    return True


def after_oversized_message(message: Message) -> None:
    """Call with each message a websocket app receives: a 1009 disconnect schedules the collection."""
    if message["type"] == "websocket.disconnect" and message.get("code") == MESSAGE_TOO_BIG:
        collect_soon()


__all__ = ["DELAY_SECONDS", "MESSAGE_TOO_BIG", "after_oversized_message", "collect_soon"]
