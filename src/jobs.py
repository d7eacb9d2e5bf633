"""One parsed job, run as a stream of events: the task chosen, one file or several.

``job_events`` is the queue door's pipeline: a ``SegmentEvent`` for each segment as soon as it is
final (with where it stands among the job's files), then one ``JobOutput`` holding the job's
output dict. ``handler.py`` turns the events into progress reports or ``/stream`` items (and a
failure into a last ``JobFailed``), the native HTTP route into its reply or Server-Sent Events.
A several-files job (``audios``) never fails as a whole for one bad file: that file's entry
carries its error and the others their results; the files share one download budget
(``MAX_DOWNLOAD_BYTES``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from src.engines.base import Segment
from src.errors import WorkerError
from src.request import AudioInput, Job, NamedAudio, TranscribeOptions
from src.response import build_response, language_response
from src.service.processor import JobResult, SegmentDecoded, WhisperProcessor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentEvent:
    """A segment just decoded, with where it stands in its file and its job."""

    segment: Segment
    #: the file's whole duration in seconds
    duration: float
    file: str | None
    file_index: int
    file_count: int


@dataclass(frozen=True)
class JobOutput:
    """The job's output dict (what the queue handler returns), always the last event."""

    output: dict[str, Any]


@dataclass(frozen=True)
class JobFailed:
    """The job failed as a whole: what the caller may read (never a traceback). The queue
    door's own last event (``handler.py``); ``job_events`` raises instead."""

    message: str


#: what ``job_events`` yields
JobProgress = SegmentEvent | JobOutput
#: what the queue door's consumers read: the job's events, or its failure last
JobEvent = SegmentEvent | JobOutput | JobFailed


@dataclass(frozen=True)
class _FileDone:
    """One file's output and the bytes of audio it fetched (its share of the job's budget)."""

    output: dict[str, Any]
    input_bytes: int


def job_events(
    processor: WhisperProcessor, job: Job, *, job_id: str = "-"
) -> Iterator[JobProgress]:
    """The job's events. Raises ``WorkerError`` for a one-file job that fails."""
    request = job.request
    if request.audios is not None:
        yield from _several(processor, job, request.audios, request.options, job_id)
        return
    assert request.audio is not None  # the request model guarantees one of the two
    output: dict[str, Any] = {}
    for event in _one(processor, job, request.audio, job_id, None, 0, 1, None):
        if isinstance(event, SegmentEvent):
            yield event
        else:
            output = event.output
    yield JobOutput(output)


def _one(
    processor: WhisperProcessor,
    job: Job,
    audio: AudioInput,
    job_id: str,
    name: str | None,
    index: int,
    count: int,
    max_bytes: int | None,
) -> Iterator[SegmentEvent | _FileDone]:
    """One file's segment events, then its output and the bytes of audio it fetched."""
    options = job.request.options
    if options.task == "detect_language":
        detected = processor.detect_language(audio, options, job_id=job_id, max_bytes=max_bytes)
        yield _FileDone(language_response(detected), detected.input_bytes)
        return
    events = processor.events(
        audio,
        options,
        job_id=job_id,
        also_translate=job.compat is not None and job.compat.translate,
        max_bytes=max_bytes,
    )
    for event in events:
        if isinstance(event, SegmentDecoded):
            yield SegmentEvent(event.segment, event.duration, name, index, count)
        elif isinstance(event, JobResult):
            yield _FileDone(build_response(event, options, job.compat), event.input_bytes)


def _several(
    processor: WhisperProcessor,
    job: Job,
    audios: list[NamedAudio],
    options: TranscribeOptions,
    job_id: str,
) -> Iterator[JobProgress]:
    started = time.perf_counter()
    budget = processor.settings.download.max_bytes
    results: list[dict[str, Any]] = []
    for index, audio in enumerate(audios):
        entry: dict[str, Any] = {"name": audio.name}
        if budget <= 0:
            entry["error"] = (
                f"audios[{index}]: the job's files together exceed the worker's limit of "
                f"{processor.settings.download.max_bytes} bytes (MAX_DOWNLOAD_BYTES)"
            )
            results.append(entry)
            continue
        try:
            for event in _one(
                processor, job, audio, job_id, audio.name, index, len(audios), budget
            ):
                if isinstance(event, SegmentEvent):
                    yield event
                else:
                    entry.update(event.output)
                    budget -= event.input_bytes
        except WorkerError as e:
            logger.info("job %s: file %d failed: %s", job_id, index, type(e).__name__)
            entry["error"] = str(e)
        results.append(entry)
    failed = sum("error" in r for r in results)
    yield JobOutput(
        {
            "results": results,
            "summary": {
                "files": len(results),
                "succeeded": len(results) - failed,
                "failed": failed,
                "processing_time": round(time.perf_counter() - started, 3),
            },
        }
    )
