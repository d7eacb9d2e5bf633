"""What only tests and benches need of the model service: one request collected to its result.

The doors consume the service's events as they come (``WhisperProcessor.events``,
``src.jobs.job_events``); a test often wants only the end of them.
"""

from __future__ import annotations

from typing import Any

from src.jobs import JobOutput, job_events
from src.request import Job, TranscriptionRequest
from src.service.processor import JobResult, WhisperProcessor


def transcribe(
    processor: WhisperProcessor,
    request: TranscriptionRequest,
    *,
    job_id: str = "-",
    also_translate: bool = False,
) -> JobResult:
    """A one-file request's result (its ``JobResult`` event)."""
    assert request.audio is not None, "a one-file request"
    for event in processor.events(
        request.audio, request.options, job_id=job_id, also_translate=also_translate
    ):
        if isinstance(event, JobResult):
            return event
    raise AssertionError("the decode ended without a result")


def run_job(processor: WhisperProcessor, job: Job, *, job_id: str = "-") -> dict[str, Any]:
    """A parsed job's output dict (its last event), as the queue handler returns it."""
    output: dict[str, Any] = {}
    for event in job_events(processor, job, job_id=job_id):
        if isinstance(event, JobOutput):
            output = event.output
    return output
