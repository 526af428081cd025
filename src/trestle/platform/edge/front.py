"""The platform port's protocol: the guarded httptools protocol (``trestle.asgi.connections``: head and
body limits, deadlines, the connection cap) that relays plain gateway calls itself (``relay.py``) and
hands everything else to the ASGI app, request by request on the same connection.

Why: through uvicorn's ASGI cycle a proxied request paid for a task, a scope, message dicts, an
``asyncio.Event`` and the app's ``send``/``receive`` awaits on top of the proxying; that was most of the
gateway's cost once its upstream client was lean (docs/07-platform.md, "Where the gateway's time goes").
Here the head is parsed once (by the same parser and limits as before), and a relayed request costs a
few callbacks: the head written upstream, the answer written back per read.

The seam is ``Dispatch``: given the parsed head, the platform either starts a relay (its key, route,
replica and a pooled connection were all ready) or returns None, and the request goes to ASGI exactly as
it would have without this protocol. A relay becomes the connection's ``cycle``, so keep-alive,
pipelining, shutdown, the connection cap and the limits' deadlines treat it as uvicorn's own.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trestle.asgi.connections import GuardedHttpToolsProtocol
from trestle.asgi.limits import ConnectionLimits, connection_cap
from trestle.platform.edge.relay import Relay


class Dispatch(Protocol):
    def relay(
        self, front: GatewayFront, method: str, url: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> Relay | None:
        """A started relay for this request, or None: it goes to the ASGI app."""


def front_protocol(limits: ConnectionLimits, dispatch: Dispatch, fds_per_connection: int = 2) -> type[GatewayFront]:
    """A protocol class for ``uvicorn.Config(http=...)``: ``limits`` enforced, ``dispatch`` tried first."""
    return type(
        "GatewayFrontProtocol",
        (GatewayFront,),
        {"limits": limits, "cap": connection_cap(limits, fds_per_connection), "dispatch": dispatch},
    )


class GatewayFront(GuardedHttpToolsProtocol):
    dispatch: ClassVar[Dispatch]

    def on_headers_complete(self) -> None:
        self.check_head()
        existing = self.cycle
        if (
            (existing is None or existing.response_complete)  # not pipelined behind a running request
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
            and self.parser.get_http_version() == "1.1"
        ):
            method = self.parser.get_method().decode("ascii")
            relay = self.dispatch.relay(self, method, self.url, self.headers, self.parser.should_keep_alive())
            if relay is not None:
                self.cycle = relay  # type: ignore[assignment]  # it has the attributes uvicorn reads
                return
        HttpToolsProtocol.on_headers_complete(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle: object = self.cycle
        if type(cycle) is Relay:
            cycle.send()  # a body still arriving: what this read brought

    def on_body(self, body: bytes) -> None:
        cycle: object = self.cycle
        if type(cycle) is Relay:
            cycle.request_body(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: object = self.cycle
        if type(cycle) is Relay:
            cycle.request_complete()
        else:
            super().on_message_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        cycle: object = self.cycle
        if type(cycle) is Relay:
            cycle.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        cycle: object = self.cycle
        if type(cycle) is Relay:
            cycle.resume()


def parse_target(url: bytes) -> tuple[str, bytes] | None:
    """An origin-form request target's (path, query), or None for anything the ASGI path should read: an
    absolute or asterisk form, or a path that needs decoding (``%``)."""
    raw, _, query = url.partition(b"?")
    if not raw.startswith(b"/") or b"%" in raw or b"#" in url:
        return None
    try:
        return raw.decode("ascii"), query
    except UnicodeDecodeError:
        return None
