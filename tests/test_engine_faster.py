"""The faster-whisper engine's long-audio path: batched chunks, original timeline, fallback.

Real speech (the benchmark's clips joined with silences between, longer than the batched
threshold) on the real tiny.en model, loaded once for the module. No timing assertions.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from src.engines.base import DecodeOptions, Segment, VadParameters
from src.engines.batched import Decoded, Piece
from src.engines.chunk_checks import suspicious
from src.engines.chunks import CHUNK_SECONDS, Chunk, plan_chunks
from src.engines.faster import LONG_AUDIO_SECONDS, SAMPLE_RATE, FasterWhisperEngine
from tests.conftest import Clip, load_waveform, pooled_wer

OPTIONS = DecodeOptions(language="en")
LEAD_SILENCE_S = 6.0
GAP_S = 25.0


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    from src.config import Settings
    from src.engines.loader import load_engine

    loaded = load_engine(Settings.from_env({"WHISPER_MODEL": "tiny.en", "DEVICE": "cpu"}))
    assert isinstance(loaded, FasterWhisperEngine)
    return loaded


@pytest.fixture(scope="module")
def long_audio(manifest: list[Clip]) -> tuple[np.ndarray, str, tuple[float, float]]:
    """Silence, JFK, a 25 s silent gap, then LibriSpeech clips: over a minute in all.

    Returns the audio, its reference text and the silent gap's (start, end) seconds.
    """
    jfk = next(c for c in manifest if c.path.name == "en_jfk.flac")
    libri = [c for c in manifest if "ls-test-clean" in c.path.name][:6]

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)

    parts = [silence(LEAD_SILENCE_S), load_waveform(jfk.path)]
    gap_start = sum(len(p) for p in parts) / SAMPLE_RATE
    parts.append(silence(GAP_S))
    for clip in libri:
        parts += [load_waveform(clip.path), silence(0.8)]
    audio = np.concatenate(parts)
    assert len(audio) / SAMPLE_RATE > LONG_AUDIO_SECONDS
    text = " ".join(c.text for c in [jfk, *libri])
    return audio, text, (gap_start, gap_start + GAP_S)


@pytest.fixture(scope="module")
def batched_run(engine: FasterWhisperEngine, long_audio):
    audio, _, _ = long_audio
    assert engine.uses_batched(audio, OPTIONS)
    transcript = engine.transcribe(audio, OPTIONS)
    return transcript, engine.batched.last_stats


def test_batched_timestamps_on_the_original_timeline(batched_run, long_audio) -> None:
    transcript, stats = batched_run
    audio, _, (gap_start, gap_end) = long_audio
    duration = len(audio) / SAMPLE_RATE
    assert stats.chunks >= 2
    segments = transcript.segments
    assert segments and [s.id for s in segments] == list(range(1, len(segments) + 1))
    for before, after in itertools.pairwise(segments):
        assert before.start <= before.end <= after.start + 1e-3
    assert segments[0].start >= 0.0 and segments[-1].end <= duration + 1e-3
    # the leading silence and the gap are not decoded: no segment starts inside them
    assert segments[0].start >= LEAD_SILENCE_S - 1.0
    pad = VadParameters().speech_pad_ms / 1000
    assert not any(gap_start + pad + 0.5 < s.start < gap_end - pad - 0.5 for s in segments)
    assert any(s.start >= gap_end - pad - 0.5 for s in segments)


def test_batched_accuracy_and_coverage_match_sequential(
    engine: FasterWhisperEngine, batched_run, long_audio
) -> None:
    import jiwer

    from tests.conftest import english_normaliser

    transcript, _ = batched_run
    audio, reference, _ = long_audio
    sequential = engine.transcribe_sequential(audio, OPTIONS)
    batched_wer = pooled_wer([(reference, transcript.text)])
    sequential_wer = pooled_wer([(reference, sequential.text)])
    assert batched_wer <= sequential_wer + 0.03
    normalise = english_normaliser()
    words = jiwer.process_words(normalise(reference), normalise(transcript.text))
    coverage = words.hits / (words.hits + words.substitutions + words.deletions)
    assert coverage >= 0.9


def _wrap_first_round(engine: FasterWhisperEngine, monkeypatch, change) -> None:
    """Pass round one's result of chunk 1 through ``change`` (a fault injected after decoding)."""
    real = engine.batched._decoded

    def faulty(job, pieces: list[Piece], *phases) -> list[Decoded]:
        done = real(job, pieces, *phases)
        return [change(job, d) if d.piece.chunk == 1 and not d.piece.context else d for d in done]

    monkeypatch.setattr(engine.batched, "_decoded", faulty)


