"""The job queue behind the local endpoint: RunPod's job lifecycle around a handler, in threads.

    IN_QUEUE ──> IN_PROGRESS ──> COMPLETED | FAILED        (the handler's answer)
        │             ├────────> TIMED_OUT                 (policy.executionTimeout passed)
        └─────────────┴────────> CANCELLED                 (/cancel, /purge-queue)
    any state ──> gone (status 404) once the job's ttl, or its result's retention, has passed

Time-based transitions are applied lazily, whenever a job is looked at, from an injectable
clock, so tests can move time forward instead of sleeping. A plain handler cannot be stopped
from outside its thread: a cancelled or timed-out job's handler runs to its end and its answer
is dropped. A generator or ``ProgressHandler`` is stopped at its next item once its job is no
longer running (closed, so the worker's decode stops and its temp directory goes), and its
thread takes the next job: a cancel frees the place, as RunPod's worker stops a cancelled job's
task. ``workers`` threads run that many jobs at once.

Like RunPod's worker (runpod-python ``rp_job.run_job``), an ``error`` key in the handler's dict
makes the job ``FAILED`` with that error, and an exception does too, with its type and message.

Three kinds of handler run here: a plain one (returns the output), a generator one (RunPod's
streaming worker: each item goes to ``/stream``, the output is the list of them), and a
``ProgressHandler``, the worker's ``job_updates``: it yields ``{"progress": report}`` items,
shown as the running job's ``output`` in ``/status`` as RunPod shows ``progress_update``, then
one ``{"output": ...}``, which finishes the job.
"""

from __future__ import annotations

import inspect
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class ProgressHandler:
    """A handler that reports progress: ``updates(job)`` yields ``{"progress": report}`` items
    and last exactly one ``{"output": output}`` (the output a plain handler would return)."""

    updates: Callable[[dict[str, Any]], Iterator[dict[str, Any]]]


Worker = Handler | ProgressHandler

DEFAULT_EXECUTION_TIMEOUT_S = 600.0
DEFAULT_TTL_S = 24 * 3600.0
RUN_RETENTION_S = 30 * 60.0
RUNSYNC_RETENTION_S = 60.0

ACTIVE = ("IN_QUEUE", "IN_PROGRESS")


@dataclass
class _Job:
    id: str
    input: Any
    created: float
    ttl: float
    execution_timeout: float
    retention: float
    webhook: str | None = None
    status: str = "IN_QUEUE"
    started: float | None = None
    finished: float | None = None
    output: Any = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: what a generator handler yielded, and how much of it ``/stream`` has handed out
    stream: list[Any] = field(default_factory=list)
    streamed: int = 0

    def expires_at(self) -> float:
        gone = self.created + self.ttl
        return gone if self.finished is None else min(gone, self.finished + self.retention)

    def view(self) -> dict[str, Any]:
        """The job as ``/status`` shows it."""
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            body["delayTime"] = round((self.started - self.created) * 1000)
            if self.finished is not None:
                body["executionTime"] = round((self.finished - self.started) * 1000)
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


