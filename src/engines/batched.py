"""Long audio: VAD-cut chunks decoded in batches, with a sequential re-decode of bad chunks.

Why: faster-whisper's sequential decoder runs one 30 s window at a time, so on a CPU or GPU most
of the hardware waits on one beam search. ``BatchedInferencePipeline`` decodes several windows
at once and is several times faster on long audio, but it has no temperature fallback, no
conditioning on the previous text, and it is known to drop a window's text or to come back with
repetitive or improbable text now and then. This module keeps its speed and checks its work:

1. ``plan_chunks``: Silero VAD regions (the job's own VAD parameters) joined while they fit one
   30 s window. Each chunk is a *contiguous* stretch of the original audio (pauses inside it are
   kept, long silences between chunks are skipped), so every timestamp is the chunk's start plus
   the model's own offset: already on the original timeline, with no re-mapping step.
2. All chunks go through the pipeline in one call (features computed once per chunk, the
   language detected once for the whole file, never per chunk).
3. ``suspicious`` looks at each chunk's result; a chunk that came back empty while it holds
   speech, too repetitive (compression ratio), improbable (log-probability), in another script
   than the language, or with far fewer words per second of speech than the file's median is
   decoded again with the sequential decoder and the job's whole option set (temperature
   fallback included). A chunk the model itself calls silence (no-speech probability over the
   threshold and low log-probability) is dropped, as the sequential decoder drops such windows.

Timestamps inside a chunk come only from the start and end of the chunk (``without_timestamps``:
the pipeline's timestamp mode drops the rest of a window after the first early end, about 15%
WER on the benchmark's long-form clip); word timestamps, when asked for, are exact.
"""

from __future__ import annotations

import logging
import statistics
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.transcribe import Segment as FwSegment
from faster_whisper.vad import get_speech_timestamps

from src.engines.base import DecodeOptions, Segment, VadParameters
from src.engines.vad import vad_options

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Whisper's window: a chunk never exceeds it
CHUNK_SECONDS = 30.0
#: a chunk holding at least this much speech must not come back empty
MIN_SPEECH_FOR_TEXT_S = 1.0
#: a chunk with fewer words per speech second than this share of the file's median is re-decoded
SPARSE_SHARE = 0.35
#: the median is only trusted over this many chunks with text
MIN_CHUNKS_FOR_MEDIAN = 3
#: languages written in the Latin script: their text must be mostly Latin letters
_LATIN = "en de fr es pt it nl sv da no nn fi et lv lt pl cs sk sl hr bs hu ro ca gl eu tr az uz"
LATIN_LANGUAGES = frozenset((*_LATIN.split(), "id", "ms", "tl", "vi", "sw", "af", "is", "cy"))


@dataclass(frozen=True)
class Chunk:
    """One stretch of the original audio decoded as one window, with its speech seconds."""

    start: float
    end: float
    speech: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class BatchStats:
    """What the last batched decode did: how many chunks, and which were re-decoded and why."""

    chunks: int = 0
    redecoded: dict[int, str] = field(default_factory=dict)
    dropped_as_silence: int = 0


def plan_chunks(
    audio: np.ndarray, vad: VadParameters, max_seconds: float = CHUNK_SECONDS
) -> list[Chunk]:
    """Speech regions of ``audio``, joined while each chunk spans at most ``max_seconds``.

    Regions longer than a window are split by Silero at its longest inner pause (or hard at the
    window's end when there is none), as faster-whisper does for its own batched mode.
    """
    if audio.size == 0:
        return []
    # a little under the window, so that padding never pushes a region past it
    options = vad_options(vad, max_speech_duration_s=max_seconds - 0.5)
    regions = get_speech_timestamps(
        np.ascontiguousarray(audio, dtype=np.float32), options, sampling_rate=SAMPLE_RATE
    )
    total = audio.size / SAMPLE_RATE
    chunks: list[Chunk] = []
    for region in regions:
        start = max(0.0, region["start"] / SAMPLE_RATE)
        end = min(total, region["end"] / SAMPLE_RATE)
        if end <= start:
            continue
        if chunks and end - chunks[-1].start <= max_seconds:
            last = chunks[-1]
            chunks[-1] = Chunk(last.start, end, last.speech + (end - max(start, last.end)))
        else:
            chunks.append(Chunk(start, min(end, start + max_seconds), end - start))
    return chunks


def _word_count(segments: list[Segment]) -> int:
    return sum(len(s.text.split()) for s in segments)


def _foreign_script(text: str, language: str) -> bool:
    """True when a Latin-script language comes back mostly in another script (a switch)."""
    if language not in LATIN_LANGUAGES:
        return False
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return latin < 0.5 * len(letters)


