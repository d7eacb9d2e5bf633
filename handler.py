"""RunPod serverless entry point: parse the job once, run the processor, map errors.

    python handler.py                       runs the job in test_input.json (RunPod's local mode)
    python handler.py --test_input '{...}'  runs any job
    python handler.py --rp_serve_api        serves RunPod's local test API
    STREAM_SEGMENTS=true python handler.py  the streaming worker (segments via /stream)

This file stays thin: the request model, the processor and the response shapes live in ``src/``.
It is the only place where exceptions become RunPod's ``{"error": "..."}``.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import traceback
from collections.abc import Iterator
from typing import Any

# The RunPod SDK logs every job's whole output (the transcript) at DEBUG, and DEBUG is its
# default. Transcripts must never reach logs, so the worker's default is INFO; main() also drops
# the SDK's DEBUG lines when someone sets RUNPOD_LOG_LEVEL=DEBUG (src/logging_setup.py).
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

from src.config import Settings
from src.errors import WorkerError
from src.formats import segment_dict
from src.jobs import EventSink, SegmentEvent, run_job
from src.logging_setup import configure_logging, quiet_runpod_sdk
from src.processor import WhisperProcessor
from src.progress import ProgressReporter, current_sink
from src.request import parse_request

logger = logging.getLogger("handler")


@functools.cache
def get_processor() -> WhisperProcessor:
    """The process-wide processor: the model is loaded (and warmed up) on first use only."""
    return WhisperProcessor.from_settings(Settings.from_env())


def _short_id(job: dict[str, Any]) -> str:
    return str(job.get("id") or "-")[:12]


def _run(job: dict[str, Any], on_segment: EventSink | None) -> dict[str, Any]:
    """Parse and run one job; every exception becomes ``{"error": message}`` here."""
    job_id = _short_id(job)
    try:
        parsed = parse_request(job.get("input"))
        return run_job(get_processor(), parsed, job_id=job_id, on_segment=on_segment)
    except WorkerError as e:
        logger.info("job %s failed: %s", job_id, type(e).__name__)
        return {"error": str(e)}
    except Exception as e:  # a bug or a fault we did not foresee: keep the worker up
        # The frames, never the message: an exception's text can quote a URL or transcript.
        frames = "".join(traceback.format_tb(e.__traceback__))
        logger.error("job %s: unexpected %s\n%s", job_id, type(e).__name__, frames)
        return {"error": f"internal error ({type(e).__name__}); the job was not completed"}


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Transcribe one RunPod job; returns the output, or ``{"error": message}``.

    Where progress can be shown (on RunPod, or the local endpoint), each decoded segment moves
    the job's progress in ``/status``.
    """
    sink = current_sink()
    return _run(job, ProgressReporter(job, sink) if sink is not None else None)


def stream_handler(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The streaming worker: each segment as soon as it is decoded, then the whole result.

    Yields ``{"type": "segment", "file": ..., "segment": {...}}`` items and, last,
    ``{"type": "result", "output": <what handler() returns>}``; a failed job yields only
    ``{"error": message}``, which RunPod turns into a FAILED job. With
    ``return_aggregate_stream`` the job's ``/status`` output is the list of all items, whose last
    one holds the same result as the one-shot handler's.
    """
    events: queue.Queue[SegmentEvent | dict[str, Any]] = queue.Queue()

    def work() -> None:
        events.put({"output": _run(job, events.put)})

    worker = threading.Thread(target=work, name=f"job-{_short_id(job)}", daemon=True)
    worker.start()
    while True:
        event = events.get()
        if isinstance(event, SegmentEvent):
            yield {"type": "segment", "file": event.file, "segment": segment_dict(event.segment)}
            continue
        output = event["output"]
        worker.join()
        if "error" in output:
            yield {"error": output["error"]}
        else:
            yield {"type": "result", "output": output}
        return


def main() -> None:
    import runpod

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    quiet_runpod_sdk()
    get_processor()  # load the model before taking jobs, not inside the first one
    if _streaming():
        runpod.serverless.start({"handler": stream_handler, "return_aggregate_stream": True})
    else:
        runpod.serverless.start({"handler": handler})


def _streaming() -> bool:
    return os.environ.get("STREAM_SEGMENTS", "").strip().lower() in ("1", "true", "yes", "on")


if __name__ == "__main__":
    main()
