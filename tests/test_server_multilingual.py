"""The HTTP mode with the multilingual ``base`` model: translation through
``/v1/audio/translations``, language detection in ``verbose_json``, and speakers through
``response_format=diarized_json``, all through the official ``openai`` SDK."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import srt
from openai import OpenAI

from tests.conftest import Clip
from tests.server_helpers import RunningServer, serving, translate
from tests.test_diarization import encoder_file, resemblyzer_wheel  # noqa: F401 (fixtures)
from tests.test_speakers import _accuracy, _true_speaker, conversation  # noqa: F401 (fixture)

ENGLISH_FUNCTION_WORDS = {"the", "and", "of", "to", "in", "is", "a", "was", "that", "it"}
GERMAN_FUNCTION_WORDS = {"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu"}


def share(text: str, vocabulary: set[str]) -> int:
    return sum(w.strip(".,!?").lower() in vocabulary for w in text.split())


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving(model="base") as running:
        running.wait_ready()
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.api, api_key="-", max_retries=0, timeout=600) as c:
        yield c


@pytest.fixture(scope="module")
def german(manifest: list[Clip]) -> Clip:
    return next(c for c in manifest if c.language == "de")


def test_translations_are_english(client: OpenAI, german: Clip) -> None:
    audio = (german.path.name, german.path.read_bytes())
    result = translate(client, file=audio, model="whisper-1")
    assert share(result.text, ENGLISH_FUNCTION_WORDS) >= 2
    assert share(result.text, GERMAN_FUNCTION_WORDS) == 0

    verbose = translate(client, file=audio, model="whisper-1", response_format="verbose_json")
    assert verbose.language == "english"
    assert verbose.model_dump()["task"] == "translate"
    assert verbose.segments and abs(verbose.duration - german.duration_s) < 0.1

    cues = list(srt.parse(translate(client, file=audio, model="whisper-1", response_format="srt")))
    assert cues and share(" ".join(c.content for c in cues), GERMAN_FUNCTION_WORDS) == 0


def test_the_language_is_detected_and_named(client: OpenAI, german: Clip) -> None:
    result = client.audio.transcriptions.create(
        file=(german.path.name, german.path.read_bytes()),
        model="whisper-1",
        response_format="verbose_json",
    )
    assert result.language == "german"
    assert share(result.text, GERMAN_FUNCTION_WORDS) >= 2


def test_diarized_json_labels_the_speakers(
    client: OpenAI,
    conversation: tuple[str, list[tuple[float, float, str]]],  # noqa: F811
    encoder_file: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIARIZATION_MODEL", str(encoder_file))
    audio, turns = conversation
    result = client.audio.transcriptions.create(
        file=("conversation.wav", base64.b64decode(audio)),
        model="whisper-1",
        response_format="diarized_json",
        extra_body={"language": "en"},
    )
    assert result.task == "transcribe"
    segments = result.segments
    assert segments and all(s.type == "transcript.text.segment" for s in segments)
    assert len({s.speaker for s in segments}) == 2
    pairs = [(s.speaker, _true_speaker(turns, s.start, s.end)) for s in segments]
    assert _accuracy(pairs) >= 0.8
