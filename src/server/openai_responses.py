"""A finished transcript in OpenAI's response shapes, and the stream's events: pure functions.

``json``          ``{"text", "usage"}``
``verbose_json``  ``{"task", "language" (full lowercase name), "duration", "text", "segments"
                  (id from 0, seek, start, end, text, tokens, temperature, avg_logprob,
                  compression_ratio, no_speech_prob), "words" (word, start, end), "usage"}``;
                  segments unless only ``word`` granularity was asked, words when it was
``diarized_json`` ``{"task", "duration", "text", "segments" (type, id, start, end, text,
                  speaker), "usage"}``; speakers are OpenAI's labels ``A``, ``B``, ... in
                  order of first speech, or the name of a known speaker whose voice matched
``text``, ``srt``, ``vtt``  plain text

With ``include[]=logprobs``, ``json`` and ``verbose_json`` carry ``logprobs`` (``token``,
``logprob``, ``bytes``: one entry per word, ``src.live.logprobs``), and so do the stream's deltas
(the segment's words) and ``done``. With ``languages[]`` (or ``model=gpt-transcribe``), ``json``
carries ``languages``: ``[{"code": <the language decoded>}]``, as ``gpt-transcribe`` answers.

``usage`` is ``{"type": "duration", "seconds": <whole seconds of audio>}``, as OpenAI bills
``whisper-1``. Two fields differ by necessity: ``seek`` is the segment's start in 10 ms frames
(Whisper's unit) rather than its decoding window's, and ``tokens`` is empty (the engines do not
keep token ids). Segments carry ``speaker`` when speakers were asked for.

The stream (``stream=true``) is ``transcript.text.delta`` per decoded segment, then one
``transcript.text.done``. Beside OpenAI's fields, a delta carries ``segment`` (the worker's
segment: id, start, end, text) and ``duration`` (the file's, so a client can show progress),
and ``done`` carries the whole response of the asked ``response_format`` (segments with
speakers and words come only there: both are settled once the whole file is decoded). Deltas
are the text as decoded; ``done.text`` is final (custom vocabulary applied). With
``diarized_json``, one ``transcript.text.segment`` per segment (speaker included) comes before
``done``: speakers are known only once the whole file is decoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from src.engines.base import Segment, Transcript
from src.formats import segment_dict, to_srt, to_vtt
from src.languages import LANGUAGES
from src.live.logprobs import segment_logprobs, word_logprobs
from src.live.logprobs import wire as logprobs_wire
from src.request import TranscribeOptions
from src.server.openai_request import AudioRequest, Granularity, ResponseFormat
from src.service.processor import JobResult, ProcessorEvent, SegmentDecoded

_TIME = 3
_PROB = 6


def usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(duration)}


def _segment(index: int, segment: Segment) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": index,
        "seek": round(segment.start * 100),
        "start": round(segment.start, _TIME),
        "end": round(segment.end, _TIME),
        "text": segment.text,
        "tokens": [],
        "temperature": segment.temperature if segment.temperature is not None else 0.0,
        "avg_logprob": round(segment.avg_logprob, _PROB),
        "compression_ratio": round(segment.compression_ratio, _PROB),
        "no_speech_prob": round(segment.no_speech_prob, _PROB),
    }
    if segment.speaker is not None:
        body["speaker"] = segment.speaker
    return body


def _words(segments: Sequence[Segment]) -> list[dict[str, Any]]:
    words: list[dict[str, Any]] = []
    for segment in segments:
        for w in segment.words or ():
            item: dict[str, Any] = {
                "word": w.word.strip(),
                "start": round(w.start, _TIME),
                "end": round(w.end, _TIME),
            }
            if w.speaker is not None:
                item["speaker"] = w.speaker
            words.append(item)
    return words


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


def verbose_json(
    transcript: Transcript, task: str, granularities: frozenset[Granularity]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        # a translation's text is English whatever the audio was
        "language": "english" if task == "translate" else language_name(transcript.language),
        "duration": round(transcript.duration, _TIME),
        "text": transcript.text,
    }
    if not granularities or "segment" in granularities:
        body["segments"] = [_segment(i, s) for i, s in enumerate(transcript.segments)]
    if "word" in granularities:
        body["words"] = _words(transcript.segments)
    body["usage"] = usage(transcript.duration)
    return body


def openai_speakers(segments: Sequence[Segment]) -> dict[str, str]:
    """OpenAI's labels for the worker's: ``A``, ``B``, ... by first speech (``AA``, ``AB``, ...
    past ``Z``); a known speaker's name (not ``SPEAKER_nn``) is kept."""
    labels: dict[str, str] = {}
    for segment in segments:
        speaker = segment.speaker
        if speaker is None or speaker in labels:
            continue
        if not speaker.startswith("SPEAKER_"):
            labels[speaker] = speaker
            continue
        n = sum(1 for k in labels if k.startswith("SPEAKER_"))
        labels[speaker] = _letters(n)
    return labels


