"""The fitted-window path (``src.engines.window``) on the real model (tiny.en) and real speech:
the encoder takes a window fitted to the clip, the text holds, timings stay on the clip's
timeline, and what the checks refuse goes to the 30 s sequential decoder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from src.engines.base import DecodeOptions
from src.engines.faster import FasterWhisperEngine
from src.engines.window import N_FRAMES, WindowFit
from tests.conftest import REPO_ROOT, Clip, load_waveform, pooled_wer, wer

SR = 16000


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    return FasterWhisperEngine(
        REPO_ROOT / "models" / "faster-whisper" / "tiny.en", model_name="tiny.en"
    )


def clip_named(manifest: list[Clip], name: str) -> Clip:
    return next(c for c in manifest if c.path.name == name)


@pytest.fixture(scope="module")
def short_clips(manifest: list[Clip]) -> list[Clip]:
    return [c for c in manifest if c.language == "en" and not c.long_form][:8]


def test_window_is_the_audio_plus_padding_at_least_ten_seconds() -> None:
    fit = WindowFit()
    assert fit.frames(200) == 1000  # 2 s of audio: the 10 s minimum
    assert fit.frames(900) == 1200  # 9 s: the audio and 3 s
    assert fit.frames(2900) == N_FRAMES  # never past 30 s
    assert WindowFit(min_seconds=0, pad_seconds=1).frames(250) == 350


def test_short_clips_read_as_well_as_on_30_s_windows(
    engine: FasterWhisperEngine, short_clips: list[Clip]
) -> None:
    options = DecodeOptions(language="en")
    before = engine.fitted.stats.fitted
    fitted, padded = [], []
    for clip in short_clips:
        audio = load_waveform(clip.path)
        fitted.append((clip.text, engine.transcribe(audio, options).text))
        padded.append((clip.text, engine.transcribe_sequential(audio, options).text))
    assert engine.fitted.stats.fitted - before == len(short_clips)
    # the 40 clips: 4.64% fitted against 5.02% on 30 s windows (bench/README.md)
    assert pooled_wer(fitted) <= pooled_wer(padded) + 0.02


def test_words_and_segments_stay_on_the_clip_timeline(
    engine: FasterWhisperEngine, manifest: list[Clip]
) -> None:
    """2 s of silence before the speech and 1.5 s inside it: VAD cuts them out before the
    decode, and every time is mapped back onto the clip as given."""
    clip = clip_named(manifest, "en_jfk.flac")
    speech = load_waveform(clip.path)
    half = len(speech) // 2
    audio = np.concatenate(
        [
            np.zeros(2 * SR, np.float32),
            speech[:half],
            np.zeros(int(1.5 * SR), np.float32),
            speech[half:],
        ]
    )
    transcript = engine.transcribe(audio, DecodeOptions(language="en", word_timestamps=True))
    assert wer(clip.text, transcript.text) < 0.15
    words = [w for s in transcript.segments for w in s.words or ()]
    assert words and words[0].start >= 1.5
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end <= len(audio) / SR + 0.01 for w in words)
    for segment in transcript.segments:
        assert segment.words and segment.start == segment.words[0].start
    # the words after the inserted pause start after it
    pause_end = (2 * SR + half + 1.5 * SR) / SR
    assert any(w.start >= pause_end - 0.3 for w in words)


def test_live_decodes_without_vad_take_the_fitted_window(
    engine: FasterWhisperEngine, manifest: list[Clip]
) -> None:
    clip = clip_named(manifest, "en_ls-test-clean_1089-134686-0002.wav")
    audio = load_waveform(clip.path)
    live = DecodeOptions(
        language="en", temperatures=(0.0,), beam_size=1, vad_filter=False, fill_gaps=False
    )
    before = engine.fitted.stats.fitted
    transcript = engine.transcribe(audio, live)
    assert engine.fitted.stats.fitted == before + 1
    assert wer(clip.text, transcript.text) < 0.25
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))


def test_a_result_the_checks_refuse_is_decoded_again_on_30_s(
    engine: FasterWhisperEngine, manifest: list[Clip]
) -> None:
    clip = clip_named(manifest, "en_ls-test-clean_1089-134686-0002.wav")
    audio = load_waveform(clip.path)
    # any real text compresses better than this: the fitted result counts as repetitive
    strict = DecodeOptions(language="en", temperatures=(0.0,), compression_ratio_threshold=0.5)
    fallbacks = dict(engine.fitted.stats.fallbacks or {})
    transcript = engine.transcribe(audio, strict)
    assert (engine.fitted.stats.fallbacks or {}).get("repetitive", 0) == fallbacks.get(
        "repetitive", 0
    ) + 1
    assert transcript.text  # the sequential decoder's answer


def test_silence_and_long_audio_are_not_fitted(
    engine: FasterWhisperEngine, manifest: list[Clip]
) -> None:
    before = engine.fitted.stats.fitted
    silent = engine.transcribe(np.zeros(3 * SR, np.float32), DecodeOptions(language="en"))
    assert silent.text == ""
    clip = clip_named(manifest, "en_jfk.flac")
    audio = np.tile(load_waveform(clip.path), 3)  # 33 s: over the fitted path's 25 s
    long = engine.transcribe(audio, replace(DecodeOptions(language="en"), fill_gaps=False))
    assert long.text
    assert engine.fitted.stats.fitted == before
