"""The HTTP mode's real server for tests: uvicorn on 127.0.0.1 in a thread, the real model.

``serving(...)`` builds the app with ``create_app`` (the same factory ``serve()`` uses), runs
``run_servers`` in an event loop of its own thread, waits until the port answers, and stops it
(``should_exit``) afterwards. The app object stays reachable so that tests can look at the
scheduler and the model holder while requests run.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
from fastapi import FastAPI
from openai import OpenAI

from src.config import Settings
from src.server.app import build_servers, create_app, run_servers
from src.server.settings import ServerSettings
from src.service.processor import WhisperProcessor

API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    app: FastAPI
    base_url: str
    health_url: str
    settings: ServerSettings

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1"

    def wait_until(self, check: Callable[[], bool], timeout: float = 120.0) -> None:
        """Poll ``check`` until it holds (a deadline for a stuck test, not a speed claim)."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("the server did not reach the expected state in time")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 300.0) -> None:
        self.wait_until(lambda: httpx.get(f"{self.health_url}/ping").status_code == 200, timeout)

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until no request is admitted (waiting or running)."""
        scheduler = self.app.services.slots
        self.wait_until(lambda: scheduler.waiting == 0 and not scheduler.running, timeout)


def translate(client: OpenAI, **kwargs: Any) -> Any:
    """``client.audio.translations.create``, which the SDK marks deprecated (OpenAI is
    retiring whisper-1); the route it calls is what is tested."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return client.audio.translations.create(**kwargs)


@contextmanager
def serving(
    *,
    model: str | None = None,
    processor_factory: Callable[[], WhisperProcessor] | None = None,
    separate_health_port: bool = False,
    **overrides: Any,
) -> Iterator[RunningServer]:
    """A running server; ``overrides`` are ServerSettings fields, ``model`` the Whisper model,
    ``max_bytes`` and ``allow_private`` the worker's download limits, ``max_concurrent_jobs``
    its places."""
    worker = Settings.from_env()
    if model is not None:
        worker = replace(worker, model=model)
    download = worker.download
    if "max_bytes" in overrides:
        download = replace(download, max_bytes=overrides.pop("max_bytes"))
    if "allow_private" in overrides:
        download = replace(download, allow_private=overrides.pop("allow_private"))
    worker = replace(worker, download=download)
    if "max_concurrent_jobs" in overrides:
        worker = replace(worker, max_concurrent_jobs=overrides.pop("max_concurrent_jobs"))
    port = free_port()
    health_port = free_port() if separate_health_port else port
    settings = ServerSettings(
        host="127.0.0.1", port=port, port_health=health_port, worker=worker, **overrides
    )
    app = create_app(settings, processor_factory)
    servers = build_servers(app)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(run_servers(app, servers))
        except BaseException as e:  # reported by the fixture, not lost in the thread
            failure.append(e)

    thread = threading.Thread(target=run, name=f"server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not all(s.started for s in servers):
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start: {failure}")
        time.sleep(0.02)
    try:
        yield RunningServer(
            app=app,
            base_url=f"http://127.0.0.1:{port}",
            health_url=f"http://127.0.0.1:{health_port}",
            settings=settings,
        )
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(60)
    if failure:
        raise failure[0]
