"""faster-whisper (CTranslate2): the default engine.

The model is loaded once in ``__init__``; ``transcribe`` consumes faster-whisper's lazy segment
generator exactly once into frozen records. With ``vad_filter`` faster-whisper cuts silence out
before decoding and maps every timestamp back onto the original timeline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment as FwSegment

from src.engines.base import (
    DecodeOptions,
    LanguageGuess,
    ModelInfo,
    Segment,
    SegmentCallback,
    Transcript,
    VadParameters,
    Word,
    joined_text,
)
from src.engines.batched import BatchedDecoder
from src.engines.vad import speech_regions, vad_options
from src.errors import ModelError, OutOfMemory, UnsupportedOption, is_out_of_memory

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: audio longer than this (and with ``vad_filter``) is decoded in batches of VAD-cut chunks
LONG_AUDIO_SECONDS = 60.0
#: chunks decoded together by the batched path; a GPU keeps more windows busy
BATCH_SIZE = {"cpu": 8, "cuda": 16}
#: groups of chunks decoded at once on the CPU, each by its own CTranslate2 worker: the tiny
#: per-step matrices of a beam search do not spread well over threads, so two one-thread
#: searches side by side beat one two-thread search (bench/README.md)
CPU_LANES = 2


def usable_cpus() -> int:
    """CPUs this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_compute_type(device: str) -> str:
    """float16 on a GPU, int8 on the CPU: the fastest type each supports without accuracy loss."""
    return "float16" if device == "cuda" else "int8"