def suspicious(
    chunk: Chunk,
    segments: list[Segment],
    options: DecodeOptions,
    language: str,
    median_wps: float | None,
) -> str | None:
    """Why this chunk's batched result should be decoded again, or None when it looks right."""
    words = _word_count(segments)
    if words == 0:
        return "empty" if chunk.speech >= MIN_SPEECH_FOR_TEXT_S else None
    threshold = options.compression_ratio_threshold
    if threshold is not None and any(s.compression_ratio > threshold for s in segments):
        return "repetitive"
    if options.log_prob_threshold is not None and any(
        s.avg_logprob < options.log_prob_threshold for s in segments
    ):
        return "improbable"
    if _foreign_script("".join(s.text for s in segments), language):
        return "language switch"
    sparse = median_wps is not None and words / chunk.speech < SPARSE_SHARE * median_wps
    if sparse and chunk.speech >= MIN_SPEECH_FOR_TEXT_S:
        return "sparse"
    return None


def _is_silence(segments: list[Segment], options: DecodeOptions) -> bool:
    """The sequential decoder's rule: skip a window the model calls silence and cannot read."""
    if options.no_speech_threshold is None or not segments:
        return False
    first = segments[0]
    if first.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.log_prob_threshold is None or first.avg_logprob < options.log_prob_threshold


def _shift(segment: Segment, offset: float) -> Segment:
    words = segment.words
    if words is not None:
        words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)


#: decodes one chunk sequentially: (audio of the chunk, options, language) -> segments
SequentialDecode = Callable[[np.ndarray, DecodeOptions, str], list[Segment]]


class BatchedDecoder:
    """Decodes long audio with ``BatchedInferencePipeline`` and re-decodes bad chunks."""

    def __init__(
        self,
        model: WhisperModel,
        convert: Callable[[FwSegment], Segment],
        sequential: SequentialDecode,
        *,
        batch_size: int = 8,
    ) -> None:
        self._pipeline = BatchedInferencePipeline(model)
        self._convert = convert
        self._sequential = sequential
        self.batch_size = batch_size
        self.last_stats = BatchStats()

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions
    ) -> tuple[list[Segment], str, float]:
        """Segments on the original timeline, the language and its probability."""
        chunks = plan_chunks(audio, options.vad)
        stats = BatchStats(chunks=len(chunks))
        self.last_stats = stats
        if not chunks:
            return [], options.language or "en", 1.0 if options.language else 0.0
        generator, info = self._pipeline.transcribe(
            audio,
            language=options.language,
            task=options.task,
            beam_size=options.beam_size,
            patience=options.patience,
            length_penalty=options.length_penalty,
            temperature=options.temperatures[0],
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            without_timestamps=True,
            clip_timestamps=[{"start": c.start, "end": c.end} for c in chunks],
            batch_size=self.batch_size,
        )
        by_chunk: list[list[Segment]] = [[] for _ in chunks]
        starts = [c.start for c in chunks]
        for fw in generator:
            # without timestamps each chunk gives one segment that starts where the chunk does
            index = int(np.argmin([abs(fw.start - s) for s in starts]))
            by_chunk[index].append(self._convert(fw))
        language = info.language
        rates = [
            _word_count(segs) / c.speech
            for c, segs in zip(chunks, by_chunk, strict=True)
            if segs and c.speech >= MIN_SPEECH_FOR_TEXT_S
        ]
        median_wps = statistics.median(rates) if len(rates) >= MIN_CHUNKS_FOR_MEDIAN else None

        pinned = replace(options, language=language)
        out: list[Segment] = []
        for i, (chunk, segs) in enumerate(zip(chunks, by_chunk, strict=True)):
            if _is_silence(segs, options):
                stats.dropped_as_silence += 1
                continue
            reason = suspicious(chunk, segs, options, language, median_wps)
            if reason is not None:
                stats.redecoded[i] = reason
                first = int(chunk.start * SAMPLE_RATE)
                last = int(chunk.end * SAMPLE_RATE)
                segs = [
                    _shift(s, chunk.start)
                    for s in self._sequential(audio[first:last], pinned, language)
                ]
            out.extend(segs)
        if stats.redecoded:
            logger.info(
                "batched decode: %d of %d chunks decoded again (%s)",
                len(stats.redecoded),
                len(chunks),
                ", ".join(sorted(set(stats.redecoded.values()))),
            )
        return (
            [replace(s, id=i) for i, s in enumerate(out, start=1)],
            language,
            float(info.language_probability),
        )
