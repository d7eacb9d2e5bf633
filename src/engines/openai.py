"""openai-whisper (PyTorch): the reference implementation, behind the same ``Engine`` interface.

The model is loaded once in ``__init__`` from a local checkpoint (see
``builder/ct2_to_openai.py`` for how one is made from CTranslate2 weights). ``transcribe``
maps the engine-neutral ``DecodeOptions`` onto ``whisper.transcribe``'s arguments so that a job
means the same thing on either engine:

- VAD: the shared Silero VAD (``vad.py``) finds speech; its regions, joined while they fit one
  30 s window (``decode_clips``), go to openai-whisper as ``clip_timestamps``, so silence
  outside them is never decoded and timestamps stay on the original timeline.
- Language: detected on the first 30 s of *speech* (as faster-whisper does after its VAD), not
  on what may be 30 s of leading silence.
- ``beam_size`` 1 is greedy decoding, as in CTranslate2; ``length_penalty`` 1 is plain length
  normalisation (openai-whisper's ``None``).
"""

from __future__ import annotations

import base64
import gzip
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import whisper
from whisper.audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper.tokenizer import LANGUAGES, get_tokenizer

from src.engines.base import (
    DecodeInfo,
    DecodeOptions,
    Decoding,
    LanguageGuess,
    ModelInfo,
    Segment,
    Transcript,
    VadParameters,
    Word,
)
from src.engines.capabilities import check_capability
from src.engines.coverage import complete, with_words
from src.engines.vad import join_regions, speech_probabilities, speech_regions
from src.errors import ModelError, UnsupportedOption, model_error

logger = logging.getLogger(__name__)

COMPUTE_TYPES = ("float16", "float32")
#: openai-whisper's ranker only accepts Google-NMT alphas in this range
_MAX_LENGTH_PENALTY = 1.0
#: the longest speech region decoded as one clip (a little under the window: VAD pads it)
_MAX_REGION_S = N_FRAMES / FRAMES_PER_SECOND - 0.5
#: text carried from clip to clip as the prompt (openai-whisper keeps the last 223 tokens)
_MAX_PROMPT_CHARS = 1000


def default_compute_type(device: str) -> str:
    """float16 on a GPU (openai-whisper's own default there), float32 on the CPU (no fp16)."""
    return "float16" if device.startswith("cuda") else "float32"


def alignment_heads_dump(heads: list[tuple[int, int]], n_layers: int, n_heads: int) -> bytes:
    """Encode (layer, head) pairs the way ``Whisper.set_alignment_heads`` decodes them.

    openai-whisper stores its per-model tables as base85 of a gzipped boolean
    ``(n_text_layer, n_text_head)`` array; building the same blob lets us use its public setter.
    """
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ModelError(
                f"alignment head ({layer}, {head}) is outside the model's "
                f"{n_layers} layers x {n_heads} heads"
            )
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


