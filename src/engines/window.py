"""Short audio on an encoder window fitted to it, instead of a padded 30 s one.

faster-whisper pads every window to 30 s (3000 feature frames) before the encoder, so a 3 s
clip or a live turn's 1 s hypothesis costs as much encoder time as 30 s of speech (about 0.3 s
of tiny.en on an idle 2-core CPU, 0.8 s under load; base is four times that). CTranslate2's
Whisper encoder takes fewer frames (it uses the positional embeddings of the first ones), and
the decoder's cross-attention then has fewer frames to read as well.

The window is not cut to the audio itself: a model trained on 30 s windows that always end in
padding reads a window ending right after the speech as speech going on, and loops (tiny.en
repeated whole sentences in 17 of the benchmark's 40 clips, WER 89%). With ``WindowFit``'s
padding (the audio plus 3 s of the padding faster-whisper itself uses, and at least 10 s) the
40 clips read as they do on 30 s windows: WER 4.77% against 5.02% for tiny.en, 4.52% against
4.52% for base, beam 5, 3.5x less decode time (bench/README.md, "Short audio on a fitted
window").

``FittedDecoder.decode`` takes the place of the sequential decoder for audio that fits
(``FittedDecoder.fits``): one encoder pass, one beam search at the first temperature, word
timings when the options ask (cross-attention alignment on the same encoder output). It keeps
the sequential decoder's own checks: a window the model calls silence gives no segment; a text
that is repetitive or empty is decoded again by the sequential decoder on a 30 s window with the
whole temperature schedule, and that result is returned instead; so is an improbable one when
the options give temperatures to fall back to (with one, the sequential decoder would keep its
own). With ``vad_filter`` the silence between the VAD's regions is cut out before decoding and
the times mapped back onto the original timeline, as faster-whisper does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from faster_whisper.vad import SpeechTimestampsMap

from src.engines.base import (
    SAMPLE_RATE,
    DecodeInfo,
    DecodeOptions,
    Decoding,
    Segment,
    words_from_dicts,
)
from src.engines.fw_internals import ModelInternals, compression_ratio
from src.engines.sentences import split_sentences
from src.engines.vad import regions_from_probabilities, speech_probabilities, vad_options

logger = logging.getLogger(__name__)

#: feature frames in one 30 s window, and per second
N_FRAMES = 3000
FRAMES_PER_SECOND = 100
#: a language detected on a fitted window with less confidence than this is detected again on
#: the 30 s window (the sequential decoder)
MIN_LANGUAGE_PROBABILITY = 0.5

#: audio shorter than this may come back empty without a second try (a live hypothesis of a
#: turn's first syllables); longer, an empty text is decoded again on the 30 s window
MIN_AUDIO_FOR_TEXT_S = 1.0
#: a result without a letter or digit (" ." on music) that the model also calls silence this
#: surely is silence; with a lower no-speech probability it goes to the 30 s window
NO_SPEECH_FOR_EMPTY = 0.5

#: the sequential decoder: (audio, options, VAD scores or None) -> its decoding
Fallback = Callable[[np.ndarray, DecodeOptions, "np.ndarray | None"], Decoding]
#: why a fitted decode was handed to the sequential decoder
FallbackReason = Literal["repetitive", "improbable", "empty", "language", "temperature"]


@dataclass(frozen=True)
class WindowFit:
    """How long the encoder window of a clip is: the audio plus ``pad_seconds`` of padding, at
    least ``min_seconds``, at most 30 s. Clips over ``max_audio_seconds`` take the 30 s window
    path (little would be saved)."""

    min_seconds: float = 10.0
    pad_seconds: float = 3.0
    max_audio_seconds: float = 25.0

    def frames(self, audio_frames: int) -> int:
        padded = audio_frames + int(self.pad_seconds * FRAMES_PER_SECOND)
        return min(N_FRAMES, max(padded, int(self.min_seconds * FRAMES_PER_SECOND)))


@dataclass
class FittedStats:
    """What the fitted path did since the engine was loaded (read by tests and benchmarks)."""

    fitted: int = 0
    fallbacks: dict[str, int] | None = None

    def fell_back(self, reason: FallbackReason) -> None:
        if self.fallbacks is None:
            self.fallbacks = {}
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1


class FittedDecoder:
    """Decodes a clip of up to ``fit.max_audio_seconds`` on a window fitted to it; anything
    else, and any result that fails the checks, goes to ``fallback`` (the sequential decoder)."""

    def __init__(
        self, model: ModelInternals, fallback: Fallback, fit: WindowFit | None = None
    ) -> None:
        self._model = model
        self._fallback = fallback
        self.fit = fit or WindowFit()
        self.stats = FittedStats()

    def fits(self, audio: np.ndarray, options: DecodeOptions) -> bool:
        """Whether ``audio`` may take the fitted path: short enough (before any VAD cut), and
        decoded at temperature 0 first (a sampled first pass is the sequential decoder's)."""
        if not options.temperatures or options.temperatures[0] != 0.0:
            return False
        return len(audio) <= self.fit.max_audio_seconds * SAMPLE_RATE

    def decode(
        self, audio: np.ndarray, options: DecodeOptions, scores: np.ndarray | None = None
    ) -> Decoding:
        """``audio`` (16 kHz mono float32) decoded on a fitted window when it ``fits``, else by
        the sequential decoder; the segments are on ``audio``'s timeline either way."""
        if not self.fits(audio, options):
            return self._fallback(audio, options, scores)
        samples, timeline = audio, None
        if options.vad_filter:
            scores = speech_probabilities(audio) if scores is None else scores
            found = regions_from_probabilities(scores, vad_options(options.vad), len(audio))
            if not found:
                return self._fallback(audio, options, scores)  # its own no-speech answer
            regions = [{"start": start, "end": end} for start, end in found]
            samples = np.concatenate([audio[start:end] for start, end in found])
            timeline = SpeechTimestampsMap(regions, SAMPLE_RATE)
        done = self._decode(samples, options)
        if isinstance(done, str):
            self.stats.fell_back(done)
            logger.debug(
                "fitted window: %.1f s decoded again on 30 s (%s)", len(samples) / SAMPLE_RATE, done
            )
            return self._fallback(audio, options, scores)
        info, segments = done
        self.stats.fitted += 1
        if timeline is not None:
            segments = [_restored(s, timeline) for s in segments]
        info = DecodeInfo(
            language=info.language,
            language_probability=info.language_probability,
            duration=len(audio) / SAMPLE_RATE,
            path="sequential",
            beam_size=info.beam_size,
            temperatures=options.temperatures,
        )
        return Decoding(info, iter(segments))

    def _decode(
        self, samples: np.ndarray, options: DecodeOptions
    ) -> tuple[DecodeInfo, list[Segment]] | FallbackReason:
        model = self._model
        features = model.raw_features(samples)
        audio_frames = min(features.shape[-1], N_FRAMES)
        window = np.zeros((features.shape[0], self.fit.frames(audio_frames)), dtype=np.float32)
        window[:, :audio_frames] = features[:, :audio_frames]
        encoder_output = model.encode(window[None])
        language, probability = options.language, 1.0
        if language is None:
            if model.multilingual:
                language, probability = model.detect_language(encoder_output)
                if probability < MIN_LANGUAGE_PROBABILITY:
                    return "language"
            else:
                language = "en"
        tokenizer = model.tokenizer(options.task, language)
        prompt_text = " ".join(p for p in (options.hotwords, options.initial_prompt) if p)
        previous = tokenizer.encode(" " + prompt_text.strip()) if prompt_text else []
        limit = model.max_length // 2 - 1
        result = model.generate(
            encoder_output,
            [model.prompt(tokenizer, previous[-limit:])],
            beam_size=options.beam(),
            patience=options.patience,
            length_penalty=options.length_penalty,
            suppress_tokens=model.suppressed_tokens(tokenizer),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        length = len(tokens)
        avg_logprob = result.scores[0] * length**options.length_penalty / (length + 1)
        no_speech = float(result.no_speech_prob)
        text = tokenizer.decode(tokens)
        info = DecodeInfo(
            language=language,
            language_probability=probability,
            duration=len(samples) / SAMPLE_RATE,
            path="sequential",
            beam_size=options.beam(),
            temperatures=options.temperatures,
        )
        if options.calls_silence(no_speech, avg_logprob):
            return info, []
        if not any(c.isalnum() for c in text):  # nothing, or punctuation alone (" ." on music)
            short = len(samples) < MIN_AUDIO_FOR_TEXT_S * SAMPLE_RATE
            if short or no_speech > NO_SPEECH_FOR_EMPTY:
                return info, []  # a turn's first fraction of a word, or no speech
            return "empty"
        threshold = options.compression_ratio_threshold
        if threshold is not None and compression_ratio(text) > threshold:
            return "repetitive"
        improbable = (
            options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold
        )
        if improbable and len(options.temperatures) > 1:
            # with one temperature the sequential decoder would keep its own improbable text
            return "improbable"
        raw: dict[str, Any] = {
            "tokens": tokens,
            "start": 0.0,
            "end": len(samples) / SAMPLE_RATE,
            "seek": 0,
            "avg_logprob": avg_logprob,
            "no_speech_prob": no_speech,
        }
        if options.word_timestamps:
            model.align_words([raw], tokenizer, encoder_output, [audio_frames], 0.0)
        segment = _segment(raw, text)
        parts = split_sentences(segment) if segment.words else [segment]
        return info, [replace(part, id=i) for i, part in enumerate(parts)]


def _segment(raw: dict[str, Any], text: str) -> Segment:
    words = words_from_dicts(raw["words"]) if "words" in raw else None
    start, end = float(raw["start"]), float(raw["end"])
    if words:
        start, end = words[0].start, words[-1].end
    return Segment(
        id=0,
        start=start,
        end=end,
        text=text,
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        compression_ratio=compression_ratio(text),
        temperature=0.0,
        words=words,
    )


def _restored(segment: Segment, timeline: SpeechTimestampsMap) -> Segment:
    """``segment`` moved from the speech-only audio back onto the original timeline."""
    words = segment.words
    if words is not None:
        words = tuple(
            replace(
                w,
                start=timeline.get_original_time(w.start),
                end=timeline.get_original_time(w.end, is_end=True),
            )
            for w in words
        )
    return replace(
        segment,
        start=timeline.get_original_time(segment.start),
        end=timeline.get_original_time(segment.end, is_end=True),
        words=words,
    )
