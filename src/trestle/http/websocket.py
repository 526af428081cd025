"""``/v1/websocket``: the model's async ``websocket(ws)`` method over a starlette WebSocket."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from trestle._types import Message, Receive, Scope, Send
from trestle.asgi.memory import after_oversized_message
from trestle.runtime import FATAL, ModelRuntime, log_user_error

logger = logging.getLogger("trestle.http")

NOT_IMPLEMENTED = "WebSocket is not implemented on this deployment."
INTERNAL_ERROR = "Internal Server Error (in model/chainlet)."


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state is WebSocketState.DISCONNECTED or ws.client_state is WebSocketState.DISCONNECTED:
        return
    try:
        await ws.close(code=code, reason=reason)
    except RuntimeError:  # already closed by the model: duplicate closes are tolerated
        pass


async def serve_websocket(runtime: ModelRuntime, scope: Scope, receive: Receive, send: Send) -> None:
    async def receive_watched() -> Message:
        message = await receive()
        after_oversized_message(message)
        return message

    ws = WebSocket(scope, receive_watched, send)
    if scope["path"] != "/v1/websocket":
        await ws.close(code=1008, reason="Not Found")
        return
    if not runtime.health.ready:
        await ws.close(code=1013, reason="Model is not ready.")  # rejects the handshake (HTTP 403)
        return
    method = runtime.websocket()
    await ws.accept()
    if method is None:
        logger.error(NOT_IMPLEMENTED)
        await _close(ws, 1003, NOT_IMPLEMENTED)
        return
    try:
        await method(ws)
    except WebSocketDisconnect:
        logger.info("Client disconnected from the websocket.")
        return
    except FATAL:
        raise
    except BaseException as exc:
        log_user_error(exc)
        await _close(ws, 1011, INTERNAL_ERROR)
        return
    await _close(ws, 1000)