class OpenAIWhisperEngine:
    """An openai-whisper model loaded from a ``.pt`` checkpoint on disk."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        model_name: str,
        device: str = "cpu",
        compute_type: str | None = None,
        alignment_heads: list[tuple[int, int]] | None = None,
    ) -> None:
        compute_type = compute_type or default_compute_type(device)
        if compute_type not in COMPUTE_TYPES:
            raise ModelError(
                f"compute type {compute_type!r} is not available to openai-whisper "
                f"(allowed: {', '.join(COMPUTE_TYPES)})"
            )
        if compute_type == "float16" and not device.startswith("cuda"):
            raise ModelError("compute type 'float16' needs a CUDA device with openai-whisper")
        try:
            self._model = whisper.load_model(str(checkpoint), device=device)
        except Exception as e:
            raise ModelError(
                f"could not load openai-whisper checkpoint {Path(checkpoint).name!r} "
                f"on {device}: {type(e).__name__}"
            ) from e
        self._model.eval()
        self._fp16 = compute_type == "float16"
        self._set_alignment_heads(model_name, alignment_heads)
        self._warm_tokenizer()
        # whisper.transcribe installs and removes hooks on the shared model: one job at a time
        self._lock = threading.Lock()
        self._info = ModelInfo(
            engine="openai-whisper",
            model=model_name,
            device=device,
            compute_type=compute_type,
            multilingual=bool(self._model.is_multilingual),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _set_alignment_heads(self, model_name: str, heads: list[tuple[int, int]] | None) -> None:
        """Choose the cross-attention heads that word timestamps are read from.

        Given heads (from the CTranslate2 config.json) win; else openai-whisper's own table for
        an official model name, which ``load_model`` applies only when it downloads by name;
        else openai-whisper's fallback, every head of the decoder's upper half.
        """
        dims = self._model.dims
        if heads:
            dump = alignment_heads_dump(heads, dims.n_text_layer, dims.n_text_head)
            source = "given"
        else:
            # a private table, read defensively: a missing entry only means the fallback heads
            table: dict[str, bytes] = getattr(whisper, "_ALIGNMENT_HEADS", {})
            if model_name not in table:
                logger.info("no alignment heads for %s: word timings use the default", model_name)
                return
            dump = table[model_name]
            source = "openai-whisper's table"
        try:
            self._model.set_alignment_heads(dump)
        except Exception as e:
            raise ModelError(f"alignment heads do not fit the model: {type(e).__name__}") from e
        logger.info("alignment heads for %s: %s", model_name, source)

    def _warm_tokenizer(self) -> None:
        """Load the tokenizer's vocabulary once, now, instead of inside the first job.

        openai-whisper reads the vocabulary file without closing it; the ``ResourceWarning``
        that follows is harmless and is silenced here rather than left to every caller.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            get_tokenizer(self._model.is_multilingual, num_languages=self._model.num_languages)

    def decode(self, audio: np.ndarray, options: DecodeOptions) -> Decoding:
        """Start decoding ``audio`` (16 kHz mono float32); segments come one clip at a time.

        With VAD each clip (speech regions joined into one 30 s window, ``decode_clips``) is
        one ``whisper.transcribe`` call whose segments are yielded as soon as it returns; the
        text so far is the next clip's prompt when ``condition_on_previous_text`` is on (as
        openai-whisper conditions each window on the text before it). Without VAD the whole
        file is one call. Audio with no speech (VAD on) or no samples gives no segments without
        running the model; its language is the given one, else "en" with probability 0 on a
        multilingual model (nothing was detected) and 1 on an English-only one.
        Raises ``UnsupportedOption`` for what this model or openai-whisper cannot honour.
        """
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ModelError(f"expected mono audio (1-D array), got shape {audio.shape}")
        if not audio.flags.writeable:  # torch.from_numpy warns on read-only memory
            audio = audio.copy()
        self._check_options(options)
        duration = len(audio) / SAMPLE_RATE

        regions: list[tuple[float, float]] | None = None
        clips: list[tuple[float, float]] | None = None
        # the drift-free VAD scores, once: for the clips and the coverage check
        scores = speech_probabilities(audio) if options.vad_filter or options.fill_gaps else None
        if options.vad_filter:
            # a stretch of speech longer than a window is split at its longest pause (as the
            # batched path plans its chunks), so that every clip is one window and yields alone
            regions = speech_regions(audio, options.vad, SAMPLE_RATE, _MAX_REGION_S, scores)
            clips = decode_clips(regions, len(audio))
        language, probability = self._known_language(options)
        if audio.size == 0 or clips == []:
            logger.info("no speech in %.1f s of audio: nothing to decode", duration)
            segments: Iterator[Segment] = iter(())
        else:
            if language is None:
                try:
                    with self._lock:
                        language, probability = self._detect_language(audio, regions)
                except Exception as e:
                    raise model_error(e, "language detection") from e
            inner = with_words(options)
            segments = self._clip_segments(audio, inner, language, clips, duration)
        info = DecodeInfo(
            language=language or "en",
            language_probability=probability,
            duration=duration,
            path="sequential",
            beam_size=options.beam(),
            temperatures=options.temperatures,
        )
        decoding = Decoding(info, segments)
        if scores is None or not options.fill_gaps or audio.size == 0:
            return decoding
        known = info.language

        def redecode(start: float, end: float) -> list[Segment]:
            alone = replace(
                options,
                word_timestamps=True,
                initial_prompt=None,
                hotwords=None,
                condition_on_previous_text=False,
                fill_gaps=False,
            )
            clip = decode_clips([(start, end)], len(audio))
            if not clip or clip[0][1] <= clip[0][0]:
                return []
            return list(self._decode_clip(audio, alone, known, clip[0], duration))

        return complete(decoding, scores, len(audio), redecode, options, first_id=0)

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        return self.decode(audio, options).collect()

    def _clip_segments(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        language: str,
        clips: list[tuple[float, float]] | None,
        duration: float,
    ) -> Iterator[Segment]:
        """The segments of each clip in turn (all of the audio as one clip without VAD)."""
        prompt = " ".join(p for p in (options.hotwords, options.initial_prompt) if p) or None
        next_id = 0
        for clip in clips if clips is not None else [None]:
            clip_options = replace(options, initial_prompt=prompt)
            segments = self._decode_clip(audio, clip_options, language, clip, duration)
            for segment in segments:
                yield replace(segment, id=next_id)
                next_id += 1
            if options.condition_on_previous_text:
                text = " ".join(s.text.strip() for s in segments)
                prompt = " ".join(p for p in (prompt, text) if p)[-_MAX_PROMPT_CHARS:] or None
            else:
                prompt = None  # openai-whisper prompts only the first window then

    def _decode_clip(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        language: str,
        clip: tuple[float, float] | None,
        duration: float,
    ) -> tuple[Segment, ...]:
        clips = [clip] if clip is not None else None
        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = whisper.transcribe(
                    self._model,
                    torch.from_numpy(audio),
                    **whisper_arguments(options, language, clips, self._fp16),
                )
                segments = _segments(result["segments"], clips, duration)
            except Exception as e:
                raise model_error(e) from e
        for warning in caught:
            logger.warning("openai-whisper: %s: %s", warning.category.__name__, warning.message)
        return segments

    def _check_options(self, options: DecodeOptions) -> None:
        """Refuse what openai-whisper cannot do with this model, naming the option."""
        if options.length_penalty > _MAX_LENGTH_PENALTY:
            raise UnsupportedOption(
                f"options.length_penalty: openai-whisper accepts 0 to {_MAX_LENGTH_PENALTY:g}, "
                f"got {options.length_penalty:g}"
            )
        if options.language is not None and options.language not in LANGUAGES:
            raise UnsupportedOption(
                f"options.language: {options.language!r} is not a Whisper language"
            )
        check_capability(self._info, options.task, options.language)

    def _known_language(self, options: DecodeOptions) -> tuple[str | None, float]:
        """The language when no detection is needed; probability 0 marks "not detected"."""
        if options.language is not None:
            return options.language, 1.0
        if not self._model.is_multilingual:
            return "en", 1.0
        return None, 0.0

    def detect_language(self, audio: np.ndarray, vad: VadParameters | None) -> list[LanguageGuess]:
        """Every language's probability, most likely first; [] when VAD finds no speech."""
        check_capability(self._info, "detect_language")
        audio = np.array(audio, dtype=np.float32)  # a writeable copy for torch.from_numpy
        regions = speech_regions(audio, vad, SAMPLE_RATE) if vad is not None else None
        if audio.size == 0 or regions == []:
            return []
        try:
            with self._lock:
                return self._language_probabilities(audio, regions)
        except Exception as e:
            raise model_error(e, "language detection") from e

    def _detect_language(
        self, audio: np.ndarray, regions: list[tuple[float, float]] | None
    ) -> tuple[str, float]:
        """Most probable language of the first 30 s of speech, and its probability."""
        best = self._language_probabilities(audio, regions)[0]
        logger.info("detected language %s (p=%.2f)", best.language, best.probability)
        return best.language, best.probability

    def _language_probabilities(
        self, audio: np.ndarray, regions: list[tuple[float, float]] | None
    ) -> list[LanguageGuess]:
        """The model's language distribution over the first 30 s of speech, most likely first."""
        if regions:
            pieces, total = [], 0
            for start, end in regions:
                piece = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
                pieces.append(piece[: N_SAMPLES - total])
                total += len(pieces[-1])
                if total >= N_SAMPLES:
                    break
            sample = np.concatenate(pieces)
        else:
            sample = audio[:N_SAMPLES]
        mel = whisper.log_mel_spectrogram(
            torch.from_numpy(sample), self._model.dims.n_mels, padding=N_SAMPLES
        )
        mel = whisper.pad_or_trim(mel, N_FRAMES).to(self._model.device)
        mel = mel.to(torch.float16 if self._fp16 else torch.float32)
        _, probs = self._model.detect_language(mel)
        assert isinstance(probs, dict)  # one mel in, one distribution out
        ranked = sorted(probs.items(), key=lambda item: item[1], reverse=True)
        return [LanguageGuess(str(language), float(p)) for language, p in ranked]


