"""Settings from the environment: defaults, parsing, and start-up errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.config import DEFAULT_MODEL, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.engine, s.model, s.model_dir, s.device) == (
        "faster-whisper",
        DEFAULT_MODEL,
        Path(__file__).resolve().parents[1] / "models",  # the checkout's; the image sets /models
        "auto",
    )
    assert s.compute_type is None and s.warm_up is True
    assert s.download.allow_private is False and s.download.max_redirects == 5


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "WHISPER_ENGINE": "OpenAI-Whisper",
            "WHISPER_MODEL": " tiny.en ",
            "DEVICE": "cpu",
            "COMPUTE_TYPE": "float32",
            "CPU_THREADS": "2",
            "MAX_AUDIO_SECONDS": "90.5",
            "MAX_DOWNLOAD_BYTES": "1000",
            "DOWNLOAD_READ_TIMEOUT": "2.5",
            "ALLOW_PRIVATE_URLS": "yes",
            "WARM_UP": "0",
        }
    )
    assert (s.engine, s.model, s.device, s.compute_type) == (
        "openai-whisper",
        "tiny.en",
        "cpu",
        "float32",
    )
    assert (s.cpu_threads, s.max_audio_seconds, s.warm_up) == (2, 90.5, False)
    assert (s.download.max_bytes, s.download.read_timeout) == (1000, 2.5)
    assert s.download.allow_private is True


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WHISPER_ENGINE": "whisper.cpp"}, "WHISPER_ENGINE"),
        ({"DEVICE": "tpu"}, "DEVICE"),
        ({"CPU_THREADS": "two"}, "CPU_THREADS"),
        ({"MAX_DOWNLOAD_BYTES": "-5"}, "MAX_DOWNLOAD_BYTES"),
        ({"MAX_AUDIO_SECONDS": "0"}, "MAX_AUDIO_SECONDS"),
        ({"DOWNLOAD_READ_TIMEOUT": "nan"}, "DOWNLOAD_READ_TIMEOUT"),
        ({"ALLOW_PRIVATE_URLS": "maybe"}, "ALLOW_PRIVATE_URLS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings.from_env(env)
