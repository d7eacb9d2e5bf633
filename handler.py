"""RunPod serverless entry point: parse the job once, run the processor, map errors.

    python handler.py                       runs the job in test_input.json (RunPod's local mode)
    python handler.py --test_input '{...}'  runs any job
    python handler.py --rp_serve_api        serves RunPod's local test API
    STREAM_SEGMENTS=true python handler.py  the streaming worker (segments via /stream)
    WORKER_MODE=http python handler.py      the HTTP server (OpenAI-compatible API, page, live)

This file stays thin: the request model, the model service and the response shapes live in
``src/``. Every way of running a queue job consumes one stream of events (``src.jobs``):
``handler`` keeps the output (and reports progress on RunPod), ``stream_handler`` yields
``/stream`` items, ``job_updates`` yields progress reports and the output (the local endpoint).
It is the only place where exceptions become RunPod's ``{"error": "..."}``.

On RunPod the worker holds ``MAX_CONCURRENT_JOBS`` jobs at once (the SDK's
``concurrency_modifier``) through the async twins ``concurrent_handler`` and
``concurrent_stream_handler``: each job's blocking pipeline runs in worker threads, so one job
downloads and runs ffmpeg while the model decodes another's step (the model service's gate takes
one step at a time). A job the platform stops (cancel, timeout) is cancelled there: its decode
stops at its next step and its temp directory goes.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any

# The RunPod SDK logs every job's whole output (the transcript) at DEBUG, and DEBUG is its
# default. Transcripts must never reach logs, so the worker's default is INFO; main() also drops
# the SDK's DEBUG lines when someone sets RUNPOD_LOG_LEVEL=DEBUG (src/logging_setup.py).
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

from src.config import Environment, Settings
from src.errors import WorkerError
from src.formats import segment_dict
from src.jobs import JobEvent, JobFailed, JobOutput, SegmentEvent, job_events
from src.logging_setup import configure_logging, quiet_runpod_sdk
from src.progress import ProgressTracker
from src.request import parse_request
from src.service.processor import WhisperProcessor
from src.service.threads import iterate_in_thread

logger = logging.getLogger("handler")


_processor: WhisperProcessor | None = None
_loading = threading.Lock()


def get_processor() -> WhisperProcessor:
    """The process-wide model service: loaded (and warmed up) on first use only, once even
    when several jobs ask at the same time."""
    global _processor
    with _loading:
        if _processor is None:
            _processor = WhisperProcessor.from_settings(Settings.from_env())
        return _processor


def _short_id(job: dict[str, Any]) -> str:
    return str(job.get("id") or "-")[:12]


def _events(job: dict[str, Any]) -> Iterator[JobEvent]:
    """Parse and run one job as events; every exception becomes a last ``JobFailed`` here."""
    job_id = _short_id(job)
    try:
        parsed = parse_request(job.get("input"))
        yield from job_events(get_processor(), parsed, job_id=job_id)
    except WorkerError as e:
        logger.info("job %s failed: %s", job_id, type(e).__name__)
        yield JobFailed(str(e))
    except Exception as e:  # a bug or a fault we did not foresee: keep the worker up
        # The frames, never the message: an exception's text can quote a URL or transcript.
        frames = "".join(traceback.format_tb(e.__traceback__))
        logger.error("job %s: unexpected %s\n%s", job_id, type(e).__name__, frames)
        yield JobFailed(f"internal error ({type(e).__name__}); the job was not completed")


def job_updates(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One job as JSON updates: ``{"progress": report}`` at most once a second while it runs
    (report: status, segments, audio_seconds_done, fraction, file_index, file_count), then
    exactly one ``{"output": <what handler() returns>}``."""
    tracker = ProgressTracker()
    for event in _events(job):
        if isinstance(event, SegmentEvent):
            report = tracker.update(event)
            if report is not None:
                yield {"progress": report}
        else:
            yield {"output": _output(event)}


