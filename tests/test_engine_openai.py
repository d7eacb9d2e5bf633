"""OpenAIWhisperEngine on converted real weights and real speech.

Models are converted and loaded once per session; the clips come from the shared benchmark with
their reference transcripts, and accuracy is judged by WER after Whisper's English normaliser.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import gzip
import itertools
import warnings
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import whisper
from faster_whisper import decode_audio
from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

from builder.ct2_to_openai import alignment_heads
from src.engines.base import DecodeOptions, Transcript, VadParameters
from src.engines.openai import (
    OpenAIWhisperEngine,
    alignment_heads_dump,
    decode_clips,
    whisper_arguments,
)
from src.engines.vad import speech_regions
from src.errors import ModelError, UnsupportedOption
from tests.conftest import Clip, load_waveform
from tests.test_ct2_to_openai import TINY_EN_DIR, base_ct2_dir, converted

SR = 16000


@pytest.fixture(scope="session")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> OpenAIWhisperEngine:
    return OpenAIWhisperEngine(
        converted(tmp_path_factory, "tiny.en"),
        model_name="tiny.en",
        alignment_heads=alignment_heads(TINY_EN_DIR),
    )


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> OpenAIWhisperEngine:
    return OpenAIWhisperEngine(
        converted(tmp_path_factory, "base"),
        model_name="base",
        alignment_heads=alignment_heads(base_ct2_dir(tmp_path_factory)),
    )


@pytest.fixture(scope="session")
def normalise() -> EnglishTextNormalizer:
    # openai-whisper leaves its spelling table's file open; the ResourceWarning is theirs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        normaliser = EnglishTextNormalizer()
        gc.collect()
    return normaliser


def load(clip: Clip) -> np.ndarray:
    return decode_audio(str(clip.path), sampling_rate=SR)


def by_name(manifest: list[Clip], name: str) -> Clip:
    return next(c for c in manifest if c.path.name == name)


def check_timeline(t: Transcript, *, words: bool) -> None:
    """Invariants any transcript must keep: ordered, inside the audio, words inside segments."""
    previous_start = 0.0
    for segment in t.segments:
        assert 0.0 <= segment.start <= segment.end <= t.duration
        assert segment.start >= previous_start
        previous_start = segment.start
        if not words:
            assert segment.words is None
            continue
        assert segment.words, "word timestamps were asked for"
        previous_end = segment.start
        for word in segment.words:
            assert segment.start <= word.start <= word.end <= segment.end
            assert word.start >= previous_end - 1e-6
            assert 0.0 <= word.probability <= 1.0
            previous_end = word.end


# -- configuration, no decoding --------------------------------------------------------------------


def test_info(tiny_en: OpenAIWhisperEngine) -> None:
    info = tiny_en.info
    assert (info.engine, info.model, info.device) == ("openai-whisper", "tiny.en", "cpu")
    assert info.compute_type == "float32"
    assert info.multilingual is False


def test_float16_needs_cuda(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(ModelError):
        OpenAIWhisperEngine(
            converted(tmp_path_factory, "tiny.en"), model_name="tiny.en", compute_type="float16"
        )


def test_unloadable_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        OpenAIWhisperEngine(tmp_path / "bad.pt", model_name="x")


def test_decode_options_map_to_whisper_arguments() -> None:
    options = DecodeOptions(
        temperatures=(0.0, 0.5),
        beam_size=3,
        best_of=4,
        patience=2.0,
        length_penalty=1.0,
        compression_ratio_threshold=None,
        log_prob_threshold=-2.0,
        no_speech_threshold=0.5,
        condition_on_previous_text=False,
        initial_prompt="Glossary",
        word_timestamps=True,
        task="translate",
    )
    args = whisper_arguments(options, "de", [(1.0, 2.5), (4.0, 6.0)], fp16=False)
    assert args == {
        "verbose": None,
        "temperature": (0.0, 0.5),
        "compression_ratio_threshold": None,
        "logprob_threshold": -2.0,
        "no_speech_threshold": 0.5,
        "condition_on_previous_text": False,
        "initial_prompt": "Glossary",
        "word_timestamps": True,
        "clip_timestamps": [1.0, 2.5, 4.0, 6.0],
        "task": "translate",
        "language": "de",
        "beam_size": 3,
        "patience": 2.0,
        "best_of": 4,
        "length_penalty": None,  # CTranslate2's 1.0 is openai-whisper's plain length norm
        "fp16": False,
    }
    # beam_size 1 is CTranslate2's greedy search: openai-whisper's greedy decoder, no patience
    greedy = whisper_arguments(DecodeOptions(beam_size=1, length_penalty=0.0), "en", None, False)
    assert (greedy["beam_size"], greedy["patience"], greedy["length_penalty"]) == (None, None, 0.0)
    assert greedy["clip_timestamps"] == "0"
    # a field added to DecodeOptions fails here until someone decides how openai-whisper honours
    # it (vad_filter and vad act through clip_timestamps, hotwords through the prompt and
    # fill_gaps through the coverage check, in the engine)
    mapped = {
        "task", "language", "temperatures", "beam_size", "best_of", "patience", "length_penalty",
        "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold",
        "condition_on_previous_text", "initial_prompt", "word_timestamps", "vad_filter", "vad",
        "hotwords", "fill_gaps",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(DecodeOptions)} == mapped


def test_alignment_heads_dump_matches_openai_encoding() -> None:
    """Our blob decodes like OpenAI's own table for tiny.en (gzip bytes may differ, bits not)."""
    heads = alignment_heads(TINY_EN_DIR)

    def bits(dump: bytes) -> np.ndarray:
        return np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)

    ours = alignment_heads_dump(heads, 4, 6)
    assert np.array_equal(bits(ours), bits(whisper._ALIGNMENT_HEADS["tiny.en"]))
    with pytest.raises(ModelError):
        alignment_heads_dump([(4, 0)], 4, 6)


