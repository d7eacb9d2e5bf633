"""faster-whisper (CTranslate2): the default engine.

The model is loaded once in ``__init__``; ``transcribe`` consumes faster-whisper's lazy segment
generator exactly once into frozen records. With ``vad_filter`` faster-whisper cuts silence out
before decoding and maps every timestamp back onto the original timeline.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment as FwSegment
from faster_whisper.vad import VadOptions

from src.engines.base import DecodeOptions, ModelInfo, Segment, Transcript, Word
from src.errors import ModelError, OutOfMemory, is_out_of_memory

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


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

    @property
    def info(self) -> ModelInfo:
        return self._info

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        try:
            generator, info = self._model.transcribe(
                audio,
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
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
                vad_parameters=VadOptions(
                    threshold=options.vad.threshold,
                    min_silence_duration_ms=options.vad.min_silence_duration_ms,
                    speech_pad_ms=options.vad.speech_pad_ms,
                ),
            )
            segments = tuple(_segment(s) for s in generator)
        except Exception as e:
            if is_out_of_memory(e):
                raise OutOfMemory(
                    f"transcription failed: out of memory ({type(e).__name__})"
                ) from e
            raise ModelError(f"transcription failed: {type(e).__name__}") from e
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            segments=segments,
        )


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
