"""The HTTP mode's app factory and entry point (``WORKER_MODE=http python handler.py``).

Contract for the other parts of ``src/server/`` (the realtime socket, the web page):

``create_app(settings: ServerSettings | None = None, processor_factory=...) -> FastAPI``
    ``settings`` defaults to ``ServerSettings.from_env()`` (``src/server/settings.py``);
    ``processor_factory`` is a zero-argument callable returning a loaded, warmed
    ``WhisperProcessor`` (default: ``WhisperProcessor.from_settings(settings.worker)``). The app
    does not load the model itself: ``serve()`` (or a test) starts the load in the background
    with ``app.state.model.start_loading()`` once the port is open, so ``/ping`` answers 204
    meanwhile.

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
(``health.py``) when ``PORT_HEALTH == PORT``, ``src.server.realtime.router`` when that module
exists, and ``src/server/static/`` mounted at ``/`` (``index.html``) last.
"""
