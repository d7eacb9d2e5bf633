"""What an OpenAI file request adds around the model service's decode: the language chosen
among ``languages[]`` candidates before it, known speakers named after it.

``file_events`` is the route's iterator of processor events (run in a worker thread, like the
decode it wraps). Everything that can fail because of the request (an unreadable reference
clip, a language the model cannot serve) fails before its first event, so the route still
answers it with a 400 in OpenAI's shape, streamed or not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

from src.audio.source import UploadedAudio
from src.errors import AudioError
from src.request import TranscribeOptions
from src.server.known_speakers import name_speakers, reference_prints
from src.server.openai_request import AudioRequest
from src.service.processor import JobResult, ProcessorEvent, WhisperProcessor

logger = logging.getLogger(__name__)


def file_events(
    processor: WhisperProcessor, parsed: AudioRequest, job_id: str
) -> Iterator[ProcessorEvent]:
    """The decode's events for ``parsed``, with its OpenAI-only fields honoured."""
    options = parsed.options
    prints = reference_prints(parsed.known_speakers) if parsed.known_speakers else {}
    if len(parsed.languages) > 1 and options.language is None:
        options = options.model_copy(
            update={"language": restricted_language(processor, parsed, options, job_id)}
        )
    for event in processor.events(UploadedAudio(parsed.upload.path), options, job_id=job_id):
        if isinstance(event, JobResult) and prints:
            event = replace(
                event, transcript=name_speakers(parsed.upload.path, event.transcript, prints)
            )
        yield event


def restricted_language(
    processor: WhisperProcessor,
    parsed: AudioRequest,
    options: TranscribeOptions,
    job_id: str,
) -> str:
    """The likeliest of the candidate languages: Whisper's detection over all its languages
    (on the first 30 s of speech), read only for the candidates. An English-only model serves
    ``en`` when it is a candidate (and refuses the others as for ``language``)."""
    candidates = parsed.languages
    if not processor.info.multilingual:
        return "en" if "en" in candidates else candidates[0]
    try:
        result = processor.detect_language(
            UploadedAudio(parsed.upload.path),
            options.model_copy(update={"top_languages": 100}),
            job_id=job_id,
        )
    except AudioError:  # no speech to detect from: the decode will find none either
        return candidates[0]
    for guess in result.languages:
        if guess.language in candidates:
            logger.info(
                "job %s: language %s of %d candidates", job_id, guess.language, len(candidates)
            )
            return guess.language
    return candidates[0]