def whisper_arguments(
    options: DecodeOptions,
    language: str,
    clips: list[tuple[float, float]] | None,
    fp16: bool,
) -> dict[str, Any]:
    """``whisper.transcribe`` keyword arguments meaning what ``options`` means to faster-whisper.

    ``clips`` are the stretches to decode (seconds on the audio's timeline), None for all of it.
    CTranslate2 decodes greedily at ``beam_size`` 1 (ignoring patience), so 1 maps to
    openai-whisper's greedy decoder rather than a one-beam search. CTranslate2 divides a
    hypothesis' log-probability by ``length ** length_penalty``; openai-whisper divides by
    ``length`` when ``length_penalty`` is None and by ``((5 + length) / 6) ** alpha`` otherwise.
    So 1 -> None and 0 -> 0 are exact; values between favour length in the same direction but
    not by the same amount, and openai-whisper refuses values above 1 (``UnsupportedOption``).
    """
    beam_size = options.beam()
    beam = beam_size > 1
    length_penalty = None if options.length_penalty == 1.0 else options.length_penalty
    clip_timestamps: list[float] | str = "0"
    if clips is not None:
        clip_timestamps = [t for clip in clips for t in clip]
    return {
        "verbose": None,  # no printing, no progress bar
        "temperature": tuple(options.temperatures),
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "logprob_threshold": options.log_prob_threshold,
        "no_speech_threshold": options.no_speech_threshold,
        "condition_on_previous_text": options.condition_on_previous_text,
        "initial_prompt": options.initial_prompt,
        "word_timestamps": options.word_timestamps,
        "clip_timestamps": clip_timestamps,
        # the rest become whisper.DecodingOptions fields
        "task": options.task,
        "language": language,
        "beam_size": beam_size if beam else None,
        "patience": options.patience if beam else None,
        "best_of": options.best_of,
        "length_penalty": length_penalty,
        "fp16": fp16,
    }


