"""WhisperProcessor, the model service: the one owner of the loaded engine, shared by every door.

The engine is loaded once per process (``from_settings``) and warmed up with a short decode, so
the first real job pays no lazy initialisation. Each job gets its own temporary directory, gone
when the job ends however it ends; the audio is decoded once and the same array goes to the
engine (twice for a compat job that also asks for a translation).

``events`` is the pipeline every door consumes: it yields each segment as soon as the engine
has made it final (``SegmentDecoded``, already clipped to the audio and corrected by the job's
custom vocabulary), then one ``JobResult``. Progress reports, RunPod's ``/stream`` items, the
HTTP door's server-sent events and the one-shot result are all built from that one iterator.
The model is held (``src/service/gate.py``) only while the engine computes its next segment,
so a live session's short decodes (``decode_samples``) run between a long file's steps, and
several jobs overlap: one downloads while another's steps run; among file steps, the job that
arrived first goes first. The decoded samples of all jobs in flight are bounded together
(``src/service/budget.py``, ``MAX_BUFFERED_AUDIO_SECONDS``).

Work is bounded twice over: a container that declares more than ``max_audio_seconds`` is refused
before decoding, and the decode itself stops once that much audio has come out (metadata can
lie). A decode that runs out of accelerator memory is retried once with beam size 1.
"""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from src.audio.decode import decode_audio, probe_duration
from src.audio.source import AudioSource, fetch_audio
from src.config import Settings
from src.engines.base import (
    SAMPLE_RATE,
    DecodeInfo,
    DecodeOptions,
    Decoding,
    Engine,
    LanguageGuess,
    ModelInfo,
    Segment,
    Transcript,
)
from src.engines.capabilities import check_capability
from src.errors import AudioError, ModelError, OutOfMemory, TooLarge, is_out_of_memory
from src.request import TranscribeOptions
from src.service.budget import AudioBudget
from src.service.gate import ModelGate, Priority
from src.timeline import clip_segment
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

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

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
class SegmentDecoded:
    """One segment, final, as soon as the engine has it; ``duration`` is the whole file's."""

    segment: Segment
    duration: float


@dataclass(frozen=True)
class JobResult:
    transcript: Transcript
    translation: Transcript | None
    timings: Timings
    model: ModelInfo
    #: what the decode used (path, beam, temperature schedule, chunks)
    decode: DecodeInfo
    #: bytes of audio fetched (downloaded or decoded from base64)
    input_bytes: int = 0

    @property
    def realtime_factor(self) -> float:
        """Audio seconds per wall second of the whole job (higher is faster)."""
        return self.transcript.duration / self.timings.total if self.timings.total > 0 else 0.0


#: what ``WhisperProcessor.events`` yields
ProcessorEvent = SegmentDecoded | JobResult


