"""RunPod serverless entry point: parse the job once, run the processor, map errors.

    python handler.py                       runs the job in test_input.json (RunPod's local mode)
    python handler.py --test_input '{...}'  runs any job
    python handler.py --rp_serve_api        serves RunPod's local test API

This file stays thin: the request model, the processor and the response shapes live in ``src/``.
It is the only place where exceptions become RunPod's ``{"error": "..."}``.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from typing import Any

# The RunPod SDK logs every job's whole output (the transcript) at DEBUG, and DEBUG is its
# default. Transcripts must never reach logs, so the worker's default is INFO; main() also drops
# the SDK's DEBUG lines when someone sets RUNPOD_LOG_LEVEL=DEBUG (src/logging_setup.py).
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

from src.config import Settings
from src.errors import WorkerError
from src.logging_setup import configure_logging, quiet_runpod_sdk
from src.processor import WhisperProcessor
from src.request import parse_request
from src.response import build_response

logger = logging.getLogger("handler")


@functools.cache
def get_processor() -> WhisperProcessor:
    """The process-wide processor: the model is loaded (and warmed up) on first use only."""
    return WhisperProcessor.from_settings(Settings.from_env())


def _short_id(job: dict[str, Any]) -> str:
    return str(job.get("id") or "-")[:12]


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Transcribe one RunPod job; returns the output, or ``{"error": message}``."""
    job_id = _short_id(job)
    try:
        parsed = parse_request(job.get("input"))
        processor = get_processor()
        also_translate = parsed.compat is not None and parsed.compat.translate
        result = processor.process(parsed.request, job_id=job_id, also_translate=also_translate)
        return build_response(parsed, result)
    except WorkerError as e:
        logger.info("job %s failed: %s", job_id, type(e).__name__)
        return {"error": str(e)}
    except Exception as e:  # a bug or a fault we did not foresee: keep the worker up
        # The frames, never the message: an exception's text can quote a URL or transcript.
        frames = "".join(traceback.format_tb(e.__traceback__))
        logger.error("job %s: unexpected %s\n%s", job_id, type(e).__name__, frames)
        return {"error": f"internal error ({type(e).__name__}); the job was not completed"}


def main() -> None:
    import runpod

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    quiet_runpod_sdk()
    get_processor()  # load the model before taking jobs, not inside the first one
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
