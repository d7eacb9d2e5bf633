"""One parsed job, run to its output dict: the task chosen, one file or several.

``handler.py`` calls ``run_job`` and turns exceptions into ``{"error": ...}``. A several-files job
(``audios``) never fails as a whole for one bad file: that file's entry carries its error and the
others their results; the files share one download budget (``MAX_DOWNLOAD_BYTES``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from src.engines.base import Segment
from src.errors import WorkerError
from src.processor import WhisperProcessor
from src.request import AudioInput, Job, NamedAudio, TranscribeOptions, TranscriptionRequest
from src.response import build_response, language_response

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentEvent:
    """A segment just decoded, with where it stands in its file (for streaming and progress)."""

    segment: Segment
    #: the file's whole duration in seconds
    duration: float
    file: str | None
    file_index: int
    file_count: int


EventSink = Callable[[SegmentEvent], None]


def run_job(
    processor: WhisperProcessor,
    job: Job,
    *,
    job_id: str = "-",
    on_segment: EventSink | None = None,
) -> dict[str, Any]:
    """The job's output dict. Raises ``WorkerError`` for a one-file job that fails."""
    request = job.request
    if request.audios is not None:
        return _run_several(processor, request.audios, request.options, job_id, on_segment)
    assert request.audio is not None  # the request model guarantees one of the two
    output, _ = _run_one(processor, job, request.audio, job_id, on_segment, None, 0, 1, None)
    return output


def _run_one(
    processor: WhisperProcessor,
    job: Job,
    audio: AudioInput,
    job_id: str,
    on_segment: EventSink | None,
    name: str | None,
    index: int,
    count: int,
    max_bytes: int | None,
) -> tuple[dict[str, Any], int]:
    """One file's output, and the bytes of audio it fetched."""
    options = job.request.options
    if options.task == "detect_language":
        detected = processor.detect_language(audio, options, job_id=job_id, max_bytes=max_bytes)
        return language_response(detected), detected.input_bytes

    def forward(segment: Segment, duration: float) -> None:
        if on_segment is not None:
            on_segment(SegmentEvent(segment, duration, name, index, count))

    result = processor.process_audio(
        audio,
        options,
        job_id=job_id,
        also_translate=job.compat is not None and job.compat.translate,
        on_segment=forward,
        max_bytes=max_bytes,
    )
    return build_response(result, options, job.compat), result.input_bytes


def _run_several(
    processor: WhisperProcessor,
    audios: list[NamedAudio],
    options: TranscribeOptions,
    job_id: str,
    on_segment: EventSink | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    budget = processor.settings.download.max_bytes
    results: list[dict[str, Any]] = []
    job = Job(request=TranscriptionRequest(audios=audios, options=options))
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
            output, used = _run_one(
                processor, job, audio, job_id, on_segment, audio.name, index, len(audios), budget
            )
            entry.update(output)
            budget -= used
        except WorkerError as e:
            logger.info("job %s: file %d failed: %s", job_id, index, type(e).__name__)
            entry["error"] = str(e)
        results.append(entry)
    failed = sum("error" in r for r in results)
    return {
        "results": results,
        "summary": {
            "files": len(results),
            "succeeded": len(results) - failed,
            "failed": failed,
            "processing_time": round(time.perf_counter() - started, 3),
        },
    }
