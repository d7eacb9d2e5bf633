"""The HTTP mode's app factory and entry point (``WORKER_MODE=http python handler.py``).

Contract for the other parts of ``src/server/`` (the realtime socket, the web page):

``create_app(settings: ServerSettings | None = None, processor_factory=...) -> FastAPI``
    ``settings`` defaults to ``ServerSettings.from_env()`` (``src/server/settings.py``);
    ``processor_factory`` is a zero-argument callable returning a loaded, warmed
    ``WhisperProcessor`` (default: ``WhisperProcessor.from_settings(settings.worker)``). The app's
    lifespan starts the load in a background thread and returns at once, so the port opens and
    ``/ping`` answers 204 until the model is in.

Shared state, on ``app.state``:

``app.state.settings``  ``ServerSettings``: ``port``, ``port_health``, ``max_queue``,
    ``model_idle_timeout`` (seconds or None), ``api_key`` (str or None), ``worker``
    (``src.config.Settings``: model, download limits, ...).
``app.state.model``     ``ModelHolder`` (``src/server/model.py``), the one model of the process:
    ``.state``: "unloaded" | "loading" | "ready" | "failed"; ``.ready``: bool (what /ping says);
    ``async with app.state.model.use() as processor:`` loads the model if it is not loaded
    (idle unload), waits for it, and keeps it loaded while the block runs (the idle timer only
    counts time with no user); raises ``ModelError`` when loading failed. A live session may hold
    one ``use()`` for its whole life, or one per decode; ``processor.decode_samples`` has priority
    over file decodes inside the processor.
``app.state.scheduler`` ``Scheduler`` (``src/server/scheduler.py``): the bounded FIFO of file
    requests (``MAX_QUEUE``) in front of the model; live sessions do not go through it.

Auth: ``src.server.auth.require_api_key`` is a FastAPI dependency (checks ``Authorization:
Bearer`` against ``API_KEY`` in constant time, 401 in OpenAI's error shape); a WebSocket route
can call ``src.server.auth.check_websocket(websocket)`` which accepts the bearer header or the
``api_key`` query parameter (browsers cannot set headers on a WebSocket).

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
from typing import Literal

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from src.processor import WhisperProcessor
from src.server import health, native, openai_routes, realtime
from src.server.errors import install_handlers
from src.server.model import ModelHolder, ProcessorFactory
from src.server.scheduler import Scheduler
from src.server.settings import ServerSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: seconds a shutdown waits for requests under way
GRACEFUL_SHUTDOWN_SECONDS = 30
#: seconds an idle keep-alive connection stays open
KEEP_ALIVE_SECONDS = 75


def create_app(
    settings: ServerSettings | None = None,
    processor_factory: ProcessorFactory | None = None,
) -> FastAPI:
    """The HTTP mode's app (see the module docstring for the state it shares)."""
    settings = settings or ServerSettings.from_env()
    worker_settings = settings.worker
    factory = processor_factory or (lambda: WhisperProcessor.from_settings(worker_settings))
    holder = ModelHolder(factory, settings.model_idle_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # in the background: the port opens at once and /ping answers 204 until the model is in
        holder.start_loading()
        yield
        await holder.close()
        logger.info("HTTP mode: shut down")

    app = FastAPI(
        title="whisper-worker",
        summary="Whisper speech-to-text: OpenAI's audio API, the worker's native jobs, a page",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.model = holder
    app.state.scheduler = Scheduler(settings.max_queue)
    install_handlers(app)
    if settings.port_health == settings.port:
        app.include_router(health.router)
    app.include_router(openai_routes.router)
    app.include_router(native.router)
    app.include_router(realtime.router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page")
    return app


def _server(app: FastAPI, host: str, port: int, lifespan: Literal["on", "off"]) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan=lifespan,
        # logging is the worker's (src/logging_setup.py); uvicorn's access log would write
        # query strings (a WebSocket's api_key) and is replaced by one line per request
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # longer than clients keep an idle connection (httpx: 5 s), so the client closes first
        # and never sends a request on a connection the server is closing
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return uvicorn.Server(config)


def build_servers(app: FastAPI) -> list[uvicorn.Server]:
    """The uvicorn servers for ``app``: ``PORT`` and, when it differs, ``/ping`` alone on
    ``PORT_HEALTH`` (both in one event loop, sharing the model holder)."""
    settings: ServerSettings = app.state.settings
    servers = [_server(app, settings.host, settings.port, "on")]
    if settings.port_health != settings.port:
        ping_app = health.health_app(app.state.model)
        servers.append(_server(ping_app, settings.host, settings.port_health, "off"))
    return servers


async def run_servers(app: FastAPI, servers: list[uvicorn.Server] | None = None) -> None:
    """Serve until a signal (or ``should_exit`` on the servers) stops them."""
    settings: ServerSettings = app.state.settings
    servers = servers or build_servers(app)
    logger.info(
        "HTTP mode: port %d, /ping on %d, model %s, queue %d",
        settings.port,
        settings.port_health,
        settings.worker.model,
        settings.max_queue,
    )
    await asyncio.gather(*(server.serve() for server in servers))


def serve() -> None:
    """``WORKER_MODE=http``: read the settings, build the app, serve until stopped."""
    asyncio.run(run_servers(create_app(ServerSettings.from_env())))
