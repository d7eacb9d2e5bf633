"""The engine interface and the typed records every engine returns.

An engine wraps one loaded Whisper model. It receives the already decoded audio (16 kHz mono
float32, the same array for every engine) and engine-neutral ``DecodeOptions``, and returns a
``Decoding``: what the decode will use (``DecodeInfo``, known before the first segment, as
faster-whisper's ``TranscriptionInfo`` is) and a lazy iterator of ``Segment``s, each given as soon
as it is final, in timeline order, with timestamps in seconds on the original audio's timeline.
Everything downstream (progress, streaming, the one-shot result, the HTTP and live doors) is a
consumer of that iterator. Closing it early stops the decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import ConfigDict, Field

#: what every engine takes: mono float32 samples at this rate (``src.audio.decode`` makes them)
SAMPLE_RATE = 16000

Task = Literal["transcribe", "translate"]
EngineName = Literal["faster-whisper", "openai-whisper"]
#: how a file was decoded: window after window, or VAD-cut chunks in batches (long audio)
DecodePath = Literal["sequential", "batched"]


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


def words_from_dicts(raw: Iterable[Mapping[str, Any]]) -> tuple[Word, ...]:
    """Words from faster-whisper's aligned word dicts (``start``, ``end``, ``word``,
    ``probability``)."""
    return tuple(
        Word(
            start=float(w["start"]),
            end=float(w["end"]),
            word=str(w["word"]),
            probability=float(w["probability"]),
        )
        for w in raw
    )


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
    """Voice-activity detection settings (Silero VAD, as shipped with faster-whisper).

    The one VAD settings type: the job model validates it as it is (the bounds below are the
    job's limits), the engines read it, and ``src.engines.vad.vad_options`` alone maps it onto
    faster-whisper's own ``VadOptions``.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    min_silence_duration_ms: Annotated[int, Field(ge=0, le=10_000)] = 1000
    speech_pad_ms: Annotated[int, Field(ge=0, le=2_000)] = 400


#: beam width when a job gives none: openai-whisper's and faster-whisper's default
DEFAULT_BEAM_SIZE = 5
#: beam width of the batched long-audio path when a job gives none: over the benchmark's five
#: long files (bench/README.md) 3 was as accurate as 5 (pooled WER 9.3% against 9.7%) and 1.15x
#: faster on the CPU
BATCHED_BEAM_SIZE = 3


@dataclass(frozen=True)
class DecodeOptions:
    """Everything an engine needs to decode, independent of the request's wire format.

    These defaults are the worker's decode defaults: the job model (``src.request``) takes its
    own from here.
    """

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
    #: words to bias the decoder toward (faster-whisper's ``hotwords``: given as a prompt
    #: before the previous text; openai-whisper and the batched path put them before
    #: ``initial_prompt``)
    hotwords: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = True
    vad: VadParameters = field(default_factory=VadParameters)
    #: completeness (``coverage``): speech that no decoded word covers is decoded again on its
    #: own; off only for live turns, which keep their own per-turn guarantee
    fill_gaps: bool = True

    def beam(self, default: int = DEFAULT_BEAM_SIZE) -> int:
        """The job's beam width, or ``default`` when the job gave none."""
        return self.beam_size if self.beam_size is not None else default

    def calls_silence(self, no_speech_prob: float, avg_logprob: float) -> bool:
        """The sequential decoder's rule: a window the model calls silence and cannot read
        (no text is kept from it)."""
        if self.no_speech_threshold is None or no_speech_prob <= self.no_speech_threshold:
            return False
        return self.log_prob_threshold is None or avg_logprob < self.log_prob_threshold


#: the worker's decode defaults, read by the job model
DECODE_DEFAULTS = DecodeOptions()


@dataclass
class CoverageStats:
    """What the completeness check (``src.engines.coverage``) did in one decode; filled while
    the decode's segments flow, final once they are all in."""

    #: stretches of speech that no decoded word covered, decoded again on their own
    redecoded: int = 0
    #: of those, the ones that gave words (the rest the model called silence or noise)
    filled: int = 0
    #: seconds of speech in those stretches
    seconds: float = 0.0


def shifted(segment: Segment, offset: float) -> Segment:
    """``segment`` (and its words) moved ``offset`` seconds later on the timeline."""
    words = segment.words
    if words is not None:
        words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)


@dataclass(frozen=True)
class DecodeInfo:
    """What a decode uses, known before its first segment (as faster-whisper's
    ``TranscriptionInfo``): reported in the job's metadata."""

    language: str
    language_probability: float
    duration: float
    path: DecodePath
    beam_size: int
    #: the fallback schedule; the batched path decodes at the first temperature only and falls
    #: back to the sequential decoder (with the whole schedule) for a chunk that looks wrong
    temperatures: tuple[float, ...]
    #: VAD-cut chunks of the batched path (None on the sequential path)
    chunks: int | None = None
    #: the completeness check's count, filled while the segments flow (None when it is off)
    coverage: CoverageStats | None = None

    def transcript(self, segments: tuple[Segment, ...]) -> Transcript:
        """This decode's transcript, once its segments are all in."""
        return Transcript(
            text=joined_text(segments),
            language=self.language,
            language_probability=self.language_probability,
            duration=self.duration,
            segments=segments,
        )


@dataclass(frozen=True)
class Decoding:
    """A decode under way: its ``info`` now, its segments as they become final.

    ``segments`` is single-pass (a generator): consume it once; ``close()`` it to stop early.
    """

    info: DecodeInfo
    segments: Iterator[Segment]

    def collect(self) -> Transcript:
        """Run the decode to its end into one ``Transcript``."""
        return self.info.transcript(tuple(self.segments))


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded model is and where it runs; reported in every job's metadata."""

    engine: EngineName
    model: str
    device: str
    compute_type: str
    multilingual: bool


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    probability: float


class Engine(Protocol):
    """A loaded Whisper model that turns a waveform into segments."""

    @property
    def info(self) -> ModelInfo: ...

    def decode(self, audio: np.ndarray, options: DecodeOptions) -> Decoding:
        """Start decoding ``audio`` (16 kHz mono float32): the language is known on return, the
        segments come lazily, each as soon as it is final. Raises ``ModelError`` on failure (on
        return or while iterating) and ``UnsupportedOption`` for what the model cannot do."""
        ...

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """``decode`` run to its end."""
        ...

    def detect_language(self, audio: np.ndarray, vad: VadParameters | None) -> list[LanguageGuess]:
        """Every language's probability, most likely first, from the first 30 s of speech."""
        ...
