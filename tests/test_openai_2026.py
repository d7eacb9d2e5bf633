"""OpenAI's 2026 speech API fields, sent by the newest ``openai`` SDK and read back through its own
types: model names (``-diarize``), ``languages[]``, ``keywords[]``, ``include[]=logprobs``,
``chunking_strategy``, known speakers, OpenAI's speaker labels, ``transcript.text.segment``; and
on the Realtime socket ``semantic_vad``, ``idle_timeout_ms``, ``include`` logprobs,
``languages``, ``keywords``, ``noise_reduction`` and the realtime-only model names.

Real model (tiny.en), real speech from the shared benchmark, a real server on a port.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pydantic
import pytest
from openai import OpenAI
from openai.types.audio import (
    Transcription,
    TranscriptionDiarized,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionTextSegmentEvent,
    TranscriptionVerbose,
)
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequestParam

from bench.diarization_eval import speaker_clips
from src.engines.base import VadParameters
from src.server.openai_request import parse_audio_request
from src.server.uploads import Form, UploadedFile
from tests.conftest import BENCHMARK_DIR, Clip, load_waveform, wer
from tests.server_helpers import API_KEY, RunningServer, serving
from tests.test_live_realtime import Live, connect, pcm24k, session_update

WER_LIMIT = 0.15
SHORT = "en_ls-dev-clean_2412-153948-0002.flac"  # 3.7 s
SDK_SESSION: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
    RealtimeTranscriptionSessionCreateRequestParam
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving(api_key=API_KEY) as running:
        running.wait_ready()
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.api, api_key=API_KEY, max_retries=0, timeout=600) as c:
        yield c


@pytest.fixture(scope="module")
def short(manifest: list[Clip]) -> Clip:
    return next(c for c in manifest if c.path.name == SHORT)


def upload(clip: Clip) -> tuple[str, bytes]:
    return (clip.path.name, clip.path.read_bytes())


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode("ascii")


# ---------------------------------------------------------------------------- files: model names


@pytest.mark.parametrize(
    "model",
    ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe", "my-own-name"],
)
def test_every_model_name_is_served(client: OpenAI, short: Clip, model: str) -> None:
    result = client.audio.transcriptions.create(file=upload(short), model=model)
    assert isinstance(result, Transcription)
    assert wer(short.text, result.text) < WER_LIMIT


def test_diarize_model_defaults_to_diarized_json_with_openai_labels(
    client: OpenAI, short: Clip
) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        file=upload(short), model="gpt-4o-transcribe-diarize"
    )
    body = raw.http_response.json()
    result = TranscriptionDiarized.model_validate(body)  # OpenAI's shape, field by field
    assert result.segments
    assert {s.speaker for s in result.segments} == {"A"}  # one reader: OpenAI's first label
    assert all(
        s.type == "transcript.text.segment" and s.id.startswith("seg_") for s in result.segments
    )
    assert wer(short.text, result.text) < WER_LIMIT


# ------------------------------------------------------------------------ languages[], keywords[]


def test_one_language_is_the_language_and_comes_back_as_languages(
    client: OpenAI, short: Clip
) -> None:
    result = client.audio.transcriptions.create(
        file=upload(short), model="gpt-transcribe", languages=["en"]
    )
    assert result.languages is not None
    assert [language.code for language in result.languages] == ["en"]
    assert wer(short.text, result.text) < WER_LIMIT


def test_keywords_are_taken_and_the_text_stays_right(client: OpenAI, short: Clip) -> None:
    result = client.audio.transcriptions.create(
        file=upload(short), model="gpt-transcribe", keywords=["Kubernetes", "Qwen"]
    )
    assert wer(short.text, result.text) < WER_LIMIT


#: clips where tiny.en misspells a rare name, and the name (bench/keywords.py measures five)
RARE_NAMES = {
    "en_ls-test-clean_1221-135766-0002.wav": "Hester Prynne",
    "en_ls-dev-clean_3752-4944-0000.flac": "Frere",
    "en_fleurs_006.ogg": "Marianas",
}


@pytest.mark.parametrize("name", list(RARE_NAMES))
def test_keywords_bias_the_decoder_toward_a_rare_name(
    client: OpenAI, manifest: list[Clip], name: str
) -> None:
    clip = next(c for c in manifest if c.path.name == name)
    keyword = RARE_NAMES[name]
    plain = client.audio.transcriptions.create(file=upload(clip), model="gpt-transcribe")
    biased = client.audio.transcriptions.create(
        file=upload(clip), model="gpt-transcribe", keywords=[keyword]
    )
    assert keyword not in plain.text
    assert keyword in biased.text
    assert wer(clip.text, biased.text) <= wer(clip.text, plain.text)


@pytest.fixture(scope="module")
def multilingual() -> Iterator[OpenAI]:
    with serving(model="base", api_key=API_KEY) as running:
        running.wait_ready()
        with OpenAI(base_url=running.api, api_key=API_KEY, max_retries=0, timeout=600) as c:
            yield c


def test_several_languages_restrict_the_detection(
    multilingual: OpenAI, manifest: list[Clip]
) -> None:
    """German speech: with German among the candidates it is German; with only French and
    Spanish offered, the detection picks one of those, never German."""
    german = next(c for c in manifest if c.path.name == "de_fleurs_004.ogg")
    among = multilingual.audio.transcriptions.create(
        file=upload(german), model="gpt-transcribe", languages=["fr", "de"]
    )
    assert among.languages is not None and [x.code for x in among.languages] == ["de"]
    assert wer(german.text, among.text) < 0.5  # base on German: a rough text, in German
    outside = multilingual.audio.transcriptions.create(
        file=upload(german), model="gpt-transcribe", languages=["fr", "es"]
    )
    assert outside.languages is not None
    assert [x.code for x in outside.languages] in (["fr"], ["es"])


# ----------------------------------------------------------------------------- include[]=logprobs


def _check_logprobs(entries: list[Any], text: str) -> None:
    assert entries
    for entry in entries:
        assert entry.token
        assert entry.logprob is not None and entry.logprob <= 0.0
        assert (
            entry.bytes is not None and bytes(int(b) for b in entry.bytes).decode() == entry.token
        )
    joined = "".join(e.token for e in entries).strip()
    assert joined == text.strip()


def test_logprobs_in_json(client: OpenAI, short: Clip) -> None:
    result = client.audio.transcriptions.create(
        file=upload(short), model="gpt-4o-transcribe", include=["logprobs"]
    )
    assert result.logprobs is not None
    _check_logprobs(result.logprobs, result.text)
    # a clearly spoken clip: most words are confident
    confident = [e for e in result.logprobs if e.logprob is not None and math.exp(e.logprob) > 0.5]
    assert len(confident) >= len(result.logprobs) * 0.6


def test_logprobs_in_stream_deltas_and_done(client: OpenAI, short: Clip) -> None:
    stream = client.audio.transcriptions.create(
        file=upload(short), model="gpt-4o-mini-transcribe", include=["logprobs"], stream=True
    )
    events = list(stream)
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert deltas and all(d.logprobs for d in deltas)
    _check_logprobs(
        [entry for d in deltas for entry in d.logprobs or []], "".join(d.delta for d in deltas)
    )
    assert done.logprobs is not None
    assert wer(short.text, done.text) < WER_LIMIT


# ------------------------------------------------------------------------------ chunking_strategy


def test_chunking_strategy_auto_and_server_vad(client: OpenAI, jfk: Clip) -> None:
    auto = client.audio.transcriptions.create(
        file=upload(jfk), model="gpt-4o-transcribe", chunking_strategy="auto"
    )
    assert wer(jfk.text, auto.text) < WER_LIMIT
    tuned = client.audio.transcriptions.create(
        file=upload(jfk),
        model="gpt-4o-transcribe",
        response_format="verbose_json",
        chunking_strategy={
            "type": "server_vad",
            "threshold": 0.5,
            "silence_duration_ms": 200,
            "prefix_padding_ms": 100,
        },
    )
    assert isinstance(tuned, TranscriptionVerbose)
    assert wer(jfk.text, tuned.text) < WER_LIMIT


def test_chunking_strategy_maps_onto_the_vad(tmp_path: Path) -> None:
    """The SDK's form fields for a ``server_vad`` strategy become the VAD's parameters."""
    audio = UploadedFile(tmp_path / "a.wav", "a.wav", 0)
    form = Form(
        fields={
            "model": ["gpt-4o-transcribe"],
            "chunking_strategy[type]": ["server_vad"],
            "chunking_strategy[threshold]": ["0.4"],
            "chunking_strategy[silence_duration_ms]": ["200"],
            "chunking_strategy[prefix_padding_ms]": ["100"],
        },
        files={"file": audio},
    )
    parsed = parse_audio_request(form, "transcriptions")
    assert parsed.options.vad_filter
    assert parsed.options.vad_parameters == VadParameters(
        threshold=0.4, min_silence_duration_ms=200, speech_pad_ms=100
    )
    auto = Form(fields={"chunking_strategy": ["auto"]}, files={"file": audio})
    assert parse_audio_request(auto, "transcriptions").options.vad_parameters == VadParameters()


# ---------------------------------------------------------------------------------- known speakers


@pytest.fixture(scope="module")
def conversation() -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Two LibriSpeech readers taking turns (1988, 2412, 1988), and a reference clip of each
    from another recording of theirs (trimmed to 6 s); and where the second reader starts."""
    clips = speaker_clips(BENCHMARK_DIR)
    a, b = clips["1988"], clips["2412"]
    gap = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate(
        [load_waveform(a[0].path), gap, load_waveform(b[0].path), gap, load_waveform(a[1].path)]
    )
    references = {
        "agent": load_waveform(a[3].path)[: 6 * 16000],
        "customer": load_waveform(b[2].path)[: 6 * 16000],
    }
    return audio, references, (len(load_waveform(a[0].path)) + len(gap)) / 16000


