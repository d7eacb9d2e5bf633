"""The engine interface and the typed records every engine returns.

An engine wraps one loaded Whisper model. It receives the already decoded audio (16 kHz mono
float32, the same array for every engine) and engine-neutral ``DecodeOptions``, and returns a
``Transcript`` whose timestamps are seconds on the original audio's timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Task = Literal["transcribe", "translate"]
EngineName = Literal["faster-whisper", "openai-whisper"]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float
    #: set by diarization ("SPEAKER_1", ...); None when not asked for
    speaker: str | None = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float | None = None
    words: tuple[Word, ...] | None = None
    #: set by diarization ("SPEAKER_1", ...); None when not asked for
    speaker: str | None = None


def joined_text(segments: tuple[Segment, ...] | list[Segment]) -> str:
    """A transcript's text: its segments' texts (which carry their own leading spaces) joined."""
    return "".join(s.text for s in segments).strip()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class VadParameters:
    """Voice-activity detection settings (Silero VAD, as shipped with faster-whisper)."""

    threshold: float = 0.5
    min_silence_duration_ms: int = 1000
    speech_pad_ms: int = 400


#: beam width when a job gives none: openai-whisper's and faster-whisper's default (the batched
#: long-audio path has its own, ``src.engines.batched.BATCHED_BEAM_SIZE``)
DEFAULT_BEAM_SIZE = 5


@dataclass(frozen=True)
class DecodeOptions:
    """Everything an engine needs to decode, independent of the request's wire format."""

    task: Task = "transcribe"
    language: str | None = None
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    #: None: the engine's own default for the path it takes (``beam``)
    beam_size: int | None = None
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = True
    vad: VadParameters = field(default_factory=VadParameters)

    def beam(self, default: int = DEFAULT_BEAM_SIZE) -> int:
        """The job's beam width, or ``default`` when the job gave none."""
        return self.beam_size if self.beam_size is not None else default


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded model is and where it runs; reported in every job's metadata."""

    engine: EngineName
    model: str
    device: str
    compute_type: str
    multilingual: bool


#: called with each segment as soon as the engine has decoded it (streaming, progress)
SegmentCallback = Callable[[Segment], None]


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    probability: float


class Engine(Protocol):
    """A loaded Whisper model that turns a waveform into a ``Transcript``."""

    @property
    def info(self) -> ModelInfo: ...

    def transcribe(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Decode ``audio`` (16 kHz mono float32). Raises ``ModelError`` on failure.

        ``on_segment`` sees every segment of the result, in order, as early as the engine can
        give it (faster-whisper: as each is decoded; openai-whisper: at the end).
        """
        ...

    def detect_language(self, audio: np.ndarray, vad: VadParameters | None) -> list[LanguageGuess]:
        """Every language's probability, most likely first, from the first 30 s of speech."""
        ...
