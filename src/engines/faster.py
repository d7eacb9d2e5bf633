"""faster-whisper (CTranslate2): the default engine.

The model is loaded once in ``__init__``. ``decode`` passes faster-whisper's lazy segment
generator on as frozen records, one at a time (short audio), or the batched path's generator
(long audio, ``batched.py``). With ``vad_filter`` faster-whisper cuts silence out before decoding
and maps every timestamp back onto the original timeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment as FwSegment
from faster_whisper.transcribe import restore_speech_timestamps
from faster_whisper.vad import collect_chunks

from src.engines.base import (
    BATCHED_BEAM_SIZE,
    SAMPLE_RATE,
    DecodeInfo,
    DecodeOptions,
    Decoding,
    LanguageGuess,
    ModelInfo,
    Segment,
    Transcript,
    VadParameters,
    Word,
    shifted,
)
from src.engines.batched import BatchedDecoder
from src.engines.capabilities import check_capability
from src.engines.coverage import complete, with_words
from src.engines.fw_internals import ModelInternals
from src.engines.sharing import let_in, off_model
from src.engines.vad import (
    regions_from_probabilities,
    speech_probabilities,
    speech_regions,
    vad_options,
)
from src.engines.window import FittedDecoder
from src.errors import ModelError, model_error

logger = logging.getLogger(__name__)

#: audio longer than this (and with ``vad_filter``) is decoded in batches of VAD-cut chunks:
#: more than one window, so that windows are cut at pauses, never inside an utterance (the
#: sequential decoder's next window starts wherever the last one's text ended, and a sentence
#: cut there was misheard: completeness benchmark, short talks, WER 5.19% -> 4.18%, bench/README)
LONG_AUDIO_SECONDS = 30.0
#: windows one beam search of the batched path takes at most. A GPU keeps 16 busy; on the CPU
#: batching windows in one search saves no CPU time (measured on the 232 s file: 8.5-9.7 s of
#: CPU at one window per lane and step, 9.5-9.8 s with all windows in one step), so each step
#: takes one window per lane: the first segments come out early and a step is short enough
#: for a live session's decode to slip in between two of them
BATCH_SIZE = {"cpu": 1, "cuda": 16}
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
        #: short audio (live turns, short files) on an encoder window fitted to it (window.py)
        self.fitted = FittedDecoder(ModelInternals(self._model), self.decode_sequential)
        self._batched = BatchedDecoder(
            ModelInternals(self._lane_model(model_path, device, compute_type, cpu_threads)),
            self._decode_chunk,
            batch_size=BATCH_SIZE.get(device, 1),
            lanes=CPU_LANES if device == "cpu" and cpu_threads >= CPU_LANES else 1,
            encode_batch=1 if device == "cpu" else BATCH_SIZE.get(device, 1),
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

    def decode(self, audio: np.ndarray, options: DecodeOptions) -> Decoding:
        """Batched for long audio (``uses_batched``), else faster-whisper's sequential decoder;
        either way the segments come lazily, each as soon as it is final."""
        check_capability(self._info, options.task, options.language)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        # the drift-free VAD scores, once: for the decode's own regions and the coverage check
        # (ONNX Runtime, not the model: the model's gate is free meanwhile)
        scores = None
        if options.vad_filter or options.fill_gaps:
            with off_model():
                scores = speech_probabilities(audio)
        inner = with_words(options)
        if not self.uses_batched(audio, options):
            try:  # the fitted window decodes at once: its failures are the model's too
                decoding = self.fitted.decode(audio, inner, scores)
            except ModelError:
                raise
            except Exception as e:
                raise model_error(e) from e
        else:
            try:
                started = self._batched.start(audio, inner, scores)
            except Exception as e:
                raise model_error(e) from e
            info = DecodeInfo(
                language=started.language,
                language_probability=started.language_probability,
                duration=len(audio) / SAMPLE_RATE,
                path="batched",
                beam_size=options.beam(BATCHED_BEAM_SIZE),
                temperatures=options.temperatures,
                chunks=started.chunks,
            )
            decoding = Decoding(info, _guarded(started.segments, lambda s: s))
        if scores is None or not options.fill_gaps:
            return decoding
        language = decoding.info.language

        def redecode(start: float, end: float) -> list[Segment]:
            return self._decode_span(audio, start, end, options, language)

        return complete(decoding, scores, len(audio), redecode, options)

    def _decode_span(
        self, audio: np.ndarray, start: float, end: float, options: DecodeOptions, language: str
    ) -> list[Segment]:
        """A stretch of the file decoded on its own (the coverage check's re-decode): the
        file's language, no VAD, no prompt, with word timings, on the file's timeline. A waiting
        live decode goes first (one file step may re-decode several gaps)."""
        let_in()
        piece = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        alone = replace(
            options,
            language=language,
            vad_filter=False,
            word_timestamps=True,
            initial_prompt=None,
            hotwords=None,
            condition_on_previous_text=False,
            fill_gaps=False,
        )
        return [shifted(s, start) for s in self.fitted.decode(piece, alone).segments]

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        return self.decode(audio, options).collect()

    def _decode_chunk(
        self, audio: np.ndarray, options: DecodeOptions, language: str
    ) -> list[Segment]:
        """One chunk of a batched decode, again with the sequential decoder and no VAD."""
        decoding = self.decode_sequential(
            audio, replace(options, language=language, vad_filter=False)
        )
        return list(decoding.segments)

    def decode_sequential(
        self, audio: np.ndarray, options: DecodeOptions, scores: np.ndarray | None = None
    ) -> Decoding:
        """faster-whisper's own sequential decoder, one 30 s window after another.

        With ``vad_filter`` the speech regions are the drift-free VAD's (``scores``, computed
        here when not given); as faster-whisper does with its own, the silence between them is
        cut out before decoding and every time is mapped back onto the original timeline."""
        speech: list[dict[str, int]] | None = None
        samples = audio
        if options.vad_filter:
            # (decoding each region as a window of its own instead was measured: on the
            # completeness benchmark's quick set, base, it dropped more utterances, 1 of 52
            # against none, with WER 7.7% against 5.5%, and took longer)
            scores = speech_probabilities(audio) if scores is None else scores
            found = regions_from_probabilities(scores, vad_options(options.vad), len(audio))
            speech = [{"start": start, "end": end} for start, end in found]
            samples = np.concatenate(collect_chunks(audio, speech)[0])
        try:
            generator, fw_info = self._model.transcribe(
                samples,
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
                hotwords=options.hotwords,
                word_timestamps=options.word_timestamps,
                vad_filter=False,
            )
        except Exception as e:
            raise model_error(e) from e
        if speech is not None:
            generator = restore_speech_timestamps(generator, speech, SAMPLE_RATE)
        info = DecodeInfo(
            language=fw_info.language,
            language_probability=float(fw_info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            path="sequential",
            beam_size=options.beam(),
            temperatures=options.temperatures,
        )
        return Decoding(info, _guarded(generator, _segment))

    def transcribe_sequential(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """``decode_sequential`` run to its end."""
        return self.decode_sequential(audio, options).collect()

    def detect_language(self, audio: np.ndarray, vad: VadParameters | None) -> list[LanguageGuess]:
        """Every language's probability, most likely first; [] when VAD finds no speech."""
        check_capability(self._info, "detect_language")
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
            raise model_error(e, "language detection") from e
        guesses = [LanguageGuess(language=lang, probability=float(p)) for lang, p in probabilities]
        return sorted(guesses, key=lambda g: g.probability, reverse=True)


def _guarded(source: Iterator[object], convert: Callable[[Any], Segment]) -> Iterator[Segment]:
    """The engine's segments as ours, its runtime failures as ``ModelError`` (raised where
    the failing segment is pulled); closing this generator closes the engine's."""
    try:
        for item in source:
            yield convert(item)
    except Exception as e:  # GeneratorExit (a close) is no Exception: it passes
        raise model_error(e) from e
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


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