def test_unsupported_options(tiny_en: OpenAIWhisperEngine) -> None:
    audio = np.zeros(SR, dtype=np.float32)
    with pytest.raises(UnsupportedOption, match="task"):
        tiny_en.transcribe(audio, DecodeOptions(task="translate"))
    with pytest.raises(UnsupportedOption, match="language"):
        tiny_en.transcribe(audio, DecodeOptions(language="de"))
    with pytest.raises(UnsupportedOption, match="length_penalty"):
        tiny_en.transcribe(audio, DecodeOptions(length_penalty=2.0))


def test_whisper_failure_becomes_model_error(tiny_en: OpenAIWhisperEngine, jfk: Clip) -> None:
    # no temperature to try: openai-whisper's fallback loop returns nothing and then fails
    with pytest.raises(ModelError, match=r"^transcription failed: \w+$") as caught:
        tiny_en.transcribe(load(jfk), DecodeOptions(temperatures=(), vad_filter=False))
    assert caught.value.__cause__ is not None


# -- VAD -------------------------------------------------------------------------------------------


def test_speech_regions(jfk: Clip) -> None:
    audio = load(jfk)
    regions = speech_regions(audio, VadParameters())
    assert regions
    assert all(0.0 <= s < e <= len(audio) / SR for s, e in regions)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
    assert speech_regions(np.zeros(3 * SR, dtype=np.float32), VadParameters()) == []
    assert speech_regions(np.zeros(0, dtype=np.float32), VadParameters()) == []
    with pytest.raises(ValueError):
        speech_regions(audio, VadParameters(), sample_rate=8000)


# -- English accuracy (tiny.en) --------------------------------------------------------------------


def wer_sample(manifest: list[Clip]) -> list[Clip]:
    """Every 5th short English clip (8 of 40: ~75 s, 185 words), a fixed rule, not a pick.

    It spans JFK, LibriSpeech test/dev-clean, LibriVox and FLEURS.
    """
    return [c for c in manifest if c.language == "en" and not c.long_form][::5]


@pytest.mark.parametrize("vad_filter", [False, True], ids=["plain", "vad"])
def test_english_wer(
    tiny_en: OpenAIWhisperEngine,
    manifest: list[Clip],
    normalise: EnglishTextNormalizer,
    vad_filter: bool,
) -> None:
    references, hypotheses = [], []
    for clip in wer_sample(manifest):
        result = tiny_en.transcribe(load(clip), DecodeOptions(language="en", vad_filter=vad_filter))
        check_timeline(result, words=False)
        assert result.duration == pytest.approx(clip.duration_s, abs=0.01)
        references.append(normalise(clip.text))
        hypotheses.append(normalise(result.text))
    wer = jiwer.wer(references, hypotheses)
    # The benchmark README measures 5.65% pooled WER for this very conversion of tiny.en over
    # all 40 clips with plain openai-whisper (beam 5, language given); this sample measured
    # 3.78% here, with VAD and without. With 185 words one word is 0.5 points and errors come in
    # bursts (one clip alone is at 13%), so the bound is about twice the published figure: far
    # below what a broken conversion or option mapping gives (tens of percent), with room for
    # another CPU's or a GPU's arithmetic flipping a few words.
    assert wer <= 0.12, f"pooled WER {wer:.1%}"


def test_word_timestamps(
    tiny_en: OpenAIWhisperEngine, jfk: Clip, normalise: EnglishTextNormalizer
) -> None:
    result = tiny_en.transcribe(load(jfk), DecodeOptions(language="en", word_timestamps=True))
    check_timeline(result, words=True)
    words = [w.word for s in result.segments for w in s.words or ()]
    assert normalise("".join(words)) == normalise(result.text)


