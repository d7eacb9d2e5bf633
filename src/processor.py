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

import gc
import logging
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from src.audio.decode import SAMPLE_RATE, decode_audio, probe_duration
from src.audio.source import fetch_audio
from src.config import Settings
from src.engines.base import DecodeOptions, Engine, ModelInfo, Transcript
from src.errors import AudioError, ModelError, OutOfMemory, UnsupportedOption, is_out_of_memory
from src.request import TranscribeOptions, TranscriptionRequest
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
class JobResult:
    transcript: Transcript
    translation: Transcript | None
    timings: Timings
    model: ModelInfo

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
        self, request: TranscriptionRequest, *, job_id: str = "-", also_translate: bool = False
    ) -> JobResult:
        options = request.options
        self.check_supported(options)
        if also_translate:
            self.check_supported(options.model_copy(update={"task": "translate"}))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="whisper-job-") as workdir:
            path = fetch_audio(request.audio, Path(workdir), self.settings.download)
            downloaded = time.perf_counter()
            self._check_declared_duration(path)
            audio = decode_audio(
                path, denoise=options.denoise, max_seconds=self.settings.max_audio_seconds
            )
        decoded = time.perf_counter()
        self._check_duration(audio)

        decode_options = options.decode_options()
        with self._lock:
            transcript = self._transcribe(audio, decode_options, job_id)
            translation = None
            if also_translate:
                translation = self._transcribe(
                    audio, replace(decode_options, task="translate"), job_id
                )
        if options.custom_vocabulary:
            vocabulary = Vocabulary(options.custom_vocabulary)
            transcript = vocabulary.apply(transcript)
        finished = time.perf_counter()

        timings = Timings(
            download=downloaded - started,
            decode=decoded - downloaded,
            inference=finished - decoded,
            total=finished - started,
        )
        result = JobResult(transcript, translation, timings, self.info)
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

    def _transcribe(self, audio: np.ndarray, options: DecodeOptions, job_id: str) -> Transcript:
        """One engine call; on out-of-memory, free what can be freed and retry once, lighter."""
        try:
            return self.engine.transcribe(audio, options)
        except ModelError as e:
            if not is_out_of_memory(e):
                raise
            logger.warning(
                "job %s: out of memory (beam_size %d, best_of %d); retrying once with 1 and 1",
                job_id,
                options.beam_size,
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


def release_memory() -> None:
    """Drop unreachable objects and, when torch is loaded, its cached CUDA blocks."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
