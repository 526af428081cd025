"""The model runtime: state, limits, cancellation and the stream pump, with no HTTP in it.

The public surface is :class:`ModelRuntime` and the interface types below (``docs/03-runtime.md``).
"""

from __future__ import annotations

from trestle.runtime.cancel import Cancellation, CancelReason, bind_task, disconnect_event
from trestle.runtime.inflight import InFlight
from trestle.runtime.interface import Call, Endpoint, Passthrough, Passthroughs, Result, Stream, Value
from trestle.runtime.model import FATAL, ModelRuntime, log_user_error
from trestle.runtime.state import Health, ModelState

__all__ = [
    "FATAL",
    "Call",
    "CancelReason",
    "Cancellation",
    "Endpoint",
    "Health",
    "InFlight",
    "ModelRuntime",
    "ModelState",
    "Passthrough",
    "Passthroughs",
    "Result",
    "Stream",
    "Value",
    "bind_task",
    "disconnect_event",
    "log_user_error",
]
