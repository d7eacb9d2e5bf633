"""RunPod's serverless REST API served locally around a handler: the whole flow, before deploying.

RunPod's own test server (``python handler.py --rp_serve_api``) differs from the real API: its
status route is POST-only, it has no queue (a job runs inside the request that submits it) and
no cancel, so a client written against it breaks in production. This server keeps the real
API's routes, JSON shapes and job lifecycle (``client/whisper_client/local_queue.py``):

    POST /v2/{endpoint}/run               {"input", "webhook"?, "policy"?} -> {"id", "status"}
    POST /v2/{endpoint}/runsync?wait=ms   the finished job, or its status after ``wait`` ms
    GET  /v2/{endpoint}/status/{id}       {"id", "status", "delayTime"?, "executionTime"?,
                                           "output"?, "error"?}; 404 once the job is gone
    POST /v2/{endpoint}/cancel/{id}       {"id", "status"}
    GET  /v2/{endpoint}/health            {"jobs": {completed, failed, inProgress, inQueue,
                                           retried}, "workers": {idle, running}}
    POST /v2/{endpoint}/purge-queue       {"removed", "status": "completed"}

``Authorization: Bearer <key>`` (or the bare key, which RunPod accepts too); 401 for a wrong key,
404 for another endpoint id, 413 for a body over 10 MB (``/run``) or 20 MB (``/runsync``), 400 for
a body without ``input`` or a ``policy`` outside RunPod's bounds. ``policy.executionTimeout`` and
``policy.ttl`` are honoured; a ``webhook`` gets the final status POSTed, retried twice as RunPod
does. ``FaultInjector`` makes chosen routes answer 429/503 (or any status) a number of times, to
see a client ride through an overloaded endpoint.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from whisper_client.local_queue import (
    DEFAULT_EXECUTION_TIMEOUT_S,
    DEFAULT_TTL_S,
    RUN_RETENTION_S,
    RUNSYNC_RETENTION_S,
    JobQueue,
    ProgressHandler,
    Worker,
)
from whisper_client.policy import MAX_TTL_MS, MIN_EXECUTION_TIMEOUT_MS, MIN_TTL_MS

logger = logging.getLogger(__name__)

ROUTES = ("run", "runsync", "status", "cancel", "health", "purge-queue")
RUN_LIMIT_BYTES = 10_000_000
RUNSYNC_LIMIT_BYTES = 20_000_000
DEFAULT_RUNSYNC_WAIT_MS = 90_000


@dataclass
class Fault:
    status: int
    remaining: int
    routes: frozenset[str] | None
    retry_after: float | None


class FaultInjector:
    """Answers chosen routes with an error status, a given number of times, before the real work.

    A faulted request does nothing else: a 429 on ``/run`` queues no job, as on RunPod.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        #: how many faults were served, by "route:status"
        self.served: Counter[str] = Counter()

    def add(
        self,
        status: int,
        times: int = 1,
        *,
        routes: Iterable[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        chosen = None if routes is None else frozenset(routes)
        unknown = (chosen or frozenset()) - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown route(s) {sorted(unknown)}: expected some of {ROUTES}")
        with self._lock:
            self._faults.append(Fault(status, times, chosen, retry_after))

    def add_spec(self, spec: str) -> None:
        """``ROUTE:STATUS:TIMES`` (``*`` for every route), as the ``serve`` command takes it."""
        try:
            route, status, times = spec.split(":")
            self.add(int(status), int(times), routes=None if route == "*" else [route])
        except ValueError as e:
            raise ValueError(f"fault {spec!r}: expected ROUTE:STATUS:TIMES ({e})") from None

    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def take(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.routes is None or route in fault.routes):
                    fault.remaining -= 1
                    self.served[f"{route}:{fault.status}"] += 1
                    return fault
        return None


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class LocalEndpoint:
    """The routes, the queue and (optionally) a uvicorn server in a background thread."""

    def __init__(
        self,
        handler: Worker,
        *,
        endpoint_id: str = "local",
        api_key: str | None = "local",
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        run_limit_bytes: int = RUN_LIMIT_BYTES,
        runsync_limit_bytes: int = RUNSYNC_LIMIT_BYTES,
        webhook_retry_delay: float = 10.0,
    ) -> None:
        self.endpoint_id = endpoint_id
        self._api_key = api_key
        self._limits = {"run": run_limit_bytes, "runsync": runsync_limit_bytes}
        self._webhook_retry_delay = webhook_retry_delay
        self.faults = FaultInjector()
        self.queue = JobQueue(handler, workers=workers, clock=clock, on_finished=self._notify)
        self.app = self._build_app()
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- running it --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL (``http://host:port/v2``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="local-endpoint", daemon=True
        )
        self.queue.start()
        thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local endpoint did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        self.base_url = f"http://{host}:{sock.getsockname()[1]}/v2"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10.0)
            self._server = self._thread = None
        self.queue.stop()

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Serve in this thread until Ctrl-C (the ``serve`` command)."""
        self.queue.start()
        try:
            uvicorn.run(self.app, host=host, port=port, log_level="info", lifespan="off")
        finally:
            self.queue.stop()

    def __enter__(self) -> LocalEndpoint:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the routes --------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="local RunPod endpoint", docs_url=None, redoc_url=None)
        app.add_exception_handler(_Refusal, _refusal_response)  # type: ignore[arg-type]
        q = self.queue

        @app.post("/v2/{endpoint_id}/run")
        async def run(endpoint_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "run")
            body = await self._read_body(request, "run")
            return JSONResponse(self._submit(body, RUN_RETENTION_S))

        @app.post("/v2/{endpoint_id}/runsync")
        async def runsync(endpoint_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "runsync")
            body = await self._read_body(request, "runsync")
            wait_ms = _wait_ms(request.query_params.get("wait"))
            job = self._submit(body, RUNSYNC_RETENTION_S, prefix="sync-")
            view = await run_in_threadpool(q.wait, job["id"], wait_ms / 1000)
            return JSONResponse(view or job)

        @app.get("/v2/{endpoint_id}/status/{job_id}")
        async def status(endpoint_id: str, job_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "status")
            return _found(q.get(job_id), job_id)

        @app.get("/v2/{endpoint_id}/stream/{job_id}")
        async def stream(endpoint_id: str, job_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "stream")
            return _found(q.stream(job_id), job_id)

        @app.post("/v2/{endpoint_id}/cancel/{job_id}")
        async def cancel(endpoint_id: str, job_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "cancel")
            return _found(q.cancel(job_id), job_id)

        @app.get("/v2/{endpoint_id}/health")
        async def health(endpoint_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "health")
            return JSONResponse(q.health())

        @app.post("/v2/{endpoint_id}/purge-queue")
        async def purge(endpoint_id: str, request: Request) -> JSONResponse:
            self._gate(request, endpoint_id, "purge-queue")
            return JSONResponse({"removed": q.purge(), "status": "completed"})

        return app

    def _gate(self, request: Request, endpoint_id: str, route: str) -> None:
        """Auth, then the endpoint id, then any injected fault: RunPod's order of refusals."""
        if self._api_key is not None:
            given = request.headers.get("authorization", "")
            if given.removeprefix("Bearer ").strip() != self._api_key:
                raise _Refusal(401, "Unauthorized")
        if endpoint_id != self.endpoint_id:
            raise _Refusal(404, f"endpoint {endpoint_id!r} not found")
        fault = self.faults.take(route)
        if fault is not None:
            headers = None
            if fault.retry_after is not None:
                headers = {"Retry-After": f"{fault.retry_after:g}"}
            raise _Refusal(fault.status, "injected fault", headers)

    async def _read_body(self, request: Request, route: str) -> dict[str, Any]:
        limit = self._limits[route]
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refusal(413, f"request body over the {limit} bytes allowed on /{route}")
        raw = await request.body()
        if len(raw) > limit:
            raise _Refusal(413, f"request body over the {limit} bytes allowed on /{route}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Refusal(400, "the body is not JSON") from None
        if not isinstance(body, dict) or "input" not in body:
            raise _Refusal(400, "the body must be a JSON object with an 'input' key")
        return body

    def _submit(self, body: dict[str, Any], retention: float, prefix: str = "") -> dict[str, Any]:
        ttl_s, execution_s = _policy(body.get("policy"))
        webhook = body.get("webhook")
        if webhook is not None and not isinstance(webhook, str):
            raise _Refusal(400, "webhook: expected a URL string")
        return self.queue.submit(
            body["input"],
            ttl=ttl_s,
            execution_timeout=execution_s,
            retention=retention,
            webhook=webhook,
            prefix=prefix,
        )

    # -- webhooks ----------------------------------------------------------------------------

    def _notify(self, url: str, view: dict[str, Any]) -> None:
        threading.Thread(target=self._deliver, args=(url, view), daemon=True).start()

    def _deliver(self, url: str, view: dict[str, Any]) -> None:
        """POST the final status; two more tries on failure, as RunPod does."""
        for attempt in range(3):
            try:
                response = httpx.post(url, json=view, timeout=10.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if attempt < 2:
                time.sleep(self._webhook_retry_delay)
        logger.warning("webhook for job %s not delivered", view.get("id"))


def _policy(policy: Any) -> tuple[float, float]:
    """``(ttl, executionTimeout)`` in seconds from a request's ``policy``, checked like RunPod."""
    if policy is None:
        return DEFAULT_TTL_S, DEFAULT_EXECUTION_TIMEOUT_S
    if not isinstance(policy, dict):
        raise _Refusal(400, "policy: expected an object")
    ttl = policy.get("ttl", DEFAULT_TTL_S * 1000)
    execution = policy.get("executionTimeout", DEFAULT_EXECUTION_TIMEOUT_S * 1000)
    if not _is_number(execution) or execution <= MIN_EXECUTION_TIMEOUT_MS:
        raise _Refusal(400, f"policy.executionTimeout: expected ms > {MIN_EXECUTION_TIMEOUT_MS}")
    if not _is_number(ttl) or not MIN_TTL_MS <= ttl <= MAX_TTL_MS:
        raise _Refusal(400, f"policy.ttl: expected {MIN_TTL_MS} to {MAX_TTL_MS} ms")
    return ttl / 1000, execution / 1000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wait_ms(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_RUNSYNC_WAIT_MS
    if not raw.isdigit() or not 1000 <= int(raw) <= 300_000:
        raise _Refusal(400, "wait: expected 1000 to 300000 ms")
    return int(raw)


def _found(view: dict[str, Any] | None, job_id: str) -> JSONResponse:
    if view is None:
        raise _Refusal(404, f"job {job_id!r} not found")
    return JSONResponse(view)


async def _refusal_response(request: Request, exc: _Refusal) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)


def load_handler(
    module: str = "handler", *, stream: bool = False, worker_dir: str | None = None
) -> Worker:
    """The real worker's handler, its model loaded before the first job arrives.

    ``module`` (``handler.py``) is imported by name, from ``worker_dir`` (a checkout of the
    worker, with its dependencies installed) or the import path. With ``stream``, its
    ``stream_handler`` (the ``/stream`` items); else its ``job_updates`` (progress reports,
    then the output), or its plain ``handler`` (no progress) where a worker has no
    ``job_updates``. Imported here, on demand, and nowhere else: the client never imports the
    worker or the model otherwise.
    """
    import importlib
    import os
    import sys

    if worker_dir is not None:
        where = os.path.abspath(worker_dir)
        if where not in sys.path:
            sys.path.insert(0, where)
    loaded = importlib.import_module(module)
    warm = getattr(loaded, "get_processor", None)
    if callable(warm):
        warm()
    if stream:
        streaming: Worker = loaded.stream_handler
        return streaming
    updates = getattr(loaded, "job_updates", None)
    if callable(updates):
        return ProgressHandler(updates)
    plain: Worker = loaded.handler
    return plain
