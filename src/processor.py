"""WhisperProcessor: holds the loaded engine and runs one job from audio source to transcript.

The engine is loaded once per process (``from_settings``) and warmed up with a short decode, so
the first real job pays no lazy initialisation. Each job gets its own temporary directory, gone
when the job ends however it ends; the audio is decoded once and the same array goes to the
engine (twice for a compat job that also asks for a translation).

Work is bounded twice over: a container that declares more than ``max_audio_seconds`` is refused
before decoding, and the decode itself stops once that much audio has come out (metadata can
lie). A decode that runs out of accelerator memory is retried once with beam size 1.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from src.audio.decode import SAMPLE_RATE, decode_audio, probe_duration
from src.audio.source import fetch_audio
from src.config import Settings
from src.engines.base import (
    DecodeOptions,
    Engine,
    LanguageGuess,
    ModelInfo,
    Segment,
    SegmentCallback,
    Transcript,
)
from src.errors import AudioError, ModelError, OutOfMemory, UnsupportedOption, is_out_of_memory
from src.request import AudioInput, TranscribeOptions, TranscriptionRequest
from src.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

WARM_UP_SECONDS = 2.0


@dataclass(frozen=True)
class Timings:
    """Wall seconds of each stage of a job."""

    download: float
    decode: float
    inference: float
    total: float


@dataclass(frozen=True)
class LoadedAudio:
    """One file, fetched and decoded: the samples the engine gets, and what it cost."""

    samples: np.ndarray
    size_bytes: int
    download_seconds: float
    decode_seconds: float

    def timings(self, inference: float) -> Timings:
        """The job's timings once the model has spent ``inference`` seconds on these samples."""
        return Timings(
            download=self.download_seconds,
            decode=self.decode_seconds,
            inference=inference,
            total=self.download_seconds + self.decode_seconds + inference,
        )


@dataclass(frozen=True)
class LanguageResult:
    """The answer to a ``detect_language`` job: the likeliest languages, most likely first."""

    languages: tuple[LanguageGuess, ...]
    duration: float
    timings: Timings
    model: ModelInfo
    input_bytes: int = 0


@dataclass(frozen=True)
class JobResult:
    transcript: Transcript
    translation: Transcript | None
    timings: Timings
    model: ModelInfo
    #: bytes of audio fetched (downloaded or decoded from base64)
    input_bytes: int = 0

    @property
    def realtime_factor(self) -> float:
        """Audio seconds per wall second of the whole job (higher is faster)."""
        return self.transcript.duration / self.timings.total if self.timings.total > 0 else 0.0