def test_known_speakers_are_named(
    client: OpenAI, conversation: tuple[np.ndarray, dict[str, np.ndarray], float]
) -> None:
    audio, references, second = conversation
    result = client.audio.transcriptions.create(
        file=("talk.wav", wav_bytes(audio)),
        model="gpt-4o-transcribe-diarize",
        response_format="diarized_json",
        known_speaker_names=list(references),
        known_speaker_references=[data_url(clip) for clip in references.values()],
    )
    assert isinstance(result, TranscriptionDiarized)
    speakers = [s.speaker for s in result.segments]
    assert set(speakers) == {"agent", "customer"}
    first_b = next(s.start for s in result.segments if s.speaker == "customer")
    # reader 1988 speaks first, then 2412
    assert speakers[0] == "agent"
    assert abs(first_b - second) < 1.5


def test_unknown_voices_keep_openai_letters(
    client: OpenAI, conversation: tuple[np.ndarray, dict[str, np.ndarray], float]
) -> None:
    """A reference of a reader absent from the talk: no speaker takes that name, and the two
    readers are OpenAI's ``A`` and ``B`` in order of first speech, streamed as
    ``transcript.text.segment`` events before ``done``."""
    audio, _, _ = conversation
    stranger = load_waveform(next(iter(speaker_clips(BENCHMARK_DIR)["3752"])).path)[: 6 * 16000]
    stream = client.audio.transcriptions.create(
        file=("talk.wav", wav_bytes(audio)),
        model="gpt-4o-transcribe-diarize",
        response_format="diarized_json",
        known_speaker_names=["stranger"],
        known_speaker_references=[data_url(stranger)],
        stream=True,
    )
    events = list(stream)
    segments = [e for e in events if isinstance(e, TranscriptionTextSegmentEvent)]
    assert segments, [type(e).__name__ for e in events]
    assert {s.speaker for s in segments} == {"A", "B"}
    assert segments[0].speaker == "A"
    assert isinstance(events[-1], TranscriptionTextDoneEvent)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"include[]": "tokens"}, "include[]"),
        ({"languages[]": "klingon"}, "languages[]"),
        ({"chunking_strategy": "sometimes"}, "chunking_strategy"),
        (
            {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "3"},
            "chunking_strategy.threshold",
        ),
        (
            {"chunking_strategy[type]": "server_vad", "chunking_strategy[speed]": "3"},
            "chunking_strategy.speed",
        ),
        (
            {"known_speaker_names[]": "agent", "response_format": "diarized_json"},
            "known_speaker_names[]",
        ),
        (
            {
                "known_speaker_names[]": "agent",
                "known_speaker_references[]": "https://example.com/a.wav",
                "response_format": "diarized_json",
            },
            "known_speaker_references[]",
        ),
        (
            {
                "known_speaker_names[]": "agent",
                "known_speaker_references[]": "data:audio/wav;base64,AAAA",
                "response_format": "diarized_json",
            },
            "known_speaker_references[]",
        ),
        (
            {
                "known_speaker_names[]": "agent",
                "known_speaker_references[]": "data:audio/wav;base64,AAAA",
            },
            "known_speaker_names[]",
        ),
        ({"include[]": "logprobs", "response_format": "srt"}, "include[]"),
    ],
)
def test_bad_values_are_400_naming_the_field(
    client: OpenAI, short: Clip, fields: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=upload(short), model="whisper-1", extra_body=fields)
    error = caught.value
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.body["type"] == "invalid_request_error"
    assert error.body["param"] == param