class _Outcome:
    """One job's events as RunPod wants them: progress reports on the way, the output last."""

    def __init__(self, job: dict[str, Any]) -> None:
        self._report = _runpod_progress(job)
        self._tracker = ProgressTracker()
        self.output: dict[str, Any] = {}

    def take(self, event: JobEvent) -> None:
        if not isinstance(event, SegmentEvent):
            self.output = _output(event)
            return
        report = self._tracker.update(event)
        if report is not None and self._report is not None:
            self._report(report)


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Transcribe one RunPod job in the calling thread; returns the output, or
    ``{"error": message}``. On RunPod each progress report moves the job's ``/status``."""
    outcome = _Outcome(job)
    for event in _events(job):
        outcome.take(event)
    return outcome.output


async def concurrent_handler(job: dict[str, Any]) -> dict[str, Any]:
    """``handler`` for a worker that holds several jobs at once: the job's pipeline runs in
    worker threads; cancelling the task stops its decode at the next step."""
    outcome = _Outcome(job)
    async with aclosing(iterate_in_thread(_events(job))) as events:
        async for event in events:
            outcome.take(event)
    return outcome.output


def _runpod_progress(job: dict[str, Any]) -> Callable[[dict[str, Any]], None] | None:
    """Where progress goes on RunPod (``progress_update``); None elsewhere."""
    if not os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        return None
    from runpod.serverless import progress_update

    def report(progress: dict[str, Any]) -> None:
        try:
            progress_update(job, progress)
        except Exception as e:  # progress is best effort: never fail the job for it
            logger.warning("progress report failed: %s", type(e).__name__)

    return report


def stream_handler(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The streaming worker: each segment as soon as it is decoded, then the whole result.

    Yields ``{"type": "segment", "file": ..., "segment": {...}}`` items and, last,
    ``{"type": "result", "output": <what handler() returns>}``; a failed job yields only
    ``{"error": message}``, which RunPod turns into a FAILED job. With
    ``return_aggregate_stream`` the job's ``/status`` output is the list of all items, whose last
    one holds the same result as the one-shot handler's.
    """
    for event in _events(job):
        yield _stream_item(event)


async def concurrent_stream_handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """``stream_handler`` for a worker that holds several jobs at once."""
    async with aclosing(iterate_in_thread(_events(job))) as events:
        async for event in events:
            yield _stream_item(event)


def _output(event: JobOutput | JobFailed) -> dict[str, Any]:
    """What RunPod gets as the job's output: the output dict, or ``{"error": message}``."""
    if isinstance(event, JobFailed):
        return {"error": event.message}
    return event.output


def _stream_item(event: JobEvent) -> dict[str, Any]:
    if isinstance(event, SegmentEvent):
        return {"type": "segment", "file": event.file, "segment": segment_dict(event.segment)}
    if isinstance(event, JobFailed):
        return {"error": event.message}
    return {"type": "result", "output": event.output}


def main() -> None:
    env = Environment.read()  # a malformed variable stops start-up here, named
    configure_logging(env.log_level)
    quiet_runpod_sdk()
    if env.worker_mode == "http":
        from src.server.app import serve

        serve()
        return
    import runpod

    get_processor()  # load the model before taking jobs, not inside the first one
    runpod.serverless.start(worker_config(Settings.of(env)))


def worker_config(settings: Settings) -> dict[str, Any]:
    """What ``runpod.serverless.start`` gets: the async handler (streaming or not) and
    ``MAX_CONCURRENT_JOBS`` as the SDK's concurrency."""
    jobs = settings.max_concurrent_jobs
    config: dict[str, Any] = {"concurrency_modifier": lambda _current: jobs}
    if settings.stream_segments:
        config.update(handler=concurrent_stream_handler, return_aggregate_stream=True)
    else:
        config["handler"] = concurrent_handler
    return config


if __name__ == "__main__":
    main()
