"""The HTTP mode's app factory and entry point (``WORKER_MODE=http python handler.py``).

``create_app(settings: ServerSettings | None = None, processor_factory=...) -> WorkerApp``
    ``settings`` defaults to ``ServerSettings.from_env()`` (``src/server/settings.py``);
    ``processor_factory`` is a zero-argument callable returning a loaded, warmed
    ``WhisperProcessor`` (default: ``WhisperProcessor.from_settings(settings.worker)``). The app's
    lifespan starts the load in a background thread and returns at once, so the port opens and
    ``/ping`` answers 204 until the model is in.

What the app owns is one typed ``AppState`` (``src/server/state.py``): the settings, the model
holder (``src/service/holder.py``), the file requests' admission and places
(``src/service/slots.py``) and the live sessions' count. The lifespan hands it to every request
(``AppState.of(request)``); ``app.services`` is the same object.

Auth: ``src.server.auth.require_api_key`` is a FastAPI dependency (checks ``Authorization:
Bearer`` against ``API_KEY`` in constant time, 401 in OpenAI's error shape).

Routers: the OpenAI routes (``openai_routes.py``), the native job route (``native.py``), ``/ping``
(``health.py``) when ``PORT_HEALTH == PORT``, ``src.server.realtime.router``, and
``src/server/static/`` mounted at ``/`` (``index.html``) last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from src.live.settings import LiveSettings
from src.server import edge, health, native, openai_routes, realtime
from src.server.auth import protect_docs
from src.server.errors import install_handlers
from src.server.settings import ServerSettings
from src.server.state import AppState, LiveSessions, WorkerApp
from src.service.holder import ModelHolder, ProcessorFactory
from src.service.processor import WhisperProcessor
from src.service.slots import JobSlots

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: seconds a shutdown waits for requests under way
GRACEFUL_SHUTDOWN_SECONDS = 30
#: seconds an idle keep-alive connection stays open
KEEP_ALIVE_SECONDS = 75


def create_app(
    settings: ServerSettings | None = None,
    processor_factory: ProcessorFactory | None = None,
    live: LiveSettings | None = None,
) -> WorkerApp:
    """The HTTP mode's app (see the module docstring for the state it owns)."""
    settings = settings or ServerSettings.from_env()
    worker_settings = settings.worker
    factory = processor_factory or (lambda: WhisperProcessor.from_settings(worker_settings))
    holder = ModelHolder(factory, settings.model_idle_timeout)
    state = AppState(
        settings=settings,
        model=holder,
        slots=JobSlots(settings.max_queue, worker_settings.max_concurrent_jobs),
        live=LiveSessions(live or LiveSettings.from_env()),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # in the background: the port opens at once and /ping answers 204 until the model is in
        holder.start_loading()
        yield {"app": state}
        await holder.close()
        logger.info("HTTP mode: shut down")

    app = WorkerApp(
        title="whisper-worker",
        summary="Whisper speech-to-text: OpenAI's audio API, the worker's native jobs, a page",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.services = state
    install_handlers(app)
    if settings.port_health == settings.port:
        app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(native.router)
    app.include_router(realtime.router)
    app.mount("/", edge.PageFiles(directory=STATIC_DIR, html=True), name="page")
    protect_docs(app)
    app.add_middleware(edge.HeaderLimit)
    return app


def _server(
    app: FastAPI, host: str, port: int, forwarded_allow_ips: str | None = None
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        # logging is the worker's (src/logging_setup.py); uvicorn's access log would write
        # query strings (a WebSocket's api_key) and is replaced by one line per request
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # longer than clients keep an idle connection (httpx: 5 s), so the client closes first
        # and never sends a request on a connection the server is closing
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # the client is the connection's peer unless FORWARDED_ALLOW_IPS names the proxies
        # whose X-Forwarded-For is believed (uvicorn's own default trusts loopback's: a local
        # client could pose as any other, e.g. to pass LIVE_MAX_SESSIONS_PER_CLIENT)
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips or "",
        # header size, JSON 400s, WebSocket frame size and queue (src/server/edge.py)
        **edge.server_options(),
    )
    return uvicorn.Server(config)


def build_servers(app: WorkerApp) -> list[uvicorn.Server]:
    """The uvicorn servers for ``app``: ``PORT`` and, when it differs, ``/ping`` alone on
    ``PORT_HEALTH`` (both in one event loop, sharing the app's state)."""
    settings = app.services.settings
    servers = [_server(app, settings.host, settings.port, settings.forwarded_allow_ips)]
    if settings.port_health != settings.port:
        ping_app = health.health_app(app.services)
        servers.append(_server(ping_app, settings.host, settings.port_health))
    return servers


async def run_servers(app: WorkerApp, servers: list[uvicorn.Server] | None = None) -> None:
    """Serve until a signal (or ``should_exit`` on the servers) stops them."""
    settings = app.services.settings
    servers = servers or build_servers(app)
    logger.info(
        "HTTP mode: port %d, /ping on %d, model %s, %d jobs at once, queue %d",
        settings.port,
        settings.port_health,
        settings.worker.model,
        settings.worker.max_concurrent_jobs,
        settings.max_queue,
    )
    # a shutdown ends downloads under way at once (a stalled URL would outlast it)
    watcher = asyncio.create_task(edge.abort_downloads_on_exit(servers))
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        watcher.cancel()


def serve() -> None:
    """``WORKER_MODE=http``: read the settings, build the app, serve until stopped."""
    asyncio.run(run_servers(create_app(ServerSettings.from_env())))