# ------------------------------------------------------------------------------ realtime socket


def _session_payload(**audio_input: Any) -> dict[str, Any]:
    """A session.update whose session is checked against the SDK's own request type first."""
    event = session_update(**audio_input)
    SDK_SESSION.validate_python(event["session"])
    return event


async def _speak(live: Live, samples: np.ndarray, gap_s: float = 1.5) -> None:
    """The clip with silence around it, sent faster than real time in 100 ms chunks."""
    silence = np.zeros(int(gap_s * 16000), dtype=np.float32)
    data = pcm24k(np.concatenate([silence, samples, silence]))
    step = 4800
    for i in range(0, len(data), step):
        await live.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(data[i : i + step]).decode(),
            }
        )
        await asyncio.sleep(0.02)


def test_realtime_semantic_vad_logprobs_languages_keywords(
    server: RunningServer, short: Clip
) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(server) as live:
            await live.until("session.created")
            update = _session_payload(
                transcription={
                    "model": "gpt-4o-transcribe",
                    "languages": ["en"],
                    "keywords": ["Bernard"],
                    "prompt": "An audiobook.",
                },
                turn_detection={"type": "semantic_vad", "eagerness": "high"},
                noise_reduction={"type": "near_field"},
            )
            update["session"]["include"] = ["item.input_audio_transcription.logprobs"]
            await live.send(update)
            updated = await live.until("session.updated")
            await _speak(live, load_waveform(short.path))
            completed = await live.until("conversation.item.input_audio_transcription.completed")
            return updated, completed

    updated, completed = asyncio.run(run())
    audio_input = updated["session"]["audio"]["input"]
    assert audio_input["turn_detection"] == {"type": "semantic_vad", "eagerness": "high"}
    assert audio_input["noise_reduction"] == {"type": "near_field"}
    assert audio_input["transcription"]["languages"] == ["en"]
    assert audio_input["transcription"]["language"] == "en"
    assert audio_input["transcription"]["keywords"] == ["Bernard"]
    assert updated["session"]["include"] == ["item.input_audio_transcription.logprobs"]
    assert wer(short.text, completed["transcript"]) < WER_LIMIT
    logprobs = completed["logprobs"]
    assert logprobs and all(e["logprob"] <= 0 for e in logprobs)
    assert "".join(e["token"] for e in logprobs).strip() == completed["transcript"]


