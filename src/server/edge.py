"""What the HTTP mode refuses before a route sees a request: the server's own limits.

``server_options()`` are the keyword arguments ``app.py`` gives ``uvicorn.Config``:

* HTTP/1.1 by h11, whose request line and headers together may hold ``MAX_HEADER_BYTES``: a
  longer head is refused with 431, and any request h11 cannot parse with 400, both as JSON in
  OpenAI's error shape (``JsonH11Protocol``; uvicorn's own answers are plain text);
* a head over that limit that arrives whole is refused by ``HeaderLimit`` (a middleware) with
  the same 431, a WebSocket handshake's too (``deny_websocket``: the ASGI WebSocket Denial
  Response extension; the realtime route's own refusals come after the handshake, as OpenAI's
  do: ``realtime.py``);
* a WebSocket handshake websockets cannot accept (no key, a header line over its 8 KiB) is
  refused in the same JSON (``JsonWebSocketProtocol``; uvicorn's answer is plain text);
* a socket the server has closed (a refusal, an idle timeout) read for ``AFTER_CLOSE_BYTES``
  at most before the client's close reply, then cut off;
* WebSocket frames never compressed (no permessage-deflate: inflating ran on the event loop,
  about 1000-fold for a frame of base64 silence);
* WebSocket frames of at most ``MAX_FRAME_BYTES`` (one 15 MiB append as base64), and at most
  ``WS_MAX_QUEUE`` frames buffered per socket, so a client that sends faster
  than its session reads is slowed by TCP instead of filling memory.

``PageFiles`` serves the web page and answers 405 (not 404) for a path that is an API route
under another method (``GET /v1/audio/transcriptions``). ``abort_downloads_on_exit`` ends the
downloads under way as soon as a shutdown begins, so a stalled URL cannot outlast the graceful
shutdown and leave its job's temp directory behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Response as WsResponse
from websockets.server import ServerProtocol
from websockets.typing import StatusLike

from src.audio.source import abort_downloads, resume_downloads
from src.server.realtime_events import MAX_APPEND_BYTES

logger = logging.getLogger(__name__)

#: the request line and headers of one request, together
MAX_HEADER_BYTES = 16 * 1024
#: the largest WebSocket frame: one ``MAX_APPEND_BYTES`` append as base64, with its JSON around
MAX_FRAME_BYTES = (MAX_APPEND_BYTES + 2) // 3 * 4 + 64 * 1024
#: frames a socket may have received and not yet handed to its session (uvicorn's queue)
WS_MAX_QUEUE = 2
#: bytes a socket the server has closed may still send before the close reply comes
AFTER_CLOSE_BYTES = 1024 * 1024
_HEADERS_TOO_LARGE = f"the request line and headers are over the limit of {MAX_HEADER_BYTES} bytes"


def _error_body(message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return json.dumps({"error": error}).encode()


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, its own refusals written as JSON errors in OpenAI's shape."""

    def send_400_response(self, msg: str) -> None:
        status, message = 400, "invalid HTTP request"
        if len(self.conn.trailing_data[0]) > MAX_HEADER_BYTES:
            status = 431
            message = _HEADERS_TOO_LARGE
        body = _error_body(message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = b"Request Header Fields Too Large" if status == 431 else b"Bad Request"
        for event in (
            h11.Response(status_code=status, headers=headers, reason=reason),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


class _JsonServerProtocol(ServerProtocol):
    """websockets' handshake, its refusals (a request that is not a valid upgrade, a header
    line over websockets' own limit) as JSON errors in OpenAI's shape instead of plain text."""

    def reject(self, status: StatusLike, text: str) -> WsResponse:
        response = super().reject(status, text)
        body = _error_body(text.strip() or HTTPStatus(status).phrase)
        for name in ("Content-Type", "Content-Length"):
            del response.headers[name]
        response.headers["Content-Type"] = "application/json"
        response.headers["Content-Length"] = str(len(body))
        response.body = body
        return response


class JsonWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (the one it picks by itself), its handshake refusals as
    JSON (``_JsonServerProtocol``), and a socket the server has closed read no further than
    ``AFTER_CLOSE_BYTES``: uvicorn reads (and parses, on the event loop) whatever the client
    sends until its close reply, for up to 10 s, so a client refused at once (a session cap)
    could push frames all that while, and reconnect to do it again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _JsonServerProtocol(
            extensions=self.conn.available_extensions,
            max_size=self.conn.max_size,
            logger=self.conn.logger,
        )
        self.after_close = 0

    def data_received(self, data: bytes) -> None:
        if self.close_sent and self.initial_response is None:
            self.after_close += len(data)
            if self.after_close > AFTER_CLOSE_BYTES:
                # the client did not answer the close and keeps sending: it is cut off
                # (it has had the server's last events and close frame already)
                self.transport.close()
                return
        super().data_received(data)


def server_options() -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments that set the limits above."""
    return {
        "http": JsonH11Protocol,
        "ws": JsonWebSocketProtocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "ws_max_size": MAX_FRAME_BYTES,
        # no permessage-deflate: a client could send a frame that inflates 1000-fold (12 MB of
        # base64 silence from about 12 KB), and uvicorn inflates on the event loop (measured:
        # the loop's busiest stack under the soak's floods); audio compresses little anyway
        "ws_per_message_deflate": False,
        "ws_max_queue": WS_MAX_QUEUE,
    }


class HeaderLimit:
    """431 for a request whose path, query and headers together pass ``MAX_HEADER_BYTES``
    (h11 bounds a head that arrives in pieces; one that arrives whole is measured here)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > MAX_HEADER_BYTES:
                if scope["type"] == "websocket":
                    await deny_websocket(scope, receive, send, 431, _HEADERS_TOO_LARGE)
                    return
                response = Response(
                    _error_body(_HEADERS_TOO_LARGE), status_code=431, media_type="application/json"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def deny_websocket(
    scope: Scope, receive: Receive, send: Send, status: int, message: str
) -> None:
    """Refuse a WebSocket handshake with an HTTP answer: ``status`` and OpenAI's error object
    (``{"error": {"message", "type", "param", "code"}}``), by the ASGI WebSocket Denial Response
    extension (uvicorn has it). A server without it can only close the handshake, which its
    clients see as a 403 without a body."""
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        denial = Response(_error_body(message), status_code=status, media_type="application/json")
        await websocket.send_denial_response(denial)
    else:
        await websocket.close(1008)


class PageFiles(StaticFiles):
    """The page's static files; a miss on a path an API route serves with other methods is a
    405 naming them in ``Allow``, and a WebSocket handshake on any of their paths is a 404 in
    OpenAI's error shape (Starlette's own answer is a bare 403)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            message = "no WebSocket is served at this path (the live socket is /v1/realtime)"
            await deny_websocket(scope, receive, send, 404, message)
            return
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as e:
            allowed = _methods_for(scope) if e.status_code == 404 else set()
            if not allowed:
                raise
            raise HTTPException(
                405, "method not allowed", headers={"Allow": ", ".join(sorted(allowed))}
            ) from None


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _methods_for(scope: Scope) -> set[str]:
    """The methods the app's routes (not the page's mount) serve at this request's path."""
    routes = [r for r in getattr(scope.get("app"), "routes", ()) if not isinstance(r, Mount)]
    methods: set[str] = set()
    for method in _METHODS:
        probe = {**scope, "type": "http", "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            methods.add(method)
    return methods


async def abort_downloads_on_exit(servers: Sequence[uvicorn.Server], poll: float = 0.2) -> None:
    """Wait until any of ``servers`` begins to shut down, then end the downloads under way
    and refuse new ones until this task is cancelled (when the servers have returned: a
    process that serves again, as tests do, downloads again)."""
    resume_downloads()
    try:
        while not any(server.should_exit for server in servers):
            await asyncio.sleep(poll)
        await asyncio.to_thread(abort_downloads)
        await asyncio.Event().wait()
    finally:
        resume_downloads()