def _letters(n: int) -> str:
    return chr(ord("A") + n) if n < 26 else _letters(n // 26 - 1) + chr(ord("A") + n % 26)


def diarized_json(transcript: Transcript) -> dict[str, Any]:
    labels = openai_speakers(transcript.segments)
    return {
        "task": "transcribe",
        "duration": round(transcript.duration, _TIME),
        "text": transcript.text,
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{i}",
                "start": round(s.start, _TIME),
                "end": round(s.end, _TIME),
                "text": s.text.strip(),
                "speaker": labels.get(s.speaker, "A") if s.speaker else "A",
            }
            for i, s in enumerate(transcript.segments)
        ],
        "usage": usage(transcript.duration),
    }


def response_body(
    transcript: Transcript,
    options: TranscribeOptions,
    response_format: ResponseFormat,
    granularities: frozenset[Granularity],
) -> dict[str, Any] | str:
    """The body for ``response_format``: a dict (JSON) or a string (text/plain)."""
    layout = options.subtitles.layout() if options.subtitles is not None else None
    if response_format == "json":
        return {"text": transcript.text, "usage": usage(transcript.duration)}
    if response_format == "verbose_json":
        return verbose_json(transcript, options.task, granularities)
    if response_format == "diarized_json":
        return diarized_json(transcript)
    if response_format == "srt":
        return to_srt(transcript.segments, transcript.duration, layout)
    if response_format == "vtt":
        return to_vtt(transcript.segments, transcript.duration, layout)
    return transcript.text + "\n"


def delta_event(
    segment: Segment, duration: float, first: bool, *, logprobs: bool = False
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "transcript.text.delta",
        "delta": segment.text.lstrip() if first else segment.text,
        "segment": segment_dict(segment),
        "duration": round(duration, _TIME),
    }
    if logprobs:
        event["logprobs"] = logprobs_wire(segment_logprobs(segment))
    return event


def openai_body(transcript: Transcript, parsed: AudioRequest) -> dict[str, Any] | str:
    """``response_body`` with the OpenAI-only fields ``parsed`` asked for (``logprobs``,
    ``languages``)."""
    body = response_body(transcript, parsed.options, parsed.response_format, parsed.granularities)
    if isinstance(body, dict) and parsed.response_format in ("json", "verbose_json"):
        if parsed.logprobs:
            body["logprobs"] = logprobs_wire(word_logprobs(transcript))
        if parsed.response_format == "json" and (
            parsed.languages or parsed.model == "gpt-transcribe"
        ):
            body["languages"] = [{"code": transcript.language}]
        if "usage" in body:  # usage last, as OpenAI orders it
            body["usage"] = body.pop("usage")
    return body


def segment_events(transcript: Transcript) -> list[dict[str, Any]]:
    """``transcript.text.segment`` events: ``diarized_json``'s segments, one event each."""
    return list(diarized_json(transcript)["segments"])


def stream_events(
    event: ProcessorEvent, parsed: AudioRequest, *, first: bool
) -> list[dict[str, Any]]:
    """The Server-Sent Events for one processor event of a ``stream=true`` request."""
    if isinstance(event, SegmentDecoded):
        return [delta_event(event.segment, event.duration, first, logprobs=parsed.logprobs)]
    assert isinstance(event, JobResult)
    events: list[dict[str, Any]] = []
    if parsed.response_format == "diarized_json":
        events += segment_events(event.transcript)
    events.append(done_event(openai_body(event.transcript, parsed), event.transcript.text))
    return events


def done_event(body: dict[str, Any] | str, text: str) -> dict[str, Any]:
    """The last event: OpenAI's ``text``, with the asked response's other fields beside it
    (``usage`` left out: the stream's ``usage`` is token-billed in OpenAI's schema)."""
    event: dict[str, Any] = {"type": "transcript.text.done", "text": text}
    if isinstance(body, dict):
        event.update({k: v for k, v in body.items() if k not in ("text", "usage")})
    else:
        event["response"] = body
    return event
