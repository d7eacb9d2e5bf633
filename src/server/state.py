"""What the HTTP app owns, typed: one ``AppState``, handed to every request by the lifespan.

``create_app`` builds it and its lifespan yields ``{"app": state}``; Starlette copies that
mapping into each request's (and WebSocket's) ``state``, so a route reads ``AppState.of(request)``
instead of attributes created on ``app.state`` on first use. The same object is ``app.services``
(``WorkerApp``), for the servers' own set-up and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from src.live.settings import LiveSettings
from src.server.settings import ServerSettings
from src.service.holder import ModelHolder
from src.service.slots import JobSlots


class LiveSessions:
    """The live sessions open in this process, against ``LiveSettings.max_sessions``."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self.open = 0

    def try_open(self) -> bool:
        if self.open >= self.settings.max_sessions:
            return False
        self.open += 1
        return True

    def close(self) -> None:
        self.open -= 1


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