def test_vad_skips_leading_silence(tiny_en: OpenAIWhisperEngine, jfk: Clip) -> None:
    audio = np.concatenate([np.zeros(3 * SR, dtype=np.float32), load(jfk)])
    result = tiny_en.transcribe(audio, DecodeOptions(language="en", word_timestamps=True))
    check_timeline(result, words=True)
    assert result.duration == pytest.approx(3.0 + jfk.duration_s, abs=0.01)
    # JFK's first word starts within half a second of his clip; VAD pads speech by 0.4 s
    assert result.segments[0].start >= 2.5
    assert result.segments[0].words and result.segments[0].words[0].start >= 2.5


@pytest.mark.parametrize("kind", ["silence", "white_noise", "empty"])
def test_no_speech_gives_no_text(tiny_en: OpenAIWhisperEngine, kind: str) -> None:
    audio = {
        "silence": np.zeros(10 * SR, dtype=np.float32),
        "white_noise": (0.1 * np.random.default_rng(7).standard_normal(10 * SR)),
        "empty": np.zeros(0, dtype=np.float32),
    }[kind].astype(np.float32)
    result = tiny_en.transcribe(audio, DecodeOptions())
    assert result.text == ""
    assert result.segments == ()
    assert (result.language, result.duration) == ("en", len(audio) / SR)


def test_no_speech_on_multilingual_reports_no_detection(base: OpenAIWhisperEngine) -> None:
    result = base.transcribe(np.zeros(5 * SR, dtype=np.float32), DecodeOptions())
    assert (result.text, result.segments) == ("", ())
    assert result.language_probability == 0.0  # nothing was detected, and it says so


# -- multilingual (base) ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["de_fleurs_004.ogg", "fr_fleurs_000.ogg", "es_fleurs_000.ogg"])
def test_language_detection(base: OpenAIWhisperEngine, manifest: list[Clip], name: str) -> None:
    clip = by_name(manifest, name)
    # greedy, one temperature: the test is about detection, the transcript only needs to exist
    result = base.transcribe(load(clip), DecodeOptions(beam_size=1, temperatures=(0.0,)))
    assert result.language == clip.language
    assert 0.5 < result.language_probability <= 1.0
    check_timeline(result, words=False)
    assert result.text


def test_translate_german_to_english(
    base: OpenAIWhisperEngine, manifest: list[Clip], normalise: EnglishTextNormalizer
) -> None:
    clip = by_name(manifest, "de_fleurs_004.ogg")
    result = base.transcribe(load(clip), DecodeOptions(task="translate"))
    english = set(normalise(result.text).split())
    german = set(BasicTextNormalizer()(clip.text).split())
    # The reference says: "The cave is on the top of one of the mountains north of Mecca and is
    # completely isolated from the rest of the world." Names and nouns with one obvious
    # rendering must appear; German words and function words must not.
    expected = {"mecca", "north", "world", "isolated", "rest", "mountains", "mountain"}
    assert len(english & expected) >= 3, sorted(english)
    assert {"the", "of"} <= english
    assert not english & {"der", "die", "und", "ist", "von", "welt", "berge"}
    assert len(english & german) <= 2  # only shared names (e.g. "mecca"/"mekka" differ anyway)
    assert result.language == "de"


def test_decode_clips_join_pauses_and_stay_inside_the_audio() -> None:
    # pauses inside one 30 s window are kept (context), a longer gap starts a new clip
    regions = [(0.0, 2.64), (2.928, 4.752), (5.04, 11.0), (50.0, 52.0)]
    assert decode_clips(regions, 60 * SR) == [(0.0, 11.0), (50.0, 52.0)]
    # an end on the last sample (half a mel frame past the last whole one) is pulled back;
    # openai-whisper would otherwise loop forever on the unreachable frame
    assert decode_clips([(0.0, 3.275)], 52_400) == [(0.0, 3.27)]
    assert decode_clips([(1.0, 1.004)], 10 * SR) == []
    # a region longer than a window stays one clip; openai-whisper seeks through it
    assert decode_clips([(0.0, 45.0), (45.5, 50.0)], 50 * SR) == [(0.0, 45.0), (45.5, 50.0)]


def test_decode_yields_clip_by_clip(tiny_en: OpenAIWhisperEngine, manifest: list[Clip]) -> None:
    long_form = next(c for c in manifest if c.long_form)
    audio = load_waveform(long_form.path)[: 75 * 16000]  # three clips, not the whole file
    decoded: list[int] = []  # clips decoded so far, read as each segment arrives
    real = tiny_en._decode_clip

    def counting(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        decoded.append(1)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny_en, "_decode_clip", counting)
        decoding = tiny_en.decode(audio, DecodeOptions(language="en", beam_size=1))
        items = [(len(decoded), s) for s in decoding.segments]
    clips = len(decoded)
    assert clips >= 3
    # the first segment came out before the last clip was decoded (counted, not timed: a
    # loaded machine changes the times, not the order)
    assert items[0][0] < clips
    text = "".join(s.text for _, s in items)
    assert len(text.split()) > 150
