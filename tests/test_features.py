"""Streaming, progress, language detection, several files per job and readable subtitles,
end to end through the handler on real models and real speech."""

from __future__ import annotations

import base64
import os
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import srt

from src.config import Settings
from src.request import parse_request
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, b64_file, wav_bytes, wer
from tests.service_helpers import run_job


def run(handler_module: ModuleType, job_input: Any) -> dict[str, Any]:
    return handler_module.handler({"id": "feature-job", "input": job_input})


def without_timings(output: dict[str, Any]) -> dict[str, Any]:
    """The output minus what differs between two runs of the same job (wall times)."""
    return {k: v for k, v in output.items() if k != "metadata"}


@pytest.fixture(scope="module")
def base_processor() -> WhisperProcessor:
    env = {**os.environ, "WHISPER_MODEL": "base"}
    return WhisperProcessor.from_settings(Settings.from_env(env))


def test_stream_yields_segments_then_the_same_result(
    handler_module: ModuleType, manifest: list[Clip]
) -> None:
    clip = max(
        (c for c in manifest if c.language == "en" and not c.long_form), key=lambda c: c.duration_s
    )
    # no temperature fallback: a fallback decode samples, and two samplings differ
    options = {"word_timestamps": True, "temperature_increment_on_fallback": None}
    job = {"audio": {"base64": b64_file(clip.path)}, "options": options}
    items = list(handler_module.stream_handler({"id": "stream-job", "input": job}))
    segments = [i for i in items if i.get("type") == "segment"]
    assert len(segments) >= 2
    assert items[-1]["type"] == "result" and items.count(items[-1]) == 1
    streamed = items[-1]["output"]
    assert [s["segment"] for s in segments] == streamed["transcription"]["segments"]
    assert without_timings(streamed) == without_timings(run(handler_module, job))
    assert wer(clip.text, streamed["transcription"]["text"]) <= 0.3


def test_stream_of_a_bad_job_is_one_error(handler_module: ModuleType) -> None:
    items = list(
        handler_module.stream_handler({"id": "bad", "input": {"audio": {"base64": "%%%"}}})
    )
    assert len(items) == 1 and "audio.base64" in items[0]["error"]


@pytest.mark.parametrize("vad_filter", [True, False], ids=["batched", "sequential"])
def test_progress_reports_while_a_long_file_decodes(
    handler_module: ModuleType, manifest: list[Clip], vad_filter: bool
) -> None:
    # Both long-audio paths report as they go: the batched one (the default for anything over
    # 30 s) as each chunk and all before it are final, the sequential one segment by segment.
    long_form = next(c for c in manifest if c.long_form)
    options = {"output_format": "text", "vad_filter": vad_filter}
    job = {
        "id": "progress",
        "input": {"audio": {"base64": b64_file(long_form.path)}, "options": options},
    }
    updates = list(handler_module.job_updates(job))
    reports = [u["progress"] for u in updates[:-1]]
    assert set(updates[-1]) == {"output"} and "transcription" in updates[-1]["output"]
    assert all(set(u) == {"progress"} for u in updates[:-1])
    assert len(reports) >= 2
    fractions = [r["fraction"] for r in reports]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 0.9 and fractions[-1] <= 1.0
    assert all(r["status"] == "transcribing" and r["file_count"] == 1 for r in reports)
    segments = [r["segments"] for r in reports]
    assert segments == sorted(segments)