def _segments(
    raw: list[dict[str, Any]], clips: list[tuple[float, float]] | None, duration: float
) -> tuple[Segment, ...]:
    """Frozen records from openai-whisper's segment dicts.

    Segments openai-whisper blanked (no text, or zero length) are dropped, as faster-whisper
    drops them. Times are clamped to the audio and, with VAD, to the clip the segment was
    decoded from: openai-whisper pads a clip to 30 s, and a timestamp the model places in that
    padding lies past the audio it actually heard.
    """
    segments: list[Segment] = []
    for item in raw:
        text = str(item["text"])
        if not text.strip():
            continue
        low, high = 0.0, duration
        if clips:
            seek_time = float(item["seek"]) / FRAMES_PER_SECOND
            low, high = _clip_of(seek_time, clips)
            low, high = max(low, 0.0), min(high, duration)

        def clamp(t: Any, low: float = low, high: float = high) -> float:
            return min(max(float(t), low), high)

        words = None
        if "words" in item:
            words = tuple(
                Word(
                    start=clamp(w["start"]),
                    end=clamp(w["end"]),
                    word=str(w["word"]),
                    probability=float(w["probability"]),
                )
                for w in item["words"]
            )
        segments.append(
            Segment(
                id=len(segments),
                start=clamp(item["start"]),
                end=clamp(item["end"]),
                text=text,
                avg_logprob=float(item["avg_logprob"]),
                no_speech_prob=float(item["no_speech_prob"]),
                compression_ratio=float(item["compression_ratio"]),
                temperature=float(item["temperature"]),
                words=words,
            )
        )
    return tuple(segments)


def decode_clips(regions: list[tuple[float, float]], num_samples: int) -> list[tuple[float, float]]:
    """The stretches openai-whisper decodes: speech regions, joined while they fit one window.

    Each clip is decoded from its own start, with no audio context before it, so decoding every
    VAD region apart cuts sentences at each pause: on the benchmark's 40 short English clips
    (tiny.en) that gave 5.77% WER against 5.65% without VAD, while joining regions that fit
    one 30 s window (pauses kept, long silences still skipped) gave 5.40%, and faster-whisper's
    way (cutting silence out and concatenating) 5.52%. Leading and trailing silence and any gap
    that would overflow a window are still never decoded.

    Times are snapped to whole 10 ms mel frames inside the audio: openai-whisper rounds clip
    times to frames and loops forever on a clip that ends past its last whole frame (each step
    then decodes zero frames), and Silero's last region ends at the final sample, usually half a
    frame past it.
    """
    content_frames = num_samples // HOP_LENGTH
    snapped = []
    for start, end in regions:
        first = round(start * FRAMES_PER_SECOND)
        last = min(round(end * FRAMES_PER_SECOND), content_frames)
        snapped.append((first / FRAMES_PER_SECOND, last / FRAMES_PER_SECOND))
    return join_regions(snapped, N_FRAMES / FRAMES_PER_SECOND)


def _clip_of(time: float, clips: list[tuple[float, float]]) -> tuple[float, float]:
    """The clip holding ``time`` (a decode window's start), else the nearest one before it."""
    chosen = clips[0]
    for clip in clips:
        if clip[0] <= time + 0.5 / FRAMES_PER_SECOND:  # seek counts whole 10 ms frames
            chosen = clip
        else:
            break
    return chosen