class WhisperProcessor:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.gate = ModelGate(live_beside_files=live_beside_files(engine.info))
        #: the decoded samples of every job in flight, bounded together
        self.budget = AudioBudget(settings.max_buffered_audio_seconds)

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
        self.decode_samples(tone, options, priority="file")
        logger.info("warm-up decode took %.2f s", time.perf_counter() - started)

    def check_supported(self, options: TranscribeOptions) -> None:
        """Refuse what the loaded model cannot do, before any download or decode."""
        if options.diarize:
            from src.speakers import speaker_encoder

            speaker_encoder()  # raises UnsupportedOption when the worker has no speaker model
        check_capability(self.info, options.task, options.language)

    def events(
        self,
        source: AudioSource,
        options: TranscribeOptions,
        *,
        job_id: str = "-",
        also_translate: bool = False,
        max_bytes: int | None = None,
    ) -> Iterator[ProcessorEvent]:
        """Fetch, decode and transcribe one file: each segment as soon as it is final, then the
        result. ``max_bytes`` lowers the download cap (the rest of a several-files job's
        budget). Closing the generator early stops the decode at its next step."""
        self.check_supported(options)
        if also_translate:
            self.check_supported(options.model_copy(update={"task": "translate"}))
        rank = self.gate.arrival()  # its steps go before those of jobs that came later
        with ExitStack() as held:
            loaded = self.load_audio(source, options, max_bytes=max_bytes, held=held)
            yield from self._transcribe(loaded, options, job_id, also_translate, rank)

    def _transcribe(
        self,
        loaded: LoadedAudio,
        options: TranscribeOptions,
        job_id: str,
        also_translate: bool,
        rank: int,
    ) -> Iterator[ProcessorEvent]:
        decode_options = options.decode_options()
        duration = loaded.duration
        vocabulary = Vocabulary(options.custom_vocabulary) if options.custom_vocabulary else None
        started = time.perf_counter()
        segments: list[Segment] = []
        decoding = self._start(loaded.samples, decode_options, rank, job_id)
        for segment in self._segments(loaded.samples, decoding, decode_options, job_id, rank):
            segment = clip_segment(segment, duration)
            if vocabulary is not None:
                segment = vocabulary.segment(segment)
            segments.append(segment)
            yield SegmentDecoded(segment, duration)
        info = decoding.info
        transcript = info.transcript(tuple(segments))
        translation = None
        if also_translate:
            translate = replace(decode_options, task="translate")
            translation = self._collect(loaded.samples, translate, rank)
        if options.diarize:
            transcript = self._diarize(loaded.samples, transcript, options)
        inference = time.perf_counter() - started

        timings = loaded.timings(inference)
        result = JobResult(transcript, translation, timings, self.info, info, loaded.size_bytes)
        logger.info(
            "job %s: %.1f s audio, language %s, %d segments (%s, beam %d%s); download %.2f s, "
            "decode %.2f s, inference %.2f s, %.1fx real time",
            job_id,
            transcript.duration,
            transcript.language,
            len(transcript.segments),
            info.path,
            info.beam_size,
            f", {info.chunks} chunks" if info.chunks is not None else "",
            timings.download,
            timings.decode,
            timings.inference,
            result.realtime_factor,
        )
        yield result

    def decode_samples(
        self, samples: np.ndarray, options: DecodeOptions, *, priority: Priority = "live"
    ) -> Transcript:
        """One whole decode of samples already in memory (16 kHz mono float32), holding the
        model throughout: for live sessions' short decodes, which go before file steps. As for
        a file, segments are clipped to the audio and a decode that runs out of memory is
        retried once with beam size 1."""
        with self.gate.hold(priority, label=f"{priority} decode"):
            try:
                transcript = self.engine.transcribe(samples, options)
            except (ModelError, RuntimeError) as e:  # the runtime's own error, unwrapped here
                if not is_out_of_memory(e):
                    raise
                logger.warning("live decode: out of memory; retrying once with beam size 1")
                release_memory()
                transcript = self.engine.transcribe(samples, _lighter(options))
        duration = len(samples) / SAMPLE_RATE
        return replace(
            transcript, segments=tuple(clip_segment(s, duration) for s in transcript.segments)
        )

    def detect_language(
        self,
        source: AudioSource,
        options: TranscribeOptions,
        *,
        job_id: str = "-",
        max_bytes: int | None = None,
    ) -> LanguageResult:
        """The most likely languages of one file, without transcribing it."""
        check_capability(self.info, "detect_language")
        rank = self.gate.arrival()
        with ExitStack() as held:
            loaded = self.load_audio(source, options, max_bytes=max_bytes, held=held)
            started = time.perf_counter()
            vad = options.decode_options().vad if options.vad_filter else None
            with self.gate.hold("file", rank, "language detection"):
                guesses = self.engine.detect_language(loaded.samples, vad)
        if not guesses:
            raise AudioError("audio: no speech found to detect a language from")
        inference = time.perf_counter() - started
        timings = loaded.timings(inference)
        logger.info("job %s: language detection in %.2f s", job_id, inference)
        top = tuple(guesses[: options.top_languages])
        return LanguageResult(top, loaded.duration, timings, self.info, loaded.size_bytes)

    def load_audio(
        self,
        source: AudioSource,
        options: TranscribeOptions,
        *,
        max_bytes: int | None = None,
        held: ExitStack | None = None,
    ) -> LoadedAudio:
        """Download (or decode base64) into a per-job temp dir, then decode once to samples.

        With ``held``, the samples' share of the audio budget is reserved (waiting while the
        other jobs in flight hold too much) before ffmpeg decodes, and stays until ``held``
        closes: the caller keeps it while it uses the samples. The download and ffmpeg's decode
        never hold the model: they run while other jobs' steps do (on a CPU-only worker too,
        where they share its cores: bench/README.md, "Jobs that overlap", measured both)."""
        limits = self.settings.download
        if max_bytes is not None:
            limits = replace(limits, max_bytes=min(limits.max_bytes, max_bytes))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="whisper-job-") as workdir:
            path = fetch_audio(source, Path(workdir), limits)
            size = path.stat().st_size
            downloaded = time.perf_counter()
            declared = self._check_declared_duration(path)
            reservation = None
            if held is not None:
                expected = declared or self.settings.max_audio_seconds
                reservation = held.enter_context(self.budget.reserve(expected))
            samples = decode_audio(
                path, denoise=options.denoise, max_seconds=self.settings.max_audio_seconds
            )
        decoded = time.perf_counter()
        self._check_duration(samples)
        if reservation is not None:
            reservation.shrink(len(samples) / SAMPLE_RATE)
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

    def _start(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        rank: int,
        job_id: str = "-",
        *,
        retry: bool = True,
    ) -> Decoding:
        """Begin a decode (VAD, chunk plan, language; a short clip's whole decode) holding the
        model; on out-of-memory retried once lighter (``retry``), a second one is
        ``OutOfMemory``."""
        try:
            with self.gate.hold("file", rank, "file start"):
                return self.engine.decode(audio, options)
        except ModelError as e:
            if not retry or not is_out_of_memory(e):
                raise
            _log_retry(job_id, options)
        release_memory()
        try:
            with self.gate.hold("file", rank, "file start"):
                return self.engine.decode(audio, _lighter(options))
        except ModelError as e:
            if not is_out_of_memory(e):
                raise
            release_memory()
            raise OutOfMemory(OUT_OF_MEMORY_TWICE) from e

    def _collect(self, audio: np.ndarray, options: DecodeOptions, rank: int) -> Transcript:
        """A whole decode, step by step through the gate."""
        decoding = self._start(audio, options, rank)
        duration = decoding.info.duration
        segments = self._segments(audio, decoding, options, "-", rank)
        return decoding.info.transcript(tuple(clip_segment(s, duration) for s in segments))

    def _segments(
        self,
        audio: np.ndarray,
        decoding: Decoding,
        options: DecodeOptions,
        job_id: str,
        rank: int,
    ) -> Iterator[Segment]:
        """The decode's segments, each step holding the model; on out-of-memory the decode is
        run again once with beam size 1, and only what lies after the segments already given
        comes from the retry. Closing this generator closes the engine's."""
        given_until = 0.0
        try:
            try:
                for segment in self._stepped(decoding.segments, rank):
                    given_until = segment.end
                    yield segment
                return
            except ModelError as e:
                if not is_out_of_memory(e):
                    raise
                _log_retry(job_id, options)
            release_memory()
            try:
                retry = self._start(audio, _lighter(options), rank, job_id, retry=False)
                for segment in self._stepped(retry.segments, rank):
                    if segment.start >= given_until - 0.01:
                        yield segment
            except ModelError as e:
                if not is_out_of_memory(e):
                    raise
                release_memory()
                raise OutOfMemory(OUT_OF_MEMORY_TWICE) from e
        finally:
            _close(decoding.segments)

    def _stepped(self, segments: Iterator[Segment], rank: int) -> Iterator[Segment]:
        """``segments`` pulled one at a time, each pull holding the model (as job ``rank``)."""
        try:
            while True:
                with self.gate.hold("file", rank, "file step"):
                    segment = next(segments, None)
                if segment is None:
                    return
                yield segment
        finally:
            _close(segments)

    def _check_declared_duration(self, path: Path) -> float | None:
        """Refuse, before decoding, audio whose container already says it is too long; the
        duration it declares, if any."""
        declared = probe_duration(path)
        if declared is not None and declared > self.settings.max_audio_seconds:
            raise TooLarge(self._too_long(declared))
        return declared

    def _check_duration(self, audio: np.ndarray) -> None:
        seconds = len(audio) / SAMPLE_RATE
        if seconds > self.settings.max_audio_seconds:
            raise TooLarge(self._too_long(seconds))

    def _too_long(self, seconds: float) -> str:
        return (
            f"audio: {seconds:.0f} s is longer than this worker's limit of "
            f"{self.settings.max_audio_seconds:.0f} s (MAX_AUDIO_SECONDS)"
        )