def test_detect_language_top_languages(
    base_processor: WhisperProcessor, manifest: list[Clip]
) -> None:
    for clip in [c for c in manifest if c.language in ("de", "fr", "ja")][:3]:
        job = parse_request(
            {
                "audio": {"base64": b64_file(clip.path)},
                "options": {"task": "detect_language", "top_languages": 3},
            }
        )
        out = run_job(base_processor, job)
        detection = out["language_detection"]
        assert detection["language"] == clip.language
        assert "transcription" not in out
        probabilities = [g["probability"] for g in detection["languages"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert detection["languages"][0]["language"] == clip.language
        assert 0.5 < probabilities[0] <= 1.0 and sum(probabilities) <= 1.0001
        assert out["metadata"]["model"] == "base"


def test_detect_language_needs_a_multilingual_model(handler_module: ModuleType) -> None:
    out = run(handler_module, {"audio": {"base64": "AAAA"}, "options": {"task": "detect_language"}})
    assert set(out) == {"error"} and "multilingual" in out["error"]


def test_several_files_one_bad(handler_module: ModuleType, manifest: list[Clip]) -> None:
    clips = [c for c in manifest if c.language == "en" and c.duration_s < 6][:2]
    junk = base64.b64encode(b"not audio at all " * 20).decode()
    job = {
        "audios": [
            {"name": "first", "base64": b64_file(clips[0].path)},
            {"name": "broken", "base64": junk},
            {"name": "second", "base64": b64_file(clips[1].path)},
        ],
        "options": {"output_format": "text"},
    }
    out = run(handler_module, job)
    assert [r["name"] for r in out["results"]] == ["first", "broken", "second"]
    first, broken, second = out["results"]
    assert set(broken) == {"name", "error"} and "audio" in broken["error"]
    assert wer(clips[0].text, first["transcription"]["text"]) <= 0.3
    assert wer(clips[1].text, second["transcription"]["text"]) <= 0.3
    assert out["summary"] == {**out["summary"], "files": 3, "succeeded": 2, "failed": 1}


def test_several_files_share_the_byte_budget(
    handler_module: ModuleType, manifest: list[Clip]
) -> None:
    clip = next(c for c in manifest if c.path.suffix == ".wav" and c.language == "en")
    size = clip.path.stat().st_size
    settings = Settings.from_env({"WHISPER_MODEL": "tiny.en", "MAX_DOWNLOAD_BYTES": str(size + 10)})
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    job = parse_request(
        {
            "audios": [{"name": f"copy{i}", "base64": b64_file(clip.path)} for i in range(2)],
            "options": {"output_format": "text"},
        }
    )
    out = run_job(processor, job)
    assert "transcription" in out["results"][0]
    assert "over the limit of 10 bytes" in out["results"][1]["error"]


@pytest.mark.parametrize(
    "job_input",
    [
        {"audios": []},
        {"audios": [{"name": "a", "base64": "AA"}, {"name": "a", "base64": "AA"}]},
        {"audio": {"base64": "AA"}, "audios": [{"name": "a", "base64": "AA"}]},
        {"audios": [{"base64": "AA"}]},
    ],
)
def test_several_files_errors(handler_module: ModuleType, job_input: dict[str, Any]) -> None:
    out = run(handler_module, job_input)
    assert (set(out) == {"error"} and "audios" in out["error"]) or "audio" in out["error"]


def test_readable_subtitles(handler_module: ModuleType, manifest: list[Clip]) -> None:
    long_form = next(c for c in manifest if c.long_form)
    speech = base64.b64encode(long_form.path.read_bytes()).decode()
    layout = {"max_chars_per_line": 32, "max_lines_per_cue": 2, "max_cue_duration": 4.0}
    out = run(
        handler_module,
        {"audio": {"base64": speech}, "options": {"output_format": "srt", "subtitles": layout}},
    )
    subtitles = list(srt.parse(out["transcription"]["srt"]))
    assert len(subtitles) > 40
    for sub in subtitles:
        lines = sub.content.split("\n")
        assert 1 <= len(lines) <= 2 and all(len(line) <= 32 for line in lines)
        assert (sub.end - sub.start).total_seconds() <= 4.0 + 1e-6
    starts = [s.start for s in subtitles]
    assert starts == sorted(starts)
    text = " ".join(s.content.replace("\n", " ") for s in subtitles)
    assert wer(long_form.text, text) <= 0.15


def test_silence_job_streams_only_the_result(handler_module: ModuleType) -> None:
    silence = base64.b64encode(wav_bytes(np.zeros(16000 * 5, dtype=np.float32))).decode()
    items = list(
        handler_module.stream_handler({"id": "s", "input": {"audio": {"base64": silence}}})
    )
    assert len(items) == 1 and items[0]["output"]["transcription"]["text"] == ""
