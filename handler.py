"""RunPod serverless entry point: parse the job once, run the processor, map errors.

    python handler.py                       runs the job in test_input.json (RunPod's local mode)
    python handler.py --test_input '{...}'  runs any job
    python handler.py --rp_serve_api        serves RunPod's local test API
    STREAM_SEGMENTS=true python handler.py  the streaming worker (segments via /stream)
    WORKER_MODE=http python handler.py      the HTTP server (OpenAI-compatible API, page, live)

This file stays thin: the request model, the processor and the response shapes live in ``src/``.
Every way of running a queue job consumes one stream of events (``src.jobs.job_events``):
``handler`` keeps the output (and reports progress on RunPod), ``stream_handler`` yields
``/stream`` items, ``job_updates`` yields progress reports and the output (the local endpoint).
It is the only place where exceptions become RunPod's ``{"error": "..."}``.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

# The RunPod SDK logs every job's whole output (the transcript) at DEBUG, and DEBUG is its
# default. Transcripts must never reach logs, so the worker's default is INFO; main() also drops
# the SDK's DEBUG lines when someone sets RUNPOD_LOG_LEVEL=DEBUG (src/logging_setup.py).
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

from src.config import Settings
from src.errors import WorkerError
from src.formats import segment_dict
from src.jobs import JobEvent, JobOutput, SegmentEvent, job_events
from src.logging_setup import configure_logging, quiet_runpod_sdk
from src.processor import WhisperProcessor
from src.progress import ProgressTracker
from src.request import parse_request

logger = logging.getLogger("handler")


@functools.cache
def get_processor() -> WhisperProcessor:
    """The process-wide processor: the model is loaded (and warmed up) on first use only."""
    return WhisperProcessor.from_settings(Settings.from_env())


def _short_id(job: dict[str, Any]) -> str:
    return str(job.get("id") or "-")[:12]


def _events(job: dict[str, Any]) -> Iterator[JobEvent]:
    """Parse and run one job as events; every exception becomes a last
    ``JobOutput({"error": message})`` here."""
    job_id = _short_id(job)
    try:
        parsed = parse_request(job.get("input"))
        yield from job_events(get_processor(), parsed, job_id=job_id)
    except WorkerError as e:
        logger.info("job %s failed: %s", job_id, type(e).__name__)
        yield JobOutput({"error": str(e)})
    except Exception as e:  # a bug or a fault we did not foresee: keep the worker up
        # The frames, never the message: an exception's text can quote a URL or transcript.
        frames = "".join(traceback.format_tb(e.__traceback__))
        logger.error("job %s: unexpected %s\n%s", job_id, type(e).__name__, frames)
        message = f"internal error ({type(e).__name__}); the job was not completed"
        yield JobOutput({"error": message})


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
            yield {"output": event.output}


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Transcribe one RunPod job; returns the output, or ``{"error": message}``.

    On RunPod each progress report moves the job's progress in ``/status``.
    """
    report = _runpod_progress(job)
    output: dict[str, Any] = {}
    for update in job_updates(job):
        if "progress" in update:
            if report is not None:
                report(update["progress"])
        else:
            output = update["output"]
    return output


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
        if isinstance(event, SegmentEvent):
            yield {"type": "segment", "file": event.file, "segment": segment_dict(event.segment)}
        elif "error" in event.output:
            yield {"error": event.output["error"]}
        else:
            yield {"type": "result", "output": event.output}


def main() -> None:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    quiet_runpod_sdk()
    if os.environ.get("WORKER_MODE", "queue").strip().lower() == "http":
        from src.server.app import serve

        serve()
        return
    import runpod

    get_processor()  # load the model before taking jobs, not inside the first one
    if _streaming():
        runpod.serverless.start({"handler": stream_handler, "return_aggregate_stream": True})
    else:
        runpod.serverless.start({"handler": handler})


def _streaming() -> bool:
    return os.environ.get("STREAM_SEGMENTS", "").strip().lower() in ("1", "true", "yes", "on")


if __name__ == "__main__":
    main()
