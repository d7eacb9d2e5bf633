"""What the HTTP app owns, typed: one ``AppState``, handed to every request by the lifespan.

``create_app`` builds it and its lifespan yields ``{"app": state}``; Starlette copies that
mapping into each request's (and WebSocket's) ``state``, so a route reads ``AppState.of(request)``
instead of attributes created on ``app.state`` on first use. The same object is ``app.services``
(``WorkerApp``), for the servers' own set-up and for tests.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from src.live.settings import LiveSettings
from src.server.settings import ServerSettings
from src.service.holder import ModelHolder
from src.service.slots import JobSlots

#: why a live session was refused: the process's cap, or the client's own
SessionLimit = Literal["server", "client"]


def client_key(host: str | None) -> str:
    """Whom a connection counts against for ``LIVE_MAX_SESSIONS_PER_CLIENT``: its IPv4 address,
    or its IPv6 /64 (one machine is usually given a whole /64 and may pick any address in it);
    ``host`` is the peer uvicorn reports, already taken from ``X-Forwarded-For`` when the peer is
    a proxy ``FORWARDED_ALLOW_IPS`` trusts."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LiveSessions:
    """The live sessions open in this process, against ``LiveSettings.max_sessions`` in all and
    ``LiveSettings.per_client`` for each client (``client_key``)."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self.by_client: Counter[str] = Counter()

    @property
    def open(self) -> int:
        """The sessions open now, all clients together."""
        return self.by_client.total()

    def try_open(self, client: str = "unknown") -> SessionLimit | None:
        """Count a session for ``client``; the limit that refuses it instead, if any."""
        if self.open >= self.settings.max_sessions:
            return "server"
        if self.by_client[client] >= self.settings.per_client:
            return "client"
        self.by_client[client] += 1
        return None

    def close(self, client: str = "unknown") -> None:
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


@dataclass
class AppState:
    #: the settings read at start-up (a test may swap them: routes read them per request)
    settings: ServerSettings
    #: the one model of the process (load in the background, leases, idle unload)
    model: ModelHolder
    #: file requests: admission (``MAX_QUEUE``) and the ``MAX_CONCURRENT_JOBS`` places
    slots: JobSlots
    #: the open live sessions (``LIVE_MAX_SESSIONS``)
    live: LiveSessions

    @classmethod
    def of(cls, connection: HTTPConnection) -> AppState:
        """The app's state, from a request or a WebSocket (set by the app's lifespan)."""
        state: AppState = connection.state.app
        return state


class WorkerApp(FastAPI):
    """The HTTP mode's app: a FastAPI app with its ``AppState`` as ``services``."""

    services: AppState