@pytest.mark.parametrize("eagerness", ["low", "medium", "high", "auto"])
def test_realtime_semantic_vad_each_eagerness_ends_the_turn(
    server: RunningServer, short: Clip, eagerness: str
) -> None:
    async def run() -> dict[str, Any]:
        async with connect(server) as live:
            await live.until("session.created")
            await live.send(
                _session_payload(
                    transcription={"model": "gpt-4o-mini-transcribe", "language": "en"},
                    turn_detection={"type": "semantic_vad", "eagerness": eagerness},
                )
            )
            await live.until("session.updated")
            # low waits up to 8 s after an unfinished-sounding turn: enough silence for it
            await _speak(live, load_waveform(short.path), gap_s=2.5 if eagerness != "low" else 8.5)
            return await live.until("conversation.item.input_audio_transcription.completed")

    completed = asyncio.run(run())
    assert wer(short.text, completed["transcript"]) < WER_LIMIT


def test_realtime_idle_timeout_triggers(server: RunningServer) -> None:
    async def run() -> list[dict[str, Any]]:
        async with connect(server) as live:
            await live.until("session.created")
            await live.send(
                _session_payload(
                    turn_detection={"type": "server_vad", "idle_timeout_ms": 1000},
                )
            )
            await live.until("session.updated")
            await _speak(live, np.zeros(0, dtype=np.float32), gap_s=0.75)
            await _speak(live, np.zeros(0, dtype=np.float32), gap_s=0.75)
            triggered = await live.until("input_audio_buffer.timeout_triggered", timeout=30)
            committed = await live.until("input_audio_buffer.committed", timeout=30)
            completed = await live.until(
                "conversation.item.input_audio_transcription.completed", timeout=30
            )
            return [triggered, committed, completed]

    triggered, committed, completed = asyncio.run(run())
    assert triggered["audio_end_ms"] - triggered["audio_start_ms"] >= 1000
    assert committed["item_id"] == triggered["item_id"] == completed["item_id"]
    assert completed["transcript"] == ""