class FasterWhisperEngine:
    """A CTranslate2 Whisper model loaded from a local directory."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str,
        device: str = "cpu",
        compute_type: str | None = None,
        cpu_threads: int = 0,
    ) -> None:
        compute_type = compute_type or default_compute_type(device)
        if cpu_threads == 0 and device == "cpu":
            # CTranslate2's own default is 4 threads, which on a 2-core worker only contend
            cpu_threads = usable_cpus()
        try:
            self._model = WhisperModel(
                str(model_path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except Exception as e:
            raise ModelError(
                f"could not load faster-whisper model {model_name!r} on {device} "
                f"({compute_type}): {type(e).__name__}: {e}"
            ) from e
        self._info = ModelInfo(
            engine="faster-whisper",
            model=model_name,
            device=device,
            compute_type=compute_type,
            multilingual=bool(self._model.model.is_multilingual),
        )
        self._batched = BatchedDecoder(
            self._lane_model(model_path, device, compute_type, cpu_threads),
            self._decode_chunk,
            batch_size=BATCH_SIZE.get(device, 8),
            lanes=CPU_LANES if device == "cpu" and cpu_threads >= CPU_LANES else 1,
            encode_batch=1 if device == "cpu" else BATCH_SIZE.get(device, 8),
        )

    def _lane_model(
        self, model_path: Path, device: str, compute_type: str, cpu_threads: int
    ) -> WhisperModel:
        """The long-audio path's model: on a multi-core CPU the same weights again, loaded with
        one CTranslate2 worker per lane (the short-audio model keeps all threads on one call);
        elsewhere the same model."""
        if device != "cpu" or cpu_threads < CPU_LANES:
            return self._model
        try:
            return WhisperModel(
                str(model_path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads // CPU_LANES,
                num_workers=CPU_LANES,
                local_files_only=True,
            )
        except Exception as e:
            raise ModelError(f"could not load the long-audio model: {type(e).__name__}: {e}") from e

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def batched(self) -> BatchedDecoder:
        """The long-audio path (its ``last_stats`` tell which chunks were decoded again)."""
        return self._batched

    def uses_batched(self, audio: np.ndarray, options: DecodeOptions) -> bool:
        """Batched decoding for long audio; it needs VAD to cut the audio into chunks."""
        return options.vad_filter and len(audio) / SAMPLE_RATE > LONG_AUDIO_SECONDS

    def transcribe(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Batched for long audio (``uses_batched``), else faster-whisper's sequential decoder.

        ``on_segment`` sees each sequential segment as it is decoded; on the batched path it sees
        them once every chunk is final (a chunk may still be decoded again).
        """
        if not self.uses_batched(audio, options):
            return self.transcribe_sequential(audio, options, on_segment)
        try:
            batched, language, probability = self._batched.transcribe(audio, options)
        except Exception as e:
            raise _model_error(e) from e
        segments = tuple(batched)
        if on_segment is not None:
            for segment in segments:
                on_segment(segment)
        return Transcript(
            text=joined_text(segments),
            language=language,
            language_probability=probability,
            duration=len(audio) / SAMPLE_RATE,
            segments=segments,
        )

    def _decode_chunk(
        self, audio: np.ndarray, options: DecodeOptions, language: str
    ) -> list[Segment]:
        """One chunk of a batched decode, again with the sequential decoder and no VAD."""
        transcript = self.transcribe_sequential(
            audio, replace(options, language=language, vad_filter=False)
        )
        return list(transcript.segments)

    def transcribe_sequential(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """faster-whisper's own sequential decoder, one 30 s window after another."""
        try:
            generator, info = self._model.transcribe(
                audio,
                language=options.language,
                task=options.task,
                beam_size=options.beam(),
                best_of=options.best_of,
                patience=options.patience,
                length_penalty=options.length_penalty,
                temperature=list(options.temperatures),
                compression_ratio_threshold=options.compression_ratio_threshold,
                log_prob_threshold=options.log_prob_threshold,
                no_speech_threshold=options.no_speech_threshold,
                condition_on_previous_text=options.condition_on_previous_text,
                initial_prompt=options.initial_prompt,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
                vad_parameters=vad_options(options.vad),
            )
            decoded = []
            for fw in generator:  # the lazy generator, consumed once
                segment = _segment(fw)
                decoded.append(segment)
                if on_segment is not None:
                    on_segment(segment)
            segments = tuple(decoded)
        except Exception as e:
            raise _model_error(e) from e
        return Transcript(
            text=joined_text(segments),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            segments=segments,
        )

    def detect_language(self, audio: np.ndarray, vad: VadParameters | None) -> list[LanguageGuess]:
        """Every language's probability, most likely first; [] when VAD finds no speech."""
        if not self._info.multilingual:
            raise UnsupportedOption("options.task: language detection needs a multilingual model")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.size == 0 or (vad is not None and not speech_regions(audio, vad)):
            return []
        try:
            _, _, probabilities = self._model.detect_language(
                audio,
                vad_filter=vad is not None,
                vad_parameters=vad_options(vad) if vad is not None else None,
            )
        except Exception as e:
            raise _model_error(e, "language detection") from e
        guesses = [LanguageGuess(language=lang, probability=float(p)) for lang, p in probabilities]
        return sorted(guesses, key=lambda g: g.probability, reverse=True)


def _model_error(e: Exception, what: str = "transcription") -> ModelError:
    """Our error for a CTranslate2 failure: ``OutOfMemory`` when it ran out of memory."""
    if is_out_of_memory(e):
        return OutOfMemory(f"{what} failed: out of memory ({type(e).__name__})")
    return ModelError(f"{what} failed: {type(e).__name__}")


def _segment(s: FwSegment) -> Segment:
    words = None
    if s.words is not None:
        words = tuple(
            Word(
                start=float(w.start),
                end=float(w.end),
                word=w.word,
                probability=float(w.probability),
            )
            for w in s.words
        )
    return Segment(
        id=s.id,
        start=float(s.start),
        end=float(s.end),
        text=s.text,
        avg_logprob=float(s.avg_logprob),
        no_speech_prob=float(s.no_speech_prob),
        compression_ratio=float(s.compression_ratio),
        temperature=s.temperature,
        words=words,
    )
