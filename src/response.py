"""The job's output as RunPod returns it: records become JSON-ready dicts here, and only here.

Two shapes: the native one (``transcription`` + ``metadata``) and, for jobs that came in the
official ``worker-faster_whisper`` shape, that worker's flat output so its clients keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from src.engines.base import ModelInfo, Segment
from src.formats import segment_dict, to_lines, to_srt, to_text, to_vtt
from src.request import CompatFormat, CompatOutput, TranscribeOptions
from src.service.processor import JobResult, LanguageResult, Timings

_ROUND = 3


def _native_transcription(result: JobResult, options: TranscribeOptions) -> dict[str, Any]:
    t = result.transcript
    output_format = options.output_format
    layout = options.subtitles.layout() if options.subtitles is not None else None
    body: dict[str, Any] = {
        "text": t.text,
        "language": t.language,
        "language_probability": round(t.language_probability, 4),
        "duration": round(t.duration, _ROUND),
    }
    if output_format in ("json", "all"):
        body["segments"] = [segment_dict(s) for s in t.segments]
    if output_format in ("srt", "all"):
        body["srt"] = to_srt(t.segments, t.duration, layout)
    if output_format in ("vtt", "all"):
        body["vtt"] = to_vtt(t.segments, t.duration, layout)
    return body


def _model_metadata(model: ModelInfo, timings: Timings, duration: float) -> dict[str, Any]:
    return {
        "engine": model.engine,
        "model": model.model,
        "device": model.device,
        "compute_type": model.compute_type,
        "processing_time": round(timings.total, _ROUND),
        "timings": {
            "download": round(timings.download, _ROUND),
            "decode": round(timings.decode, _ROUND),
            "inference": round(timings.inference, _ROUND),
        },
        "realtime_factor": round(duration / timings.total, 2) if timings.total > 0 else 0.0,
    }


def _metadata(result: JobResult) -> dict[str, Any]:
    metadata = _model_metadata(result.model, result.timings, result.transcript.duration)
    decode = result.decode
    metadata["decode"] = {
        "path": decode.path,
        "beam_size": decode.beam_size,
        "temperatures": list(decode.temperatures),
        "chunks": decode.chunks,
        # the completeness check: stretches of speech no word covered, decoded again on their own
        "regions_redecoded": decode.coverage.redecoded if decode.coverage else 0,
    }
    return metadata


def _compat_text(fmt: CompatFormat, segments: Sequence[Segment], duration: float) -> str:
    if fmt == "plain_text":
        return to_text(segments)
    if fmt == "formatted_text":
        return to_lines(segments)
    if fmt == "srt":
        return to_srt(segments, duration)
    return to_vtt(segments, duration)


def _compat_response(
    result: JobResult, compat: CompatOutput, word_timestamps: bool
) -> dict[str, Any]:
    t = result.transcript
    segments = []
    for s in t.segments:
        data = segment_dict(s)
        data.pop("words", None)
        segments.append(data)
    out: dict[str, Any] = {
        "segments": segments,
        "detected_language": t.language,
        "transcription": _compat_text(compat.transcription, t.segments, t.duration),
        "translation": None,
        "device": result.model.device,
        "model": result.model.model,
    }
    if compat.translate and result.translation is not None:
        tr = result.translation
        out["translation"] = _compat_text(compat.translation, tr.segments, tr.duration)
    if word_timestamps:
        out["word_timestamps"] = [
            {"word": w.word, "start": w.start, "end": w.end}
            for s in t.segments
            for w in (s.words or ())
        ]
    return out


def build_response(
    result: JobResult, options: TranscribeOptions, compat: CompatOutput | None = None
) -> dict[str, Any]:
    """A transcription job's output: the native shape, or the official worker's for compat."""
    if compat is not None:
        return _compat_response(result, compat, options.word_timestamps)
    return {
        "transcription": _native_transcription(result, options),
        "metadata": _metadata(result),
    }


def language_response(result: LanguageResult) -> dict[str, Any]:
    """A ``detect_language`` job's output: the likeliest languages with their probabilities."""
    best = result.languages[0]
    timings = result.timings
    return {
        "language_detection": {
            "language": best.language,
            "probability": round(best.probability, 4),
            "languages": [
                {"language": g.language, "probability": round(g.probability, 4)}
                for g in result.languages
            ],
            "duration": round(result.duration, _ROUND),
        },
        "metadata": _model_metadata(result.model, timings, result.duration),
    }