class WhisperProcessor:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        # One decode at a time: a worker owns one accelerator, and concurrent decodes on it only
        # compete for the same memory and compute.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> WhisperProcessor:
        from src.engines.loader import load_engine

        started = time.perf_counter()
        processor = cls(load_engine(settings), settings)
        if settings.warm_up:
            processor.warm_up()
        logger.info("worker ready in %.2f s", time.perf_counter() - started)
        return processor

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    def warm_up(self) -> None:
        """Run encoder and decoder once on a synthetic tone (not silence: VAD would skip it)."""
        t = np.arange(int(WARM_UP_SECONDS * SAMPLE_RATE), dtype=np.float32) / SAMPLE_RATE
        tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        options = DecodeOptions(language="en", temperatures=(0.0,), beam_size=1, vad_filter=False)
        started = time.perf_counter()
        with self._lock:
            self.engine.transcribe(tone, options)
        logger.info("warm-up decode took %.2f s", time.perf_counter() - started)

    def check_supported(self, options: TranscribeOptions) -> None:
        """Refuse what the loaded model cannot do, before any download or decode."""
        if options.diarize:
            from src.speakers import speaker_encoder

            speaker_encoder()  # raises UnsupportedOption when the worker has no speaker model
        if self.info.multilingual:
            return
        if options.task == "translate":
            raise UnsupportedOption(
                f"options.task: 'translate' needs a multilingual model; the loaded model "
                f"{self.info.model!r} is English-only (allowed: 'transcribe')"
            )
        if options.language not in (None, "en"):
            raise UnsupportedOption(
                f"options.language: the loaded model {self.info.model!r} is English-only "
                "(allowed: 'en' or null)"
            )

    def process(
        self,
        request: TranscriptionRequest,
        *,
        job_id: str = "-",
        also_translate: bool = False,
        on_segment: Callable[[Segment, float], None] | None = None,
    ) -> JobResult:
        """A one-file request (``request.audio``); ``audios`` jobs go through ``src.jobs``."""
        if request.audio is None:
            raise UnsupportedOption("audio: this call takes one file; use src.jobs for 'audios'")
        return self.process_audio(
            request.audio,
            request.options,
            job_id=job_id,
            also_translate=also_translate,
            on_segment=on_segment,
        )

    def process_audio(
        self,
        source: AudioInput,
        options: TranscribeOptions,
        *,
        job_id: str = "-",
        also_translate: bool = False,
        on_segment: Callable[[Segment, float], None] | None = None,
        max_bytes: int | None = None,
    ) -> JobResult:
        """Fetch, decode and transcribe one file. ``max_bytes`` lowers the download cap (the
        rest of a several-files job's budget). ``on_segment`` gets each segment as it is decoded
        with the file's duration, for streaming and progress."""
        self.check_supported(options)
        if also_translate:
            self.check_supported(options.model_copy(update={"task": "translate"}))
        loaded = self.load_audio(source, options, max_bytes=max_bytes)
        decode_options = options.decode_options()
        duration = len(loaded.samples) / SAMPLE_RATE
        callback: SegmentCallback | None = None
        if on_segment is not None:
            callback = functools.partial(_with_duration, on_segment, duration)
        started = time.perf_counter()
        with self._lock:
            transcript = self._transcribe(loaded.samples, decode_options, job_id, callback)
            translation = None
            if also_translate:
                translation = self._transcribe(
                    loaded.samples, replace(decode_options, task="translate"), job_id, None
                )
        if options.custom_vocabulary:
            vocabulary = Vocabulary(options.custom_vocabulary)
            transcript = vocabulary.apply(transcript)
        if options.diarize:
            transcript = self._diarize(loaded.samples, transcript, options)
        inference = time.perf_counter() - started

        timings = loaded.timings(inference)
        result = JobResult(transcript, translation, timings, self.info, loaded.size_bytes)
        logger.info(
            "job %s: %.1f s audio, language %s, %d segments; download %.2f s, decode %.2f s, "
            "inference %.2f s, %.1fx real time",
            job_id,
            transcript.duration,
            transcript.language,
            len(transcript.segments),
            timings.download,
            timings.decode,
            timings.inference,
            result.realtime_factor,
        )
        return result

    def detect_language(
        self,
        source: AudioInput,
        options: TranscribeOptions,
        *,
        job_id: str = "-",
        max_bytes: int | None = None,
    ) -> LanguageResult:
        """The most likely languages of one file, without transcribing it."""
        if not self.info.multilingual:
            raise UnsupportedOption(
                f"options.task: 'detect_language' needs a multilingual model; the loaded model "
                f"{self.info.model!r} is English-only"
            )
        loaded = self.load_audio(source, options, max_bytes=max_bytes)
        started = time.perf_counter()
        vad = options.decode_options().vad if options.vad_filter else None
        with self._lock:
            guesses = self.engine.detect_language(loaded.samples, vad)
        if not guesses:
            raise AudioError("audio: no speech found to detect a language from")
        inference = time.perf_counter() - started
        timings = loaded.timings(inference)
        logger.info("job %s: language detection in %.2f s", job_id, inference)
        top = tuple(guesses[: options.top_languages])
        duration = len(loaded.samples) / SAMPLE_RATE
        return LanguageResult(top, duration, timings, self.info, loaded.size_bytes)

    def load_audio(
        self, source: AudioInput, options: TranscribeOptions, *, max_bytes: int | None = None
    ) -> LoadedAudio:
        """Download (or decode base64) into a per-job temp dir, then decode once to samples."""
        limits = self.settings.download
        if max_bytes is not None:
            limits = replace(limits, max_bytes=min(limits.max_bytes, max_bytes))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="whisper-job-") as workdir:
            path = fetch_audio(source, Path(workdir), limits)
            size = path.stat().st_size
            downloaded = time.perf_counter()
            self._check_declared_duration(path)
            samples = decode_audio(
                path, denoise=options.denoise, max_seconds=self.settings.max_audio_seconds
            )
        decoded = time.perf_counter()
        self._check_duration(samples)
        return LoadedAudio(samples, size, downloaded - started, decoded - downloaded)

    def _diarize(
        self, samples: np.ndarray, transcript: Transcript, options: TranscribeOptions
    ) -> Transcript:
        from src.speakers import label_speakers

        return label_speakers(
            samples,
            transcript,
            num_speakers=options.num_speakers,
            max_speakers=options.max_speakers,
        )

    def _transcribe(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        job_id: str,
        on_segment: SegmentCallback | None,
    ) -> Transcript:
        """One engine call; on out-of-memory, free what can be freed and retry once, lighter.

        A retry after segments were already streamed would stream them twice, so the callback
        is only given to the first attempt; the retry's result is still complete.
        """
        try:
            return self.engine.transcribe(audio, options, on_segment)
        except ModelError as e:
            if not is_out_of_memory(e):
                raise
            logger.warning(
                "job %s: out of memory (beam_size %s, best_of %d); retrying once with 1 and 1",
                job_id,
                options.beam_size or "default",
                options.best_of,
            )
        release_memory()
        try:
            return self.engine.transcribe(audio, replace(options, beam_size=1, best_of=1))
        except ModelError as e:
            if not is_out_of_memory(e):
                raise
            release_memory()
            raise OutOfMemory(
                "transcription failed: the model ran out of memory, also when retried with "
                "beam_size 1; send shorter audio or use a smaller model"
            ) from e

    def _check_declared_duration(self, path: Path) -> None:
        """Refuse, before decoding, audio whose container already says it is too long."""
        declared = probe_duration(path)
        if declared is not None and declared > self.settings.max_audio_seconds:
            raise AudioError(self._too_long(declared))

    def _check_duration(self, audio: np.ndarray) -> None:
        seconds = len(audio) / SAMPLE_RATE
        if seconds > self.settings.max_audio_seconds:
            raise AudioError(self._too_long(seconds))

    def _too_long(self, seconds: float) -> str:
        return (
            f"audio: {seconds:.0f} s is longer than this worker's limit of "
            f"{self.settings.max_audio_seconds:.0f} s (MAX_AUDIO_SECONDS)"
        )


def _with_duration(
    callback: Callable[[Segment, float], None], duration: float, segment: Segment
) -> None:
    callback(segment, duration)


def release_memory() -> None:
    """Drop unreachable objects and, when torch is loaded, its cached CUDA blocks."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
