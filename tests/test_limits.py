"""Limits on work: MAX_AUDIO_SECONDS from the container's metadata before decoding, then from the
decoded length; every limit comes from an environment variable and is named in the error."""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import src.service.processor as processor_module
from src.audio.decode import probe_duration
from src.config import DownloadLimits, Settings
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, b64_file, wer

JOB_TEMP_GLOB = os.path.join(tempfile.gettempdir(), "whisper-job-*")


def use_settings(
    handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> WhisperProcessor:
    """Make ``handler.handler`` use the loaded engine under settings read from ``env``."""
    settings = Settings.from_env({"WHISPER_MODEL": "tiny.en", "WARM_UP": "false", **env})
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    monkeypatch.setattr(handler_module, "get_processor", lambda: processor)
    return processor


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records each decode the processor starts (the real decoder still runs)."""
    calls: list[dict[str, Any]] = []
    real: Callable[..., np.ndarray] = processor_module.decode_audio

    def spy(path: Path, **kwargs: Any) -> np.ndarray:
        calls.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(processor_module, "decode_audio", spy)
    return calls


def job(path: Path) -> dict[str, Any]:
    return {"id": "limits", "input": {"audio": {"base64": b64_file(path)}, "options": {}}}


def test_declared_duration_over_the_limit_is_refused_before_decoding(
    handler_module: ModuleType,
    jfk: Clip,
    monkeypatch: pytest.MonkeyPatch,
    decode_calls: list[dict[str, Any]],
) -> None:
    use_settings(handler_module, monkeypatch, {"MAX_AUDIO_SECONDS": "5"})
    before = set(glob.glob(JOB_TEMP_GLOB))
    out = handler_module.handler(job(jfk.path))
    assert out == {
        "error": "audio: 11 s is longer than this worker's limit of 5 s (MAX_AUDIO_SECONDS)"
    }
    assert decode_calls == []
    assert set(glob.glob(JOB_TEMP_GLOB)) == before


@pytest.fixture(scope="module")
def undeclared_length(jfk: Clip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK in Matroska written to a pipe: the container declares no duration at all."""
    path = tmp_path_factory.mktemp("limits") / "jfk-streamed.mka"
    with path.open("wb") as out:
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(jfk.path), "-f", "matroska", "-"],
            check=True,
            stdout=out,
        )
    return path


def test_audio_without_a_declared_duration_is_stopped_while_decoding(
    handler_module: ModuleType,
    undeclared_length: Path,
    monkeypatch: pytest.MonkeyPatch,
    decode_calls: list[dict[str, Any]],
) -> None:
    assert probe_duration(undeclared_length) is None
    use_settings(handler_module, monkeypatch, {"MAX_AUDIO_SECONDS": "5"})
    out = handler_module.handler(job(undeclared_length))
    assert set(out) == {"error"}
    assert "longer than the limit of 5 s (MAX_AUDIO_SECONDS)" in out["error"]
    assert decode_calls == [{"denoise": False, "max_seconds": 5.0}]


def test_a_container_that_understates_its_length_is_still_stopped(
    handler_module: ModuleType,
    jfk: Clip,
    monkeypatch: pytest.MonkeyPatch,
    decode_calls: list[dict[str, Any]],
) -> None:
    """Metadata is a claim: a container saying 1 s does not buy an 11 s decode."""
    monkeypatch.setattr(processor_module, "probe_duration", lambda path: 1.0)
    use_settings(handler_module, monkeypatch, {"MAX_AUDIO_SECONDS": "5"})
    out = handler_module.handler(job(jfk.path))
    assert "longer than the limit of 5 s" in out["error"]
    assert len(decode_calls) == 1


def test_audio_within_the_limit_is_transcribed(
    handler_module: ModuleType, jfk: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(handler_module, monkeypatch, {"MAX_AUDIO_SECONDS": "12"})
    out = handler_module.handler(job(jfk.path))
    assert wer(jfk.text, out["transcription"]["text"]) <= 0.05


def test_base64_over_max_download_bytes_is_refused(
    handler_module: ModuleType, jfk: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(handler_module, monkeypatch, {"MAX_DOWNLOAD_BYTES": "1000"})
    out = handler_module.handler(job(jfk.path))
    assert set(out) == {"error"}
    assert "over the limit of 1000 bytes" in out["error"]


def test_every_limit_is_read_from_its_environment_variable() -> None:
    settings = Settings.from_env(
        {
            "MAX_AUDIO_SECONDS": "600",
            "MAX_DOWNLOAD_BYTES": "2048",
            "DOWNLOAD_CONNECT_TIMEOUT": "3",
            "DOWNLOAD_READ_TIMEOUT": "4",
            "DOWNLOAD_TOTAL_TIMEOUT": "120",
            "DOWNLOAD_MAX_REDIRECTS": "0",
        }
    )
    assert settings.max_audio_seconds == 600.0
    assert settings.download == DownloadLimits(
        max_bytes=2048,
        connect_timeout=3.0,
        read_timeout=4.0,
        total_timeout=120.0,
        max_redirects=0,
        allow_private=False,
    )


@pytest.mark.parametrize("raw", ["0", "-1", "inf", "soon"])
def test_a_bad_download_total_timeout_stops_the_worker_at_start_up(raw: str) -> None:
    with pytest.raises(ValueError, match="DOWNLOAD_TOTAL_TIMEOUT"):
        Settings.from_env({"DOWNLOAD_TOTAL_TIMEOUT": raw})