def test_an_empty_chunk_is_decoded_again_sequentially(
    engine: FasterWhisperEngine, long_audio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched decoder's known fault, injected: one chunk's text is dropped; it must come
    back."""
    audio, reference, _ = long_audio
    dropped = plan_chunks(audio, OPTIONS.vad)[1]

    def empty(job, d: Decoded) -> Decoded:
        return replace(d, tokens=(), segment=replace(d.segment, text="", words=()))

    _wrap_first_round(engine, monkeypatch, empty)
    transcript = engine.transcribe(audio, OPTIONS)
    stats = engine.batched.last_stats
    assert stats.redecoded == {1: "empty"}
    again = [s for s in transcript.segments if dropped.start - 0.01 <= s.start < dropped.end]
    assert again and all(s.end <= dropped.end + 0.5 for s in again)
    assert pooled_wer([(reference, transcript.text)]) < 0.15


def test_a_window_that_stops_early_is_continued_from_its_last_word(
    engine: FasterWhisperEngine, long_audio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model ending a window's text early, injected: chunk 1 keeps only its first words.
    The speech after the last word is decoded in a second round, with that text as context."""
    audio, reference, _ = long_audio
    expected = engine.transcribe(audio, OPTIONS)
    chunk = plan_chunks(audio, OPTIONS.vad)[1]
    cut_at: list[float] = []

    def early_stop(job, d: Decoded) -> Decoded:
        words = d.segment.words[: max(3, len(d.segment.words) // 4)]
        text = "".join(w.word for w in words)
        cut_at.append(words[-1].end)
        tokens = tuple(job.tokenizer.encode(text))
        return replace(d, tokens=tokens, segment=replace(d.segment, text=text, words=words))

    _wrap_first_round(engine, monkeypatch, early_stop)
    transcript = engine.transcribe(audio, OPTIONS)
    stats = engine.batched.last_stats
    assert stats.continued >= 1 and not stats.redecoded
    after_cut = [s for s in transcript.segments if cut_at[0] - 0.01 <= s.start < chunk.end]
    assert after_cut, "nothing was decoded after the injected early stop"
    wer = pooled_wer([(reference, transcript.text)])
    assert wer <= pooled_wer([(reference, expected.text)]) + 0.02


def test_long_audio_segments_are_sentences_with_words_only_when_asked(
    engine: FasterWhisperEngine, batched_run, long_audio
) -> None:
    transcript, stats = batched_run
    assert len(transcript.segments) > stats.chunks  # cut at sentence ends, not one per chunk
    assert all(s.words is None for s in transcript.segments)
    assert all(s.end - s.start <= CHUNK_SECONDS for s in transcript.segments)
    ends = [s.text.strip()[-1] for s in transcript.segments]
    assert sum(e in ".?!" for e in ends) >= len(ends) - stats.chunks

    audio, _, _ = long_audio
    with_words = engine.transcribe(audio, replace(OPTIONS, word_timestamps=True))
    assert [s.text for s in with_words.segments] == [s.text for s in transcript.segments]
    for segment in with_words.segments:
        assert segment.words
        assert "".join(w.word for w in segment.words).strip() == segment.text.strip()
        assert segment.start <= segment.words[0].start + 1e-3
        assert segment.words[-1].end <= segment.end + 1e-3
        for before, after in itertools.pairwise(segment.words):
            assert before.start <= before.end <= after.start + 1e-3


def test_silence_gives_no_text_and_no_chunks(engine: FasterWhisperEngine) -> None:
    silence = np.zeros(int((LONG_AUDIO_SECONDS + 10) * SAMPLE_RATE), dtype=np.float32)
    transcript = engine.transcribe(silence, OPTIONS)
    assert transcript.text == "" and transcript.segments == ()
    assert engine.batched.last_stats.chunks == 0


def test_short_audio_and_no_vad_take_the_sequential_path(
    engine: FasterWhisperEngine, jfk: Clip, long_audio
) -> None:
    assert not engine.uses_batched(load_waveform(jfk.path), OPTIONS)
    assert not engine.uses_batched(long_audio[0], replace(OPTIONS, vad_filter=False))


def test_plan_chunks_fit_one_window_and_skip_silence(long_audio) -> None:
    audio, _, (gap_start, gap_end) = long_audio
    chunks = plan_chunks(audio, VadParameters())
    assert all(0 < c.duration <= CHUNK_SECONDS and 0 < c.speech <= c.duration for c in chunks)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
    assert chunks[0].start >= LEAD_SILENCE_S - 1.0
    assert not any(c.start < gap_start + 2 and c.end > gap_end - 2 for c in chunks)


def _segment(text: str, **kw: float) -> Segment:
    values = {"avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.3} | kw
    return Segment(id=1, start=0.0, end=10.0, text=text, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("segments", "median", "reason"),
    [
        ([], None, "empty"),
        ([_segment(" la la la la", compression_ratio=3.1)], None, "repetitive"),
        ([_segment(" maybe words here", avg_logprob=-1.6)], None, "improbable"),
        ([_segment(" Это совсем не английский текст")], None, "language switch"),
        ([_segment(" two words")], 2.5, "sparse"),
        ([_segment(" " + "word " * 24)], 2.5, None),
    ],
)
def test_suspicious_chunks(segments: list[Segment], median: float | None, reason: str | None):
    chunk = Chunk(start=30.0, end=40.0, speech=10.0)
    assert suspicious(chunk, segments, OPTIONS, "en", median) == reason


def test_a_detected_language_costs_no_encoder_pass(
    long_audio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multilingual model (base) without a language: the first step's chunks are encoded
    while the language is detected, each once, and the text is the one the given language
    gives."""
    from src.config import Settings
    from src.engines.fw_internals import ModelInternals
    from src.engines.loader import load_engine

    base = load_engine(Settings.from_env({"WHISPER_MODEL": "base", "DEVICE": "cpu"}))
    assert isinstance(base, FasterWhisperEngine) and base.info.multilingual
    audio, reference, _ = long_audio
    frames: list[int] = []
    real = ModelInternals.encode

    def counted(self: ModelInternals, features: np.ndarray):  # type: ignore[no-untyped-def]
        if self is base.batched._model:  # the batched windows (not a coverage re-decode)
            frames.append(int(features.shape[-1]))
        return real(self, features)

    given = base.transcribe(audio, OPTIONS)
    monkeypatch.setattr(ModelInternals, "encode", counted)
    detected = base.transcribe(audio, replace(OPTIONS, language=None))
    stats = base.batched.last_stats
    assert detected.language == "en"
    assert detected.text == given.text
    assert len(frames) == stats.chunks + stats.continued  # no window encoded twice
    assert set(frames) == {3000}  # 30 s windows, as the given language's decode
    assert pooled_wer([(reference, detected.text)]) < 0.1
