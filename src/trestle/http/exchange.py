"""One inference request and its response: :class:`Exchange`.

It holds what the server reads from the request (found in one pass over the headers), its id,
its cancellation and what has been sent so far. It is the runtime's ``Call``: model code that
annotates a ``fastapi.Request`` gets a starlette ``Request`` built from it, only then.
"""

from __future__ import annotations

import itertools
import os

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from trestle._types import Message, Receive, Scope, Send
from trestle.runtime import Cancellation, CancelReason, Passthroughs

JSON = b"application/json"
OCTET = b"application/octet-stream"

# What model code may return or raise that HTTP sends as it is.
STARLETTE = Passthroughs(responses=(Response,), streaming_responses=(StreamingResponse,), errors=(HTTPException,))

_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def new_request_id() -> bytes:
    """Unique per request: a random per-process prefix and a counter (cheaper than 16 random bytes)."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}".encode()


_TRACE_HEADERS = frozenset({b"traceparent", b"x-baseten-chain-request-id"})
"""Headers a Truss Chain passes between chainlets, logged once per request with its request id."""
_TRACE_MAX = 256


class Exchange:
    """One inference request: the headers that matter, its id and its response's progress."""

    __slots__ = (
        "scope",
        "receive",
        "send",
        "t0",
        "binary",
        "content_length",
        "accept",
        "user_agent",
        "rid",
        "request_id",
        "trace",
        "cancellation",
        "body",
        "started",
        "status",
        "_request",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, t0: float) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.t0 = t0
        self.binary = False
        self.content_length = -1
        self.accept = b""
        self.user_agent = b""
        rid = b""
        trace: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"content-type":
                self.binary = value.split(b";", 1)[0].strip().lower() == OCTET
            elif name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    pass
            elif name == b"accept":
                self.accept = value
            elif name == b"user-agent":
                self.user_agent = value
            elif name == b"x-baseten-request-id":
                rid = value
            elif name in _TRACE_HEADERS:
                trace.append(name + b"=" + value[:_TRACE_MAX])
        self.rid = rid or new_request_id()
        self.request_id = self.rid.decode("latin-1")
        self.trace = b" ".join(trace).decode("latin-1")
        """A chain's ``traceparent`` and ``x-baseten-chain-request-id``, as sent (empty for none)."""
        self.cancellation: Cancellation | None = None
        self.body = b""
        self.started = False  # after that, an error can only cut the connection
        self.status = 500
        self._request: Request | None = None

    @property
    def wants_gathered(self) -> bool:
        """Truss's rule: ``Accept: application/json`` (exactly) and no "openai" in the User-Agent."""
        return self.accept == JSON and b"openai" not in self.user_agent.lower()

    def disconnected(self) -> None:
        """The disconnect watch saw ``http.disconnect``."""
        if self.cancellation is not None:
            self.cancellation.cancel(CancelReason.DISCONNECT)

    def request(self) -> Request:
        """The starlette Request handed to model methods that annotate one."""
        request = self._request
        if request is None:
            cancellation = self.cancellation
            assert cancellation is not None
            scope = self.scope
            state = scope.get("state")
            if state is None:
                state = scope["state"] = {}
            state["watch_disconnect"] = cancellation.watch
            request = self._request = Request(scope, receive_after_body(cancellation))
            request._body = self.body
        return request


def receive_after_body(cancellation: Cancellation) -> Receive:
    """The ``receive`` model code sees once the body is consumed: it answers
    ``http.disconnect`` when (and only when) the request was cancelled."""

    async def receive() -> Message:
        if cancellation.reason is None:
            await cancellation.wait()
        return {"type": "http.disconnect"}

    return receive


__all__ = ["JSON", "OCTET", "STARLETTE", "Exchange", "new_request_id", "receive_after_body"]
