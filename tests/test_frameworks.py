"""Open-source voice-agent frameworks, each in its default configuration, pointed at this worker
instead of OpenAI: LiveKit Agents' OpenAI plugin (``livekit-plugins-openai``) and Pipecat's
OpenAI services (``pipecat-ai``), over ``/v1/audio/transcriptions`` and over the Realtime socket,
and the OpenAI Agents SDK's voice pipeline (``openai-agents[voice]``), whose default streamed
transcription session asks for ``semantic_vad``.

Defaults, as each framework ships them:

- LiveKit ``openai.STT()``: ``gpt-4o-mini-transcribe``, language ``en``, files route (a VAD of the
  agent's cuts the turns; here each utterance is one buffer). ``openai.STT(use_realtime=True)``:
  the Realtime socket with the plugin's own ``server_vad`` (350 ms silence, 600 ms padding);
- Pipecat ``OpenAISTTService``: ``gpt-transcribe``, language ``en``, the files route with each
  turn's audio as WAV (its ``SegmentedSTTService`` cuts at ``VADUserStoppedSpeakingFrame``).
  ``OpenAIRealtimeSTTService``: ``gpt-realtime-whisper``, ``turn_detection`` null, the buffer
  committed at each ``VADUserStoppedSpeakingFrame``;
- OpenAI Agents ``OpenAIVoiceModelProvider().get_stt_model(None)``: ``gpt-transcribe`` over the
  Realtime socket with ``turn_detection: {"type": "semantic_vad"}`` (its
  ``DEFAULT_TURN_DETECTION``), 24 kHz audio pushed into a ``StreamedAudioInput``.

The VAD frames a Pipecat transport would make are sent around each utterance; the audio is real
speech from the benchmark. Each path's pooled WER is within 3 points of the offline route's on
the same utterances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soxr
from openai import OpenAI

from tests.conftest import Clip, load_waveform, pooled_wer
from tests.server_helpers import API_KEY, RunningServer, serving

UTTERANCES = (
    "en_ls-test-clean_1089-134686-0002.wav",  # 6.6 s
    "en_ls-dev-clean_2412-153948-0002.flac",  # 3.7 s
    "en_ls-test-clean_1995-1837-0001.wav",  # 8.7 s
)
#: WER points a framework's path may lose against the offline route
WER_MARGIN = 0.03
#: a deadline for a stuck test, not a speed claim
WAIT = 180.0
RATE = 16000

#: Pipecat imports the standard library's audioop, deprecated in 3.11 (its code, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving(api_key=API_KEY) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def utterances(manifest: list[Clip]) -> list[Clip]:
    return [next(c for c in manifest if c.path.name == name) for name in UTTERANCES]


@pytest.fixture(scope="module")
def offline_wer(server: RunningServer, utterances: list[Clip]) -> float:
    """The offline route's WER on the utterances: the SDK, whole files, the worker's defaults."""
    with OpenAI(base_url=server.api, api_key=API_KEY, max_retries=0, timeout=600) as client:
        texts = [
            client.audio.transcriptions.create(
                file=(c.path.name, c.path.read_bytes()), model="whisper-1"
            ).text
            for c in utterances
        ]
    return pooled_wer([(c.text, t) for c, t in zip(utterances, texts, strict=True)])


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _check(utterances: list[Clip], texts: list[str], offline: float) -> None:
    assert len(texts) == len(utterances), texts
    live = pooled_wer([(c.text, t) for c, t in zip(utterances, texts, strict=True)])
    assert live <= offline + WER_MARGIN, (live, offline, texts)


# ---------------------------------------------------------------------------------------- LiveKit


def _frames(samples: np.ndarray, rate: int = RATE, chunk_s: float = 0.02) -> list[Any]:
    from livekit import rtc

    data = pcm16(samples)
    step = int(rate * chunk_s) * 2
    return [
        rtc.AudioFrame(
            data=data[i : i + step],
            sample_rate=rate,
            num_channels=1,
            samples_per_channel=len(data[i : i + step]) // 2,
        )
        for i in range(0, len(data), step)
    ]


def test_livekit_stt_default_over_files(
    server: RunningServer, utterances: list[Clip], offline_wer: float
) -> None:
    from livekit.plugins import openai as lk_openai

    async def run() -> list[str]:
        stt = lk_openai.STT(base_url=server.api, api_key=API_KEY)
        assert stt.model == "gpt-4o-mini-transcribe" and not stt.capabilities.streaming
        texts = []
        for clip in utterances:
            event = await stt.recognize(_frames(load_waveform(clip.path)))
            texts.append(event.alternatives[0].text)
        await stt.aclose()
        await stt._client.close()  # the plugin's own AsyncOpenAI, which aclose leaves open
        return texts

    _check(utterances, asyncio.run(run()), offline_wer)


def test_livekit_stt_default_over_realtime(
    server: RunningServer, utterances: list[Clip], offline_wer: float
) -> None:
    from livekit.agents import stt as lk_stt
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as lk_openai

    async def run() -> list[str]:
        http_context._new_session_ctx()
        stt = lk_openai.STT(base_url=server.api, api_key=API_KEY, use_realtime=True)
        assert stt.capabilities.streaming
        stream = stt.stream()
        finals: list[str] = []

        async def read() -> None:
            async for event in stream:
                if event.type == lk_stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals.append(event.alternatives[0].text)
                    if len(finals) == len(utterances):
                        return

        reader = asyncio.ensure_future(read())
        silence = np.zeros(int(1.5 * RATE), dtype=np.float32)
        audio = np.concatenate(
            [silence, *(np.concatenate([load_waveform(c.path), silence]) for c in utterances)]
        )
        # LiveKit frames at 16 kHz, resampled by the plugin to its 24 kHz
        for frame in _frames(audio):
            stream.push_frame(frame)
            await asyncio.sleep(0.005)  # about 4x real time
        await asyncio.wait_for(reader, WAIT)
        await stream.aclose()
        await stt.aclose()
        await stt._client.close()
        await http_context._close_http_ctx()
        return finals

    _check(utterances, asyncio.run(run()), offline_wer)


# ---------------------------------------------------------------------------------------- Pipecat


def _pipecat_turns(utterances: list[Clip], pause_s: float) -> list[Any]:
    """The frames a Pipecat transport with a local VAD sends for the utterances: audio in 20 ms
    frames, ``VADUserStartedSpeakingFrame`` before each, ``VADUserStoppedSpeakingFrame`` after,
    and a pause (``SleepFrame``) for the service to answer, after a first pause in which the
    service configures its session."""
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.tests.utils import SleepFrame

    # A real transport streams audio as it is spoken; this list is sent as fast as Pipecat takes
    # it. Without a moment for the session to be configured first, a whole utterance could reach
    # the server under the session's default turn detection before Pipecat's session.update.
    frames: list[Any] = [SleepFrame(sleep=2.0)]
    step = int(RATE * 0.02) * 2
    for clip in utterances:
        silence = np.zeros(int(0.3 * RATE), dtype=np.float32)
        data = pcm16(np.concatenate([silence, load_waveform(clip.path), silence]))
        frames.append(VADUserStartedSpeakingFrame())
        frames += [
            InputAudioRawFrame(audio=data[i : i + step], sample_rate=RATE, num_channels=1)
            for i in range(0, len(data), step)
        ]
        frames += [VADUserStoppedSpeakingFrame(), SleepFrame(sleep=pause_s)]
    return frames


async def _pipecat_run(service: Any, frames: list[Any]) -> list[str]:
    from pipecat.frames.frames import TranscriptionFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test

    down, _ = await run_test(
        service,
        frames_to_send=frames,
        pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
        start_timeout=30.0,
    )
    return [f.text for f in down if isinstance(f, TranscriptionFrame)]


def test_pipecat_stt_default_over_files(
    server: RunningServer, utterances: list[Clip], offline_wer: float
) -> None:
    from pipecat.services.openai.stt import OpenAISTTService

    service = OpenAISTTService(api_key=API_KEY, base_url=server.api)
    assert service._settings.model == "gpt-transcribe"

    async def run() -> list[str]:
        texts = await _pipecat_run(service, _pipecat_turns(utterances, pause_s=8.0))
        await service._client.close()  # the service's AsyncOpenAI, which Pipecat leaves open
        return texts

    _check(utterances, asyncio.run(run()), offline_wer)


def test_pipecat_realtime_stt_default(
    server: RunningServer, utterances: list[Clip], offline_wer: float
) -> None:
    from pipecat.services.openai.stt import OpenAIRealtimeSTTService

    ws = server.api.replace("http://", "ws://") + "/realtime"
    service = OpenAIRealtimeSTTService(api_key=API_KEY, base_url=ws)
    assert service._settings.model == "gpt-realtime-whisper"
    texts = asyncio.run(_pipecat_run(service, _pipecat_turns(utterances, pause_s=8.0)))
    _check(utterances, texts, offline_wer)


# ----------------------------------------------------------------------------------- OpenAI Agents


def test_openai_agents_voice_stt_default_semantic_vad(
    server: RunningServer, utterances: list[Clip], offline_wer: float
) -> None:
    import agents
    from agents.voice import OpenAIVoiceModelProvider, StreamedAudioInput, STTModelSettings
    from agents.voice.models.openai_stt import DEFAULT_TURN_DETECTION

    assert DEFAULT_TURN_DETECTION == {"type": "semantic_vad"}
    agents.set_tracing_disabled(True)  # its traces go to OpenAI's servers; nothing else changes

    async def run() -> list[str]:
        provider = OpenAIVoiceModelProvider(api_key=API_KEY, base_url=server.api)
        stt = provider.get_stt_model(None)
        assert stt.model_name == "gpt-transcribe"
        audio = StreamedAudioInput()
        session = await stt.create_session(
            audio,
            STTModelSettings(),
            trace_include_sensitive_data=False,
            trace_include_sensitive_audio_data=False,
        )
        turns: list[str] = []

        async def read() -> None:
            async for text in session.transcribe_turns():
                turns.append(text)

        reader = asyncio.ensure_future(read())
        # semantic_vad's auto eagerness waits up to 4 s after a turn that trails off
        silence = np.zeros(int(4.5 * 24000), dtype=np.float32)
        pieces = [silence]
        for clip in utterances:
            pieces += [soxr.resample(load_waveform(clip.path), RATE, 24000), silence]
        pcm = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.int16)
        step = 2400  # 100 ms
        for i in range(0, len(pcm), step):
            await audio.add_audio(pcm[i : i + step])
            await asyncio.sleep(0.025)  # about 4x real time
        deadline = asyncio.get_running_loop().time() + WAIT
        while len(" ".join(turns).split()) < sum(len(c.text.split()) for c in utterances) * 0.8:
            assert asyncio.get_running_loop().time() < deadline, turns
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # a last turn may still be settling
        await session.close()
        reader.cancel()
        return turns

    turns = asyncio.run(run())
    hypothesis = " ".join(turns)
    reference = " ".join(c.text for c in utterances)
    assert pooled_wer([(reference, hypothesis)]) <= offline_wer + WER_MARGIN, turns