class JobQueue:
    """Jobs, their states and the worker threads that run ``handler`` on them."""

    def __init__(
        self,
        handler: Worker,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_finished: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._clock = clock
        self._on_finished = on_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._completed = 0
        self._failed = 0

    def start(self) -> None:
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"local-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a handler that is running is not waited for past ``timeout``."""
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # -- the operations behind the routes --------------------------------------------------------

    def submit(
        self,
        job_input: Any,
        *,
        ttl: float = DEFAULT_TTL_S,
        execution_timeout: float = DEFAULT_EXECUTION_TIMEOUT_S,
        retention: float = RUN_RETENTION_S,
        webhook: str | None = None,
        prefix: str = "",
    ) -> dict[str, Any]:
        job = _Job(
            id=f"{prefix}{uuid.uuid4()}",
            input=job_input,
            created=self._clock(),
            ttl=ttl,
            execution_timeout=execution_timeout,
            retention=retention,
            webhook=webhook,
        )
        with self._lock:
            self._jobs[job.id] = job
            view = job.view()
        self._pending.put(job.id)
        return view

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None once it is unknown or gone."""
        with self._lock:
            job = self._current(job_id)
            return None if job is None else job.view()

    def wait(self, job_id: str, timeout: float) -> dict[str, Any] | None:
        """Block up to ``timeout`` real seconds for the job to finish (``/runsync``)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.done.wait(timeout)
        return self.get(job_id)

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._current(job_id)
            if job is None:
                return None
            if job.status in ACTIVE:
                self._finish(job, "CANCELLED", self._clock())
            return {"id": job.id, "status": job.status}

    def purge(self) -> int:
        """Cancel every queued job; running ones go on (as on RunPod)."""
        with self._lock:
            now = self._clock()
            queued = [j for j in self._live(now) if j.status == "IN_QUEUE"]
            for job in queued:
                self._finish(job, "CANCELLED", now)
            return len(queued)

    def health(self) -> dict[str, Any]:
        with self._lock:
            live = self._live(self._clock())
            return {
                "jobs": {
                    "completed": self._completed,
                    "failed": self._failed,
                    "inProgress": sum(j.status == "IN_PROGRESS" for j in live),
                    "inQueue": sum(j.status == "IN_QUEUE" for j in live),
                    "retried": 0,
                },
                "workers": {"idle": self._workers - self._running, "running": self._running},
            }

    # -- state, under the lock -------------------------------------------------------------------

    def _current(self, job_id: str) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is not None:
            self._apply_time(job, self._clock())
            job = self._jobs.get(job_id)
        return job

    def _live(self, now: float) -> list[_Job]:
        for job in list(self._jobs.values()):
            self._apply_time(job, now)
        return list(self._jobs.values())

    def _apply_time(self, job: _Job, now: float) -> None:
        if job.status == "IN_PROGRESS" and job.started is not None:
            limit = job.started + job.execution_timeout
            if now >= limit:
                job.error = "execution timeout exceeded"
                self._finish(job, "TIMED_OUT", limit)
        if now >= job.expires_at():
            if job.status in ACTIVE:
                self._finish(job, "TIMED_OUT", job.created + job.ttl)
            del self._jobs[job.id]

    def _finish(self, job: _Job, status: str, when: float) -> None:
        job.status = status
        job.finished = when
        if status == "COMPLETED":
            self._completed += 1
        elif status in ("FAILED", "TIMED_OUT"):
            self._failed += 1
        job.done.set()
        if self._on_finished is not None and job.webhook:
            self._on_finished(job.webhook, job.view())

    # -- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            with self._lock:
                job = self._current(job_id)
                if job is None or job.status != "IN_QUEUE":
                    continue
                job.status = "IN_PROGRESS"
                job.started = self._clock()
                self._running += 1
                payload = {"id": job.id, "input": job.input}
            started = time.monotonic()
            if isinstance(self._handler, ProgressHandler):
                output, error = self._call_updates(job_id, payload, self._handler)
            elif inspect.isgeneratorfunction(self._handler):
                output, error = self._call_generator(job_id, payload, self._handler)
            else:
                output, error = _call(self._handler, payload)
            with self._lock:
                self._running -= 1
                job = self._current(job_id)
                if job is None or job.status != "IN_PROGRESS":
                    logger.info("job %s: handler result dropped (job no longer running)", job_id)
                    continue
                job.output, job.error = output, error
                self._finish(job, "FAILED" if error else "COMPLETED", self._clock())
                logger.info("job %s %s in %.2f s", job_id, job.status, time.monotonic() - started)

    def _call_generator(
        self, job_id: str, payload: dict[str, Any], handler: Handler
    ) -> tuple[Any, str | None]:
        """A streaming handler, as RunPod runs it with ``return_aggregate_stream``: each item is
        streamed as it comes; the output is the list of them all; an item with ``error`` ends
        the job as FAILED."""
        items: list[Any] = []
        generator = handler(payload)
        try:
            for item in generator:
                if isinstance(item, dict) and item.get("error"):
                    error = item["error"]
                    return None, error if isinstance(error, str) else json.dumps(error)
                items.append(item)
                with self._lock:
                    job = self._current(job_id)
                    if job is None or job.status != "IN_PROGRESS":
                        return None, "the job stopped while streaming"
                    job.stream.append(item)
        except Exception as e:
            logger.error("job %s: the handler raised %s", payload["id"], type(e).__name__)
            return None, json.dumps({"error_type": type(e).__name__, "error_message": str(e)})
        finally:
            _close(generator)
        return items, None

    def _call_updates(
        self, job_id: str, payload: dict[str, Any], handler: ProgressHandler
    ) -> tuple[Any, str | None]:
        """``job_updates``: progress into the job's ``/status`` while it runs; the output, read
        as a plain handler's answer, finishes it."""
        updates = handler.updates(payload)
        try:
            for update in updates:
                if "output" in update:
                    return _outcome(update["output"])
                if "progress" in update and not self.progress(job_id, update["progress"]):
                    logger.info("job %s: stopped (no longer running)", job_id)
                    return None, "the job stopped while running"
        except Exception as e:
            logger.error("job %s: the handler raised %s", payload["id"], type(e).__name__)
            return None, json.dumps({"error_type": type(e).__name__, "error_message": str(e)})
        finally:
            _close(updates)
        return None, "the handler ended without an output"

    def stream(self, job_id: str) -> dict[str, Any] | None:
        """``/stream``: the job's status and the items yielded since the last call."""
        with self._lock:
            job = self._current(job_id)
            if job is None:
                return None
            fresh = job.stream[job.streamed :]
            job.streamed = len(job.stream)
            body: dict[str, Any] = {"id": job.id, "status": job.status}
            body["stream"] = [{"output": item} for item in fresh]
            if job.error is not None:
                body["error"] = job.error
            return body

    def progress(self, job_id: str, report: Any) -> bool:
        """A running job's progress, shown as its ``output`` in ``/status`` (as on RunPod);
        False when the job is no longer running (cancelled, timed out, gone)."""
        with self._lock:
            job = self._current(job_id)
            if job is None or job.status != "IN_PROGRESS":
                return False
            job.output = report
            return True


def _close(iterator: object) -> None:
    """Close a generator the queue stopped reading (its ``finally`` blocks run now)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _call(handler: Handler, payload: dict[str, Any]) -> tuple[Any, str | None]:
    """Run the handler as RunPod's worker does: ``(output, error)``."""
    try:
        result = handler(payload)
    except Exception as e:
        # the type only: an exception's message may quote the input
        logger.error("job %s: the handler raised %s", payload["id"], type(e).__name__)
        return None, json.dumps({"error_type": type(e).__name__, "error_message": str(e)})
    return _outcome(result)


def _outcome(result: Any) -> tuple[Any, str | None]:
    """A handler's answer as ``(output, error)``: an ``error`` key fails the job, as on RunPod."""
    if isinstance(result, dict) and "error" in result:
        rest = {k: v for k, v in result.items() if k != "error"}
        error = result["error"]
        if not error:
            return rest, None
        return (rest or None), (error if isinstance(error, str) else json.dumps(error))
    return result, None
