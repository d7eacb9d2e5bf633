"""The optional API key: with ``API_KEY`` set, every route but ``/ping`` and the web page's
static files needs it (the API docs ``/docs`` and ``/openapi.json`` included: ``protect_docs``).

HTTP routes take it as ``Authorization: Bearer <key>`` (what the ``openai`` SDKs send). The
realtime socket takes the same header or the ``openai-insecure-api-key.<key>`` subprotocol that
browsers use (``realtime.py``); never a query parameter, since query strings end up in the logs
of proxies and load balancers. Keys are compared in constant time. On RunPod the platform checks
its own key in front of the worker; this one is for self-hosting.

The page (``/``, its scripts and styles) is public: it holds no data and asks for the key.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, Request, WebSocket
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from src.server.errors import Unauthorized, api_error
from src.server.state import AppState


def _expected(connection: HTTPConnection) -> str | None:
    return AppState.of(connection).settings.api_key


def _bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: raises ``Unauthorized`` (401) unless the request carries the key."""
    expected = _expected(request)
    if expected is not None and not key_matches(_bearer(request), expected):
        raise Unauthorized()


def check_websocket(websocket: WebSocket) -> bool:
    """Whether a WebSocket's ``Authorization: Bearer`` header carries the key (or none is set)."""
    expected = _expected(websocket)
    return expected is None or key_matches(_bearer(websocket), expected)


def protect_docs(app: FastAPI) -> None:
    """Put FastAPI's own documentation routes (``/docs``, ``/openapi.json``, the OAuth2
    redirect) behind the key, as every other route; call once the app is built."""
    paths = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}
    for route in app.routes:
        if isinstance(route, Route) and route.path in paths:
            route.app = _keyed(route.app)


def _keyed(inner: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        expected = _expected(connection)
        if expected is not None and not key_matches(_bearer(connection), expected):
            await api_error(Unauthorized()).response()(scope, receive, send)
            return
        await inner(scope, receive, send)

    return app
