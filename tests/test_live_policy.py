"""The live policy without a socket: audio conversion, incremental VAD, turns, LocalAgreement, and
``LiveSession`` driven synchronously with the real model (tiny.en) on real speech.

Driving the session synchronously (each decode run as soon as the session asks for it, between
100 ms chunks) is Whisper-Streaming's "computationally unaware" simulation: what is decided
does not depend on how fast this machine is, so the assertions hold on a loaded CI machine.
Real-time behaviour (latency, partials before an utterance ends) is tested through the socket
in ``test_live_realtime.py`` and measured by ``bench/live.py``.
"""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
import soxr
from faster_whisper.vad import get_vad_model

from src.config import Settings
from src.engines.base import DecodeOptions
from src.live.agreement import LocalAgreement, normalise, words_of
from src.live.buffer import AudioBuffer
from src.live.events import (
    BufferCleared,
    Committed,
    LiveEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
    TranscriptDelta,
)
from src.live.pcm import AudioFormat, PcmDecoder
from src.live.session import BufferFull, EmptyCommit, LivePolicy, LiveSession, SessionConfig
from src.live.settings import LiveSettings
from src.live.turns import TurnDetection, TurnDetector, TurnEnded, TurnStarted
from src.live.vad import WINDOW, StreamingVad
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, load_waveform, wer

SR = 16000
CHUNK_SECONDS = 0.1


@pytest.fixture(scope="module")
def processor() -> WhisperProcessor:
    return WhisperProcessor.from_settings(Settings.from_env())


def clip_named(manifest: list[Clip], name: str) -> Clip:
    return next(c for c in manifest if c.path.name == name)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def run_session(
    session: LiveSession,
    processor: WhisperProcessor,
    audio: np.ndarray,
    *,
    rate: int = SR,
) -> list[tuple[float, LiveEvent]]:
    """Stream ``audio`` (float at ``rate``) as 100 ms PCM16 chunks; run every decode the
    session asks for between chunks; each event with the stream time it was made at."""
    data = pcm16(audio)
    step = int(CHUNK_SECONDS * rate) * 2
    out: list[tuple[float, LiveEvent]] = []
    for i in range(0, len(data), step):
        now = min(i + step, len(data)) / 2 / rate
        out += [(now, e) for e in session.append(data[i : i + step])]
        out += [(now, e) for e in drain_decodes(session, processor)]
    return out


def drain_decodes(session: LiveSession, processor: WhisperProcessor) -> list[LiveEvent]:
    events: list[LiveEvent] = []
    while (job := session.next_decode()) is not None:
        events += session.apply(job, processor.decode_samples(job.samples, job.options))
    return events


# -- audio in ------------------------------------------------------------------------------------


