"""End to end through ``handler.handler`` on the real tiny.en model and real speech."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import srt
import webvtt

from src.config import Settings
from src.request import parse_request
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, b64_file, load_waveform, wav_bytes, wer
from tests.service_helpers import transcribe


def run(handler_module: ModuleType, job_input: Any) -> dict[str, Any]:
    return handler_module.handler({"id": "test-job-0123456789", "input": job_input})


def b64_wav(samples: np.ndarray) -> str:
    return base64.b64encode(wav_bytes(samples)).decode("ascii")


@pytest.fixture(scope="module")
def jfk_result(handler_module: ModuleType, jfk: Clip) -> dict[str, Any]:
    return run(
        handler_module,
        {"audio": {"base64": b64_file(jfk.path)}, "options": {"word_timestamps": True}},
    )


def test_jfk_full_output(jfk_result: dict[str, Any], jfk: Clip) -> None:
    assert "error" not in jfk_result, jfk_result
    t = jfk_result["transcription"]
    # tiny.en gets JFK right bar punctuation (faster-whisper's own test asserts this text).
    assert wer(jfk.text, t["text"]) <= 0.05
    assert t["language"] == "en" and t["language_probability"] == pytest.approx(1.0)
    assert t["duration"] == pytest.approx(jfk.duration_s, abs=0.05)
    assert set(t) == {
        "text",
        "language",
        "language_probability",
        "duration",
        "segments",
        "srt",
        "vtt",
    }

    segments = t["segments"]
    assert segments
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    for s in segments:
        assert 0.0 <= s["start"] <= s["end"] <= t["duration"] + 0.01
        assert {"avg_logprob", "no_speech_prob", "compression_ratio", "words"} <= set(s)
        for w in s["words"]:
            assert s["start"] - 0.01 <= w["start"] <= w["end"] <= s["end"] + 0.01
            assert 0.0 <= w["probability"] <= 1.0

    subtitles = list(srt.parse(t["srt"]))
    assert len(subtitles) == len(segments)
    assert all(sub.end.total_seconds() <= t["duration"] for sub in subtitles)
    assert t["vtt"].startswith("WEBVTT")
    captions = webvtt.from_buffer(io.StringIO(t["vtt"])).captions
    assert [c.text for c in captions] == [sub.content for sub in subtitles]

    meta = jfk_result["metadata"]
    assert (meta["engine"], meta["model"], meta["device"]) == ("faster-whisper", "tiny.en", "cpu")
    assert meta["compute_type"] == "int8"
    assert set(meta["timings"]) == {"download", "decode", "inference"}
    assert meta["processing_time"] >= meta["timings"]["inference"] > 0
    assert meta["realtime_factor"] > 1.0


def test_data_uri_and_output_format(handler_module: ModuleType, jfk: Clip) -> None:
    out = run(
        handler_module,
        {
            "audio": {"base64": "data:audio/flac;base64," + b64_file(jfk.path)},
            "options": {"output_format": "text", "language": "en"},
        },
    )
    assert set(out["transcription"]) == {"text", "language", "language_probability", "duration"}
    assert wer(jfk.text, out["transcription"]["text"]) <= 0.05


def test_leading_silence_keeps_the_original_timeline(handler_module: ModuleType, jfk: Clip) -> None:
    speech = load_waveform(jfk.path)
    padded = np.concatenate([np.zeros(5 * 16000, dtype=np.float32), speech])
    out = run(handler_module, {"audio": {"base64": b64_wav(padded)}})
    segments = out["transcription"]["segments"]
    # The speech starts about 0.3 s into the clip, so at about 5.3 s here (VAD pads 0.4 s).
    assert 4.7 <= segments[0]["start"] <= 5.6
    assert wer(jfk.text, out["transcription"]["text"]) <= 0.05


@pytest.mark.parametrize(
    "kind",
    ["silence", "noise", "hum"],
)
def test_no_speech_gives_no_text(handler_module: ModuleType, kind: str) -> None:
    rng = np.random.default_rng(0)
    n = 20 * 16000
    t = np.arange(n) / 16000
    samples = {
        "silence": np.zeros(n),
        "noise": rng.normal(0.0, 0.1, n),
        "hum": 0.2 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 440 * t),
    }[kind].astype(np.float32)
    out = run(handler_module, {"audio": {"base64": b64_wav(samples)}})
    assert out["transcription"]["text"] == ""
    assert out["transcription"]["segments"] == []
    assert list(srt.parse(out["transcription"]["srt"])) == []


def test_custom_vocabulary(handler_module: ModuleType, jfk: Clip) -> None:
    out = run(
        handler_module,
        {
            "audio": {"base64": b64_file(jfk.path)},
            "options": {
                "word_timestamps": True,
                "custom_vocabulary": {"americans": "Americanos", "your country": "the nation"},
            },
        },
    )
    t = out["transcription"]
    assert "Americanos" in t["text"] and "the nation" in t["text"]
    assert "your country" not in t["text"].lower()
    assert any("Americanos" in w["word"] for s in t["segments"] for w in s["words"])
    assert "Americanos" in t["srt"]


def test_official_worker_shape(handler_module: ModuleType, jfk: Clip) -> None:
    out = run(
        handler_module,
        {"audio_base64": b64_file(jfk.path), "transcription": "srt", "word_timestamps": True},
    )
    assert set(out) == {
        "segments",
        "detected_language",
        "transcription",
        "translation",
        "device",
        "model",
        "word_timestamps",
    }
    assert out["detected_language"] == "en" and out["translation"] is None
    subtitles = list(srt.parse(out["transcription"]))
    assert wer(jfk.text, " ".join(s.content for s in subtitles)) <= 0.05
    assert out["word_timestamps"] and set(out["word_timestamps"][0]) == {"word", "start", "end"}


def _not_audio() -> str:
    return base64.b64encode(b"this is a text file, not audio\n" * 50).decode()


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"audio": {"base64": "AAAA"}, "options": {"beam_sise": 3}}, "options.beam_sise: unknown"),
        ({"audio": {"base64": "!!!not base64!!!"}}, "audio.base64"),
        ({"audio": {"base64": _not_audio()}}, "audio"),
        ({"audio": {"base64": "AAAA"}, "options": {"task": "translate"}}, "English-only"),
        ({"audio": {"base64": "AAAA"}, "options": {"language": "de"}}, "English-only"),
        ({"audio": {"url": "http://127.0.0.1:9/a.wav?token=s3cret"}}, "audio.url"),
        ({"audio": {"url": "http://169.254.169.254/latest/meta-data/"}}, "audio.url"),
        ({"audio": {"url": "file:///etc/passwd"}}, "audio.url"),
        ("not an object", "expected a JSON object"),
        (None, "expected a JSON object"),
    ],
)
def test_errors_are_clear_and_leave_nothing(
    handler_module: ModuleType, job_input: Any, expected: str, private_tmp: Path
) -> None:
    out = run(handler_module, job_input)
    assert set(out) == {"error"}
    assert expected in out["error"]
    assert "Traceback" not in out["error"] and "s3cret" not in out["error"]
    assert list(private_tmp.iterdir()) == []


def test_empty_audio_is_an_error(handler_module: ModuleType) -> None:
    out = run(handler_module, {"audio": {"base64": b64_wav(np.zeros(0, dtype=np.float32))}})
    assert set(out) == {"error"} and "audio" in out["error"]


def test_successful_job_leaves_no_temp_files(
    handler_module: ModuleType, jfk: Clip, private_tmp: Path
) -> None:
    out = run(
        handler_module,
        {"audio": {"base64": b64_file(jfk.path)}, "options": {"output_format": "text"}},
    )
    assert "transcription" in out
    assert list(private_tmp.iterdir()) == []


def test_model_failure_is_reported_and_the_next_job_works(
    handler_module: ModuleType, jfk: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = handler_module.get_processor().engine

    class Exploding:
        """The CTranslate2 model, failing every decode (whichever window the path uses)."""

        def __init__(self, real: object) -> None:
            self._real = real

        def generate(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("CUDA out of memory (simulated)")

        def __getattr__(self, name: str) -> object:
            return getattr(self._real, name)

    job = {"audio": {"base64": b64_file(jfk.path)}, "options": {"output_format": "text"}}
    with monkeypatch.context() as m:
        m.setattr(engine._model, "model", Exploding(engine._model.model))
        out = run(handler_module, job)
    assert set(out) == {"error"} and "transcription failed" in out["error"]
    assert "Traceback" not in out["error"]
    assert wer(jfk.text, run(handler_module, job)["transcription"]["text"]) <= 0.05


def test_url_job_from_a_local_server(
    handler_module: ModuleType, audio_server: str, jfk: Clip, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL job end to end; private hosts allowed only because this processor says so."""
    settings = Settings.from_env({"WHISPER_MODEL": "tiny.en", "ALLOW_PRIVATE_URLS": "true"})
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    url = f"{audio_server}/talks/jfk.flac?X-Amz-Signature=s3cret-token"
    job = parse_request({"audio": {"url": url}, "options": {"output_format": "srt"}})
    with caplog.at_level(logging.DEBUG):
        result = transcribe(processor, job.request, job_id="url-job")
    assert wer(jfk.text, result.transcript.text) <= 0.05
    assert result.timings.download > 0
    assert "s3cret-token" not in caplog.text
    assert "ask not what your country" not in caplog.text.lower()
    # The handler's own processor keeps the default: the same URL is refused.
    refused = run(handler_module, {"audio": {"url": url}})
    assert "audio.url" in refused["error"] and "s3cret" not in refused["error"]


def test_plucked_melody_gives_no_text(handler_module: ModuleType, tmp_path: Path) -> None:
    """Music alone (a plucked arpeggio made with sox) must not turn into invented words."""
    melody = tmp_path / "melody.wav"
    notes = [["synth", "0.4", "pluck", note] for note in ("C4", "E4", "G4", "C5")]
    chain = [arg for i, n in enumerate(notes) for arg in ([":"] if i else []) + n]
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(melody), *chain, "repeat", "12"],
        check=True,
        capture_output=True,
    )
    out = run(handler_module, {"audio": {"base64": b64_file(melody)}})
    assert out["transcription"]["duration"] > 5
    assert out["transcription"]["text"] == ""