def live_beside_files(info: ModelInfo) -> bool:
    """Whether live decodes run beside a file's step instead of waiting for it: with
    faster-whisper on a CPU. There a file's long-audio passes run on model workers of their own
    (``batched.py``'s lanes), CTranslate2 queues the calls of two threads to one worker itself,
    and a pass of two 30 s windows on a loaded 2-core CPU takes one to two seconds: sharing the
    cores for a live decode's tenth of a second costs the file that much and spares the live
    caption the whole wait (bench/README.md, "Live while a long file is transcribed"). On a GPU
    two decodes at once compete for its memory, and openai-whisper's decoder keeps its cache on
    the model's modules: there the live decode waits for the step's next boundary."""
    return info.engine == "faster-whisper" and info.device == "cpu"


#: what a job that ran out of memory twice is told
OUT_OF_MEMORY_TWICE = (
    "transcription failed: the model ran out of memory, also when retried with beam_size 1; "
    "send shorter audio or use a smaller model"
)


def _log_retry(job_id: str, options: DecodeOptions) -> None:
    logger.warning(
        "job %s: out of memory (beam_size %s, best_of %d); retrying once with 1 and 1",
        job_id,
        options.beam_size or "default",
        options.best_of,
    )


def _lighter(options: DecodeOptions) -> DecodeOptions:
    return replace(options, beam_size=1, best_of=1)


def _close(iterator: Iterator[object]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def release_memory() -> None:
    """Drop unreachable objects and, when torch is loaded, its cached CUDA blocks."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
