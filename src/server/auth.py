"""The optional API key: with ``API_KEY`` set, every route but ``/ping`` needs it.

HTTP routes take it as ``Authorization: Bearer <key>`` (what the ``openai`` SDKs send). A
WebSocket may also give it as the ``api_key`` query parameter, since browsers cannot set
headers on one. Keys are compared in constant time. On RunPod the platform checks its own key
in front of the worker; this one is for self-hosting.
"""

from __future__ import annotations

import hmac

from fastapi import Request, WebSocket
from starlette.requests import HTTPConnection

from src.server.errors import Unauthorized
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
    """Whether a WebSocket may proceed: the bearer header, or the ``api_key`` query parameter."""
    expected = _expected(websocket)
    if expected is None:
        return True
    given = _bearer(websocket) or websocket.query_params.get("api_key")
    return key_matches(given, expected)