def test_pcm16_chunks_split_anywhere_equal_one_resample(jfk: Clip) -> None:
    audio = load_waveform(jfk.path)[: 3 * SR]
    at_24k = soxr.resample(audio, SR, 24000).astype(np.float32)
    data = pcm16(at_24k)
    decoder = PcmDecoder(AudioFormat("pcm16", 24000))
    sizes = [1, 3, 4801, 2, 999, 7]  # odd sizes: samples split across chunks
    pieces, i, k = [], 0, 0
    while i < len(data):
        pieces.append(decoder.decode(data[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    pieces.append(decoder.flush())
    streamed = np.concatenate(pieces)
    whole = soxr.resample(np.frombuffer(data, "<i2") / 32768.0, 24000, SR)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-4


@pytest.mark.parametrize(("encoding", "ffmpeg_format"), [("pcmu", "mulaw"), ("pcma", "alaw")])
def test_g711_decodes_as_ffmpeg_does(jfk: Clip, encoding: str, ffmpeg_format: str) -> None:
    def ffmpeg(*args: str, data: bytes | None = None) -> bytes:
        command = ["ffmpeg", "-nostdin", "-loglevel", "error", *args]
        return subprocess.run(command, input=data, capture_output=True, check=True).stdout

    coded = ffmpeg(
        "-i", str(jfk.path), "-t", "2", "-ac", "1", "-ar", "8000", "-f", ffmpeg_format, "-"
    )
    reference = ffmpeg(
        "-f", ffmpeg_format, "-ar", "8000", "-ac", "1", "-i", "-", "-f", "s16le", "-", data=coded
    )
    expected = np.frombuffer(reference, "<i2") / 32768.0
    decoder = PcmDecoder(AudioFormat(encoding, 8000))  # type: ignore[arg-type]
    got = np.concatenate(
        [decoder.decode(coded[:1000]), decoder.decode(coded[1000:]), decoder.flush()]
    )
    # 8 kHz to 16 kHz: compare every other sample against the 8 kHz reference
    assert abs(len(got) - 2 * len(expected)) <= 2
    resampled_reference = soxr.resample(expected.astype(np.float32), 8000, SR)
    assert np.max(np.abs(got[: len(resampled_reference)] - resampled_reference)) < 1e-4


def test_audio_format_refuses_what_it_cannot_be() -> None:
    with pytest.raises(ValueError, match="rate"):
        AudioFormat("pcm16", 1000)
    with pytest.raises(ValueError, match="8000 Hz"):
        AudioFormat("pcmu", 16000)


def test_audio_buffer_keeps_absolute_positions() -> None:
    buffer = AudioBuffer()
    buffer.append(np.arange(10, dtype=np.float32))
    buffer.append(np.arange(10, 20, dtype=np.float32))
    buffer.drop_before(5)
    assert (buffer.start, buffer.end, len(buffer)) == (5, 20, 15)
    assert buffer.slice(3, 8).tolist() == [5.0, 6.0, 7.0]
    assert buffer.slice(18, 40).tolist() == [18.0, 19.0]
    assert buffer.slice(30, 40).size == 0


# -- VAD and turns -------------------------------------------------------------------------------


def test_streaming_vad_scores_exactly_as_one_call_over_the_whole(jfk: Clip) -> None:
    audio = load_waveform(jfk.path)
    whole = get_vad_model()(audio[: len(audio) // WINDOW * WINDOW])
    vad = StreamingVad()
    sizes = [100, 1600, 37, 5000, 512]
    parts, i, k = [], 0, 0
    while i < len(audio):
        parts.append(vad.process(audio[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, np.asarray(whole).reshape(-1), atol=1e-5)


@pytest.mark.parametrize(
    ("before", "speech"),
    [("en_fleurs_008.ogg", "en_fleurs_009.ogg"), ("en_fleurs_003.ogg", "en_fleurs_004.ogg")],
)
def test_speech_after_a_long_stream_scores_as_at_the_start_of_one(
    manifest: list[Clip], before: str, speech: str
) -> None:
    gap = silence(1.5)
    lead = np.concatenate([load_waveform(clip_named(manifest, before).path), gap])
    lead = lead[: len(lead) // WINDOW * WINDOW]
    words = load_waveform(clip_named(manifest, speech).path)
    fresh = StreamingVad().process(np.concatenate([gap[: len(gap) // WINDOW * WINDOW], words]))
    onset = int(np.argmax(fresh >= 0.5)) - len(gap) // WINDOW
    vad = StreamingVad(reset_after_silence_s=0.3)
    vad.process(lead)
    after = vad.process(words)
    assert abs(int(np.argmax(after >= 0.5)) - onset) <= 2  # within 64 ms of a fresh stream's


def windows(*runs: tuple[float, float]) -> np.ndarray:
    """Probabilities window by window: (seconds, probability) runs."""
    return np.concatenate([np.full(round(s * SR / WINDOW), p) for s, p in runs]).astype(np.float32)


def test_a_turn_starts_padded_and_ends_after_the_silence() -> None:
    detector = TurnDetector(
        TurnDetection(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    )
    events = detector.push(windows((1.0, 0.0), (2.0, 0.9), (0.2, 0.4), (0.3, 0.9), (1.0, 0.1)))
    started, ended = events
    assert isinstance(started, TurnStarted) and isinstance(ended, TurnEnded)
    assert started.speech_start == round(1.0 * SR / WINDOW) * WINDOW
    assert started.start == started.speech_start - 300 * SR // 1000
    # 0.4 is above the end threshold (0.35): no pause until the 0.1 run, 3.5 s in
    speech_end = sum(round(s * SR / WINDOW) for s in (1.0, 2.0, 0.2, 0.3)) * WINDOW
    assert ended.speech_end == speech_end and not ended.cut
    assert ended.end - ended.speech_end >= 500 * SR // 1000
    assert not detector.speaking


def test_a_short_pause_does_not_end_the_turn() -> None:
    detector = TurnDetector(TurnDetection(silence_duration_ms=500))
    events = detector.push(windows((0.5, 0.9), (0.4, 0.0), (0.5, 0.9)))
    assert [type(e) for e in events] == [TurnStarted]
    assert detector.speaking and detector.pause_start is None
    detector.push(windows((0.1, 0.0)))
    assert detector.pause_start is not None


def test_a_turn_over_30_s_is_cut_at_its_longest_pause() -> None:
    detector = TurnDetector(TurnDetection(silence_duration_ms=500), max_turn_seconds=30.0)
    # speech with pauses of 0.2 s (at 8 s) and 0.4 s (at 20 s), both shorter than the silence
    probs = windows((8.0, 0.9), (0.2, 0.0), (12.0, 0.9), (0.4, 0.0), (15.0, 0.9))
    events = detector.push(probs)
    assert [type(e) for e in events] == [TurnStarted, TurnEnded, TurnStarted]
    first, cut, second = events
    assert isinstance(cut, TurnEnded) and cut.cut
    pause_start, pause_end = 20.2 * SR, 20.6 * SR  # 8 + 0.2 + 12 = 20.2 s
    assert pause_start <= cut.speech_end <= pause_end
    assert isinstance(second, TurnStarted) and second.start == cut.speech_end
    assert cut.speech_end - first.start <= 30 * SR
    assert detector.speaking  # the rest goes on as the next turn


def test_a_turn_over_30_s_without_a_pause_is_still_cut() -> None:
    detector = TurnDetector(TurnDetection(), max_turn_seconds=30.0)
    events = detector.push(windows((45.0, 0.9)))
    cuts = [e for e in events if isinstance(e, TurnEnded)]
    assert len(cuts) == 1 and cuts[0].cut
    assert 10 * SR <= cuts[0].speech_end <= 30 * SR


# -- LocalAgreement ------------------------------------------------------------------------------


def test_local_agreement_commits_what_two_hypotheses_share() -> None:
    agreement = LocalAgreement()
    assert agreement.insert(words_of("God, as it...")) == []
    assert agreement.insert(words_of("God as a direct")) == ["God", "as"]
    assert agreement.insert(words_of("God, as a direct consequence")) == ["a", "direct"]
    # an early word rewritten: the committed words are found by alignment, not position
    assert agreement.insert(words_of("Gosh as a direct consequence of the sin")) == ["consequence"]
    assert agreement.insert(words_of("God as a direct consequence of the sin which")) == [
        "of",
        "the",
        "sin",
    ]
    assert agreement.text == "God as a direct consequence of the sin"
    assert agreement.tail(words_of("God as a direct consequence of the sin which man")) == [
        "which",
        "man",
    ]


def test_normalise_ignores_case_and_edge_punctuation() -> None:
    assert normalise("God,") == normalise("god") == "god"
    assert normalise("don't.") == "don't"
    assert normalise("...") == ""


def test_local_agreement_on_real_decodes_of_growing_audio(
    processor: WhisperProcessor, manifest: list[Clip]
) -> None:
    clip = clip_named(manifest, "en_ls-test-clean_1089-134686-0000.wav")  # 10.4 s
    audio = load_waveform(clip.path)
    options = DecodeOptions(language="en", beam_size=1, temperatures=(0.0,), vad_filter=False)
    agreement = LocalAgreement()
    committed_at: list[tuple[float, int]] = []
    for end in np.arange(1.0, len(audio) / SR, 1.0):
        hypothesis = processor.decode_samples(audio[: int(end * SR)], options).text
        agreement.insert(hypothesis.split())
        committed_at.append((float(end), len(agreement.committed)))
    # words are committed as the audio grows, not only at the end
    assert committed_at[len(committed_at) // 2][1] >= 6
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(committed_at))
    # and what was committed is right: against the reference's same number of first words
    reference = clip.text.split()
    committed = agreement.text
    assert wer(" ".join(reference[: len(agreement.committed)]), committed) < 0.15


# -- the session, with the real model -------------------------------------------------------------


def joined(clips: list[Clip], gap: float = 1.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips with ``gap`` seconds of silence around each; each clip's (start, end) time."""
    parts, spans, t = [silence(gap)], [], gap
    for clip in clips:
        audio = load_waveform(clip.path)
        parts += [audio, silence(gap)]
        spans.append((t, t + len(audio) / SR))
        t += len(audio) / SR + gap
    return np.concatenate(parts), spans


def by_item(events: list[tuple[float, LiveEvent]]) -> dict[str, list[tuple[float, LiveEvent]]]:
    items: dict[str, list[tuple[float, LiveEvent]]] = {}
    for t, event in events:
        item = getattr(event, "item_id", None)
        if item is not None:
            items.setdefault(item, []).append((t, event))
    return items


@pytest.fixture(scope="module")
def utterances(manifest: list[Clip]) -> list[Clip]:
    names = [
        "en_ls-test-clean_1089-134686-0002.wav",  # 6.6 s
        "en_ls-dev-clean_2412-153948-0002.flac",  # 3.7 s
        "en_ls-test-clean_1995-1837-0001.wav",  # 8.7 s
    ]
    return [clip_named(manifest, n) for n in names]


@pytest.fixture(scope="module")
def vad_run(
    processor: WhisperProcessor, utterances: list[Clip]
) -> tuple[list[tuple[float, LiveEvent]], list[tuple[float, float]]]:
    audio, spans = joined(utterances)
    session = LiveSession(SessionConfig(audio_format=AudioFormat("pcm16", SR), language="en"))
    return run_session(session, processor, audio), spans


def test_server_vad_gives_one_completed_turn_per_utterance(
    vad_run: tuple[list[tuple[float, LiveEvent]], list[tuple[float, float]]],
    utterances: list[Clip],
) -> None:
    events, spans = vad_run
    items = by_item(events)
    assert len(items) == len(utterances)
    previous = None
    for (item, item_events), (start, end) in zip(items.items(), spans, strict=True):
        kinds = [type(e) for _, e in item_events]
        assert kinds[0] is SpeechStarted and kinds[-1] is TranscriptCompleted
        assert kinds.index(SpeechStopped) < kinds.index(Committed) < len(kinds) - 1
        assert kinds.count(TranscriptCompleted) == 1
        started = next(e for _, e in item_events if isinstance(e, SpeechStarted))
        stopped = next(e for _, e in item_events if isinstance(e, SpeechStopped))
        committed = next(e for _, e in item_events if isinstance(e, Committed))
        assert start - 0.5 <= started.audio_start_ms / 1000 <= start + 0.5
        assert end <= stopped.audio_end_ms / 1000 <= end + 1.5
        assert committed.previous_item_id == previous
        previous = item


def test_server_vad_transcripts_match_the_references(
    vad_run: tuple[list[tuple[float, LiveEvent]], list[tuple[float, float]]],
    utterances: list[Clip],
) -> None:
    events, _ = vad_run
    completed = [e for _, e in events if isinstance(e, TranscriptCompleted)]
    for clip, done in zip(utterances, completed, strict=True):
        assert wer(clip.text, done.transcript) < 0.2, (clip.path.name, done.transcript)


def test_deltas_come_while_a_long_utterance_is_spoken_and_join_to_the_turn(
    vad_run: tuple[list[tuple[float, LiveEvent]], list[tuple[float, float]]],
    utterances: list[Clip],
) -> None:
    events, spans = vad_run
    for (item_events, (_, end)), clip in zip(
        zip(by_item(events).values(), spans, strict=True), utterances, strict=True
    ):
        deltas = [(t, e) for t, e in item_events if isinstance(e, TranscriptDelta)]
        if clip.duration_s > 3:
            assert deltas and deltas[0][0] < end, clip.path.name
        joined_deltas = "".join(e.delta for _, e in deltas)
        completed = next(e for _, e in item_events if isinstance(e, TranscriptCompleted))
        assert not joined_deltas.startswith(" ")
        assert wer(completed.transcript, joined_deltas) < 0.2


def test_the_first_delta_comes_within_a_second_of_speech(
    vad_run: tuple[list[tuple[float, LiveEvent]], list[tuple[float, float]]],
) -> None:
    """Hypotheses every 0.3 s of new audio (``LivePolicy.decode_every_s``): two of them agree
    on the first words within a second of audio after the speech began (stream time, decodes
    run at once: what the policy decides, not how fast this machine is)."""
    events, _ = vad_run
    for item_events in by_item(events).values():
        started = next(e for _, e in item_events if isinstance(e, SpeechStarted))
        speech = started.audio_start_ms / 1000 + 0.3  # the turn's audio has 300 ms of prefix
        first = next(t for t, e in item_events if isinstance(e, TranscriptDelta))
        assert first - speech <= 1.0, (started.item_id, first - speech)


def test_hypotheses_back_off_while_the_model_is_busy(
    processor: WhisperProcessor, manifest: list[Clip]
) -> None:
    """A hypothesis whose decode took 1 s of stream time (audio kept arriving meanwhile, as
    when other sessions hold the model) makes the next wait for 2 s of new audio, not 0.3 s."""
    clip = clip_named(manifest, "en_ls-test-clean_1995-1837-0001.wav")  # 8.7 s
    audio = pcm16(np.concatenate([silence(0.5), load_waveform(clip.path)]))
    session = LiveSession(SessionConfig(audio_format=AudioFormat("pcm16", SR), language="en"))
    offset = 0

    def feed(seconds: float) -> None:
        nonlocal offset
        end = offset + int(seconds * SR) * 2
        session.append(audio[offset:end])
        offset = end

    feed(2.0)
    job = session.next_decode()
    assert job is not None and job.kind == "interim"
    feed(1.0)  # the decode "takes" 1 s: that much audio comes in meanwhile
    session.apply(job, processor.decode_samples(job.samples, job.options))
    waited = 0.0
    while offset < len(audio):
        feed(CHUNK_SECONDS)
        waited += CHUNK_SECONDS
        follow = session.next_decode()
        if follow is None:
            continue
        if follow.kind == "interim":
            break
        session.apply(follow, processor.decode_samples(follow.samples, follow.options))
    # 2 x 1 s of lag counted from the job's end, 1 s of it already there: 1 s more (a pause's
    # "speech fading" rule may hold it a little longer)
    assert 0.9 <= waited <= 2.0, waited


def test_manual_commits_without_turn_detection(processor: WhisperProcessor, jfk: Clip) -> None:
    session = LiveSession(SessionConfig(audio_format=AudioFormat("pcm16", SR), turn_detection=None))
    with pytest.raises(EmptyCommit, match="at least 100 ms"):
        session.commit()
    audio = np.concatenate([silence(0.5), load_waveform(jfk.path), silence(0.5)])
    events = [e for _, e in run_session(session, processor, audio)]
    assert not any(isinstance(e, SpeechStarted | SpeechStopped | Committed) for e in events)
    assert any(isinstance(e, TranscriptDelta) for e in events)  # partials while it grows
    events += session.commit()
    events += drain_decodes(session, processor)
    (committed,) = [e for e in events if isinstance(e, Committed)]
    (completed,) = [e for e in events if isinstance(e, TranscriptCompleted)]
    assert completed.item_id == committed.item_id
    assert wer(jfk.text, completed.transcript) < 0.15
    assert session.buffered_seconds == 0
    with pytest.raises(EmptyCommit):
        session.commit()


def test_clear_drops_the_turn_being_spoken(processor: WhisperProcessor, jfk: Clip) -> None:
    session = LiveSession(SessionConfig(audio_format=AudioFormat("pcm16", SR)))
    audio = np.concatenate([silence(0.5), load_waveform(jfk.path)[: 2 * SR]])
    events = [e for _, e in run_session(session, processor, audio)]
    assert any(isinstance(e, SpeechStarted) for e in events)
    job = session.next_decode() or session.next_decode()
    assert session.clear() == [BufferCleared()]
    if job is not None:  # a decode that was under way comes back to nothing
        assert session.apply(job, processor.decode_samples(job.samples, job.options)) == []
    events = [e for _, e in run_session(session, processor, silence(2.0))]
    assert not any(isinstance(e, TranscriptCompleted | Committed) for e in events)
    with pytest.raises(EmptyCommit, match="no speech"):
        session.commit()


def test_the_buffer_cap_refuses_audio_past_it() -> None:
    session = LiveSession(
        SessionConfig(audio_format=AudioFormat("pcm16", SR), turn_detection=None),
        max_buffer_seconds=2.0,
    )
    session.append(pcm16(silence(1.5)))
    with pytest.raises(BufferFull, match="LIVE_MAX_BUFFER_SECONDS"):
        session.append(pcm16(silence(1.0)))
    assert session.buffered_seconds == pytest.approx(1.5)
    session.clear()
    session.append(pcm16(silence(1.0)))  # room again


def test_long_speech_is_cut_into_items_of_at_most_30_s(
    processor: WhisperProcessor, manifest: list[Clip]
) -> None:
    # 41 s of speech with pauses shorter than the silence that ends a turn
    names = [
        "en_ls-test-clean_1221-135766-0001.wav",
        "en_ls-dev-clean_2412-153948-0000.flac",
        "en_ls-dev-clean_2412-153948-0001.flac",
    ]
    clips = [clip_named(manifest, n) for n in names]
    audio, _ = joined(clips, gap=0.25)
    audio = np.concatenate([audio, silence(1.5)])
    session = LiveSession(
        SessionConfig(
            audio_format=AudioFormat("pcm16", SR),
            turn_detection=TurnDetection(silence_duration_ms=800),
            language="en",
        ),
        policy=LivePolicy(decode_every_s=4.0),  # fewer hypotheses: this is about the cut
    )
    events = [e for _, e in run_session(session, processor, audio)]
    events += drain_decodes(session, processor)
    completed = [e for e in events if isinstance(e, TranscriptCompleted)]
    assert len(completed) >= 2
    assert all(c.audio_seconds <= 30.0 for c in completed)
    transcript = " ".join(c.transcript for c in completed)
    assert wer(" ".join(c.text for c in clips), transcript) < 0.2


def test_a_new_rate_mid_session_is_resampled(processor: WhisperProcessor, jfk: Clip) -> None:
    session = LiveSession(SessionConfig(language="en"))  # 24 kHz by default
    session.append(pcm16(np.zeros(2400, dtype=np.float32)))
    session.update(SessionConfig(audio_format=AudioFormat("pcm16", 48000), language="en"))
    audio = np.concatenate([silence(0.5), load_waveform(jfk.path)[: int(4.5 * SR)], silence(1.5)])
    at_48k = soxr.resample(audio, SR, 48000).astype(np.float32)
    events = [e for _, e in run_session(session, processor, at_48k, rate=48000)]
    events += drain_decodes(session, processor)
    completed = [e for e in events if isinstance(e, TranscriptCompleted)]
    assert completed
    assert "americans" in " ".join(c.transcript for c in completed).lower()


def test_live_settings_from_the_environment() -> None:
    assert LiveSettings.from_env({}) == LiveSettings()
    settings = LiveSettings.from_env(
        {"LIVE_MAX_SESSIONS": "2", "LIVE_IDLE_TIMEOUT": "5", "LIVE_MAX_BUFFER_SECONDS": "60"}
    )
    assert (settings.max_sessions, settings.idle_timeout, settings.max_buffer_seconds) == (2, 5, 60)
    with pytest.raises(ValueError, match="LIVE_MAX_SESSIONS"):
        LiveSettings.from_env({"LIVE_MAX_SESSIONS": "two"})
    with pytest.raises(ValueError, match="LIVE_IDLE_TIMEOUT"):
        LiveSettings.from_env({"LIVE_IDLE_TIMEOUT": "-1"})
