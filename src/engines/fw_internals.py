"""The one place that calls faster-whisper's non-public ``WhisperModel`` methods.

The batched long-audio path (``batched.py``) and the fitted-window path (``window.py``) make the
same CTranslate2 calls as faster-whisper's own pipeline (feature extraction, encode, language
detection, prompt, generate, word alignment), but in their own order. Those methods are not part
of faster-whisper's public API and may change between releases (the pin is in
builder/requirements.txt): keeping every such call here means a faster-whisper upgrade is checked
against one small file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ctranslate2 import StorageView
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from src.engines.base import Task

#: faster-whisper's (and openai-whisper's) defaults for attaching punctuation to words
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class ModelInternals:
    """The lower-level steps of one loaded ``WhisperModel``."""

    def __init__(self, model: WhisperModel) -> None:
        self._model = model

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    @property
    def max_length(self) -> int:
        return int(self._model.max_length)

    @property
    def frames_per_second(self) -> float:
        return float(self._model.frames_per_second)

    def tokenizer(self, task: Task, language: str) -> Tokenizer:
        return Tokenizer(self._model.hf_tokenizer, self.multilingual, task=task, language=language)

    def suppressed_tokens(self, tokenizer: Tokenizer) -> tuple[int, ...]:
        """The tokens every decode suppresses (faster-whisper's ``[-1]`` default set)."""
        return tuple(get_suppressed_tokens(tokenizer, [-1]) or ())

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel features of ``samples`` (16 kHz), padded to one 30 s window."""
        return np.asarray(pad_or_trim(self._model.feature_extractor(samples)[..., :-1]))

    def raw_features(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel features of ``samples`` (16 kHz), one frame per 10 ms, not padded: the
        fitted-window path (``window.py``) pads them to a window of its own size."""
        return np.asarray(self._model.feature_extractor(samples)[..., :-1])

    def encode(self, features: np.ndarray) -> StorageView:
        """Encoder output of a batch of windows' features: 30 s windows (3000 frames), or
        shorter ones (CTranslate2's encoder takes any number of frames up to 3000 and uses
        the positional embeddings of the first ones)."""
        return self._model.encode(features)

    def detect_language(self, encoder_output: StorageView) -> tuple[str, float]:
        """The likeliest language of the first window of ``encoder_output``."""
        token, probability = self._model.model.detect_language(encoder_output)[0][0]
        return str(token[2:-2]), float(probability)

    def prompt(self, tokenizer: Tokenizer, previous: Sequence[int]) -> list[int]:
        """A decode's prompt without timestamps, after ``previous`` tokens as context."""
        return list(self._model.get_prompt(tokenizer, list(previous), without_timestamps=True))

    def generate(
        self,
        encoder_output: StorageView,
        prompts: list[list[int]],
        *,
        beam_size: int,
        patience: float,
        length_penalty: float,
        suppress_tokens: Sequence[int],
    ) -> list[Any]:
        """One beam search over a batch of windows, with scores and no-speech probabilities."""
        return list(
            self._model.model.generate(
                encoder_output,
                prompts,
                beam_size=beam_size,
                patience=patience,
                length_penalty=length_penalty,
                max_length=self.max_length,
                suppress_blank=True,
                suppress_tokens=list(suppress_tokens),
                return_scores=True,
                return_no_speech_prob=True,
            )
        )

    def align_words(
        self,
        raw: list[dict[str, Any]],
        tokenizer: Tokenizer,
        encoder_output: StorageView,
        num_frames: list[int],
        start: float,
    ) -> None:
        """Word timings for each window's text (in place: each dict gains ``words``), by the
        cross-attention alignment faster-whisper uses."""
        self._model.add_word_timestamps(
            [[r] for r in raw],
            tokenizer,
            encoder_output,
            num_frames,  # one per window, as its batched mode passes
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            start,
        )


def compression_ratio(text: str) -> float:
    return float(get_compression_ratio(text))