def test_realtime_only_models_take_client_commits(server: RunningServer, short: Clip) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with connect(server) as live:
            await live.until("session.created")
            await live.send(
                _session_payload(
                    transcription={"model": "gpt-live-transcribe", "language": "en"},
                )
            )
            updated = await live.until("session.updated")
            await live.send(
                _session_payload(turn_detection={"type": "server_vad"}),
            )
            refused = await live.until("error")
            await _speak(live, load_waveform(short.path), gap_s=0.3)
            await live.send({"type": "input_audio_buffer.commit"})
            completed = await live.until("conversation.item.input_audio_transcription.completed")
            return updated, refused, completed

    updated, refused, completed = asyncio.run(run())
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    assert refused["error"]["param"] == "session.audio.input.turn_detection"
    assert wer(short.text, completed["transcript"]) < WER_LIMIT


@pytest.mark.parametrize(
    ("audio_input", "param"),
    [
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}},
            "session.audio.input.turn_detection.eagerness",
        ),
        (
            {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 10}},
            "session.audio.input.turn_detection.idle_timeout_ms",
        ),
        (
            {"transcription": {"languages": ["en", "xx"]}},
            "session.audio.input.transcription.languages[1]",
        ),
        ({"noise_reduction": {"type": "studio"}}, "session.audio.input.noise_reduction.type"),
    ],
)
def test_realtime_bad_values_name_the_field(
    server: RunningServer, audio_input: dict[str, Any], param: str
) -> None:
    async def run() -> dict[str, Any]:
        async with connect(server) as live:
            await live.until("session.created")
            await live.send(session_update(**audio_input))
            return await live.until("error")

    error = asyncio.run(run())
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
