"""Test doubles for the client: fake time, a scripted HTTP transport, a gate around the handler.

Imported by the client, payload, batch and local-endpoint tests. Nothing here sleeps: time is a
number that ``sleep`` advances, and waiting on the real handler goes through ``threading.Event``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from whisper_client.api import RunPodClient
from whisper_client.local_endpoint import LocalEndpoint
from whisper_client.local_queue import ProgressHandler, Worker
from whisper_client.policy import PollPolicy, RetryPolicy

from tests.conftest import BENCHMARK_DIR

API_KEY = "test-key-not-a-secret"
ENDPOINT = "e2e"
#: short clips, fast on the CPU: (benchmark file, name in the test folder)
SHORT_CLIPS = (
    ("en_jfk.flac", "en_jfk.flac"),
    ("en_ls-test-clean_1089-134686-0001.wav", "talks/stuff_it.wav"),
    ("en_timit_LDC93S1.wav", "talks/timit.wav"),
    ("en_fleurs_004.ogg", "talks/deep/recording"),  # no extension: found by content
)


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


Answer = httpx.Response | Exception | int | dict[str, Any]


@dataclass
class Script:
    """An ``httpx.MockTransport`` that answers each route from a list, in order.

    A route's answers are consumed one per request; the last one repeats. An ``int`` is a bare
    status, a ``dict`` a 200 JSON body, an exception is raised as the transport's failure.
    """

    routes: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, route: str, *answers: Answer) -> Script:
        self.routes[route] = list(answers)
        return self

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if _route(r) == route)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.routes.get(_route(request))
        if not answers:
            return httpx.Response(404, json={"error": "no such route in the script"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise type(answer)(str(answer), request=request)  # type: ignore[call-arg]
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": f"status {answer}"})
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
        return answer


def _route(request: httpx.Request) -> str:
    """``run``, ``status``, ``cancel``, ...: the path segment after the endpoint id."""
    match = re.match(r"^/v2/[^/]+/([^/?]+)", request.url.path)
    return match.group(1) if match else request.url.path


def scripted_client(script: Script, time: FakeTime, **kwargs: Any) -> RunPodClient:
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=0.5, max_delay=8.0))
    kwargs.setdefault("poll", PollPolicy(initial=0.5, factor=1.5, maximum=4.0))
    return RunPodClient(
        "ep",
        API_KEY,
        base_url="https://api.example.test/v2",
        transport=script.transport(),
        clock=time.clock,
        sleep=time.sleep,
        **kwargs,
    )


def fast_client(endpoint: LocalEndpoint, api_key: str = API_KEY) -> RunPodClient:
    """A real client of a local endpoint, with short polls and backoffs (real, brief sleeps)."""
    return RunPodClient(
        endpoint.endpoint_id,
        api_key,
        base_url=endpoint.base_url,
        poll=PollPolicy(initial=0.05, factor=1.5, maximum=0.5),
        retry=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05),
    )


class GatedHandler:
    """Wraps a handler; ``hold()`` parks the jobs that arrive until the block ends.

    Lets a test see a real job ``IN_PROGRESS`` for as long as it needs, with no timing guess.
    ``fail_next(n)`` makes the next ``n`` jobs answer ``{"error": ...}`` as a broken worker would.
    """

    def __init__(self, inner: Worker) -> None:
        self.inner = inner
        self.job_ids: list[str] = []
        self.entered = threading.Event()
        self._gate: threading.Event | None = None
        self._pass = 0
        self._failures = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, let_through: int = 0) -> Iterator[GatedHandler]:
        """Park every job after the first ``let_through`` until the block exits."""
        gate = threading.Event()
        self.entered.clear()
        self._pass = let_through
        self._gate = gate
        try:
            yield self
        finally:
            self._gate = None
            gate.set()

    def fail_next(self, times: int) -> None:
        with self._lock:
            self._failures = times

    def as_worker(self) -> Worker:
        """What the endpoint runs: this gate, in the kind of handler it wraps."""
        return ProgressHandler(self.updates) if isinstance(self.inner, ProgressHandler) else self

    def __call__(self, job: dict[str, Any]) -> Any:
        if self._enter(job):
            return {"error": "injected worker failure"}
        assert not isinstance(self.inner, ProgressHandler)
        return self.inner(job)

    def updates(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The gate around the worker's ``job_updates`` (progress, then the output)."""
        if self._enter(job):
            yield {"output": {"error": "injected worker failure"}}
            return
        assert isinstance(self.inner, ProgressHandler)
        yield from self.inner.updates(job)

    def _enter(self, job: dict[str, Any]) -> bool:
        """Record the job, wait at the gate if it is closed; True when this job must fail."""
        with self._lock:
            self.job_ids.append(job["id"])
            failing = self._failures > 0
            self._failures -= failing
            gate = self._gate
            if gate is not None and self._pass > 0:
                self._pass -= 1
                gate = None
        if failing:
            return True
        if gate is not None:
            self.entered.set()
            gate.wait(120)
        return False


@contextmanager
def real_endpoint() -> Iterator[tuple[LocalEndpoint, GatedHandler]]:
    """The local endpoint around the real ``handler.handler`` (tiny.en, loaded once a process)."""
    from whisper_client.local_endpoint import load_handler

    gated = GatedHandler(load_handler())
    endpoint = LocalEndpoint(gated.as_worker(), endpoint_id=ENDPOINT, api_key=API_KEY)
    endpoint.start()
    try:
        yield endpoint, gated
    finally:
        endpoint.stop()


def completed_jobs(endpoint: LocalEndpoint) -> int:
    jobs: dict[str, int] = endpoint.queue.health()["jobs"]
    return jobs["completed"] + jobs["failed"]


def make_clip_folder(root: Path, clips: tuple[tuple[str, str], ...] = SHORT_CLIPS) -> Path:
    """Copies of benchmark clips under ``root``, plus a corrupt ``.wav`` and a text file."""
    for source, name in clips:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BENCHMARK_DIR / source, target)
    return root


def add_junk(root: Path) -> None:
    """A corrupt recording (kept: its extension says audio) and a note (ignored)."""
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(3000))
    (root / "notes.txt").write_text("not audio\n")
    (root / "talks" / "slides.pdf").write_bytes(b"%PDF-1.4 not media")
