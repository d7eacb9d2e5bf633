"""Long audio: VAD-cut chunks decoded in batches, continued where the model stopped early, and
decoded again sequentially where the result looks wrong.

Why: faster-whisper's sequential decoder runs one 30 s window at a time, so most of the hardware
waits on one beam search. Decoding several windows at once is several times faster on long
audio, but a window decoded on its own has no temperature fallback and no earlier text as
context, and the model sometimes ends a window's text early (at a change of speaker or a
pause), which silently drops the rest of the window. This module keeps the speed and checks the
work:

1. ``chunks.plan``: Silero VAD regions (the job's VAD parameters) joined into chunks of at most
   one window; each chunk is a contiguous stretch of the original audio.
2. The language is detected once, on the first chunk's encoder output (which is then reused),
   never per chunk.
3. Chunks are decoded in steps, in timeline order: each step takes the continuations still
   owed (below) and the next chunks, in groups of windows (one group per lane, growing from
   one window towards ``batch_size`` so that the first segments come out early and later
   steps keep the hardware busy); each group is encoded, decoded in one beam search and
   word-aligned (cross-attention, on the same encoder output), each phase on every lane at once
   with a step boundary between phases (``sharing.let_in``: a waiting live decode goes first).
   On a multi-core CPU two groups run side by side (``lanes``). Every window is encoded on 30
   s: fitted windows (``window.py``) for the file's last chunk and short continuations were
   tried and cost accuracy on the 10-minute files (bench/README.md).
4. Where detected speech remains after a window's last aligned word, the model stopped early:
   the rest of the chunk is decoded in the next step, from that word on, with the chunk's text
   so far as the prompt (as the sequential decoder conditions on earlier text), for up to
   ``MAX_ROUNDS`` pieces per chunk. A continuation the model calls silence is dropped.
5. ``chunk_checks.suspicious`` looks at each chunk's text; a chunk that is empty while it holds
   speech, repetitive, improbable, in another script, or far sparser than the file's median is
   decoded again by the sequential decoder with the job's whole option set. A chunk the model
   itself calls silence is dropped, as the sequential decoder drops such windows.
6. Each piece of text is cut at its sentence ends by its word timings (``sentences``), so long
   audio gives sentence-sized segments on the original timeline; words are returned when asked.
7. A chunk's segments are released (yielded) as soon as it and every chunk before it are
   final: decode order may differ from timeline order, output order never does. The file's
   median reading rate (for the "sparse" check) is taken over the chunks final so far, once
   there are enough of them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ctranslate2 import StorageView
from faster_whisper.tokenizer import Tokenizer

from src.engines.base import (
    BATCHED_BEAM_SIZE,
    SAMPLE_RATE,
    DecodeOptions,
    Segment,
    shifted,
    words_from_dicts,
)
from src.engines.chunk_checks import is_silence, median_words_per_second, suspicious
from src.engines.chunks import Chunk, ChunkPlan, plan
from src.engines.fw_internals import ModelInternals, compression_ratio
from src.engines.sentences import split_sentences
from src.engines.sharing import let_in, off_model, wanted

logger = logging.getLogger(__name__)

#: encoder frames in one 30 s window
N_FRAMES = 3000
#: detected speech left after a window's last word that means the model stopped early (VAD
#: regions are padded, 0.4 s by default, so a window read to its end leaves up to about 1 s)
MIN_TAIL_SPEECH_S = 1.5
#: a continuation must start at least this far into its piece (no loop that reads nothing)
MIN_PROGRESS_S = 1.0
#: pieces decoded per chunk: the chunk, then up to three continuations
MAX_ROUNDS = 4

#: decodes one chunk sequentially: (audio of the chunk, options, language) -> segments
SequentialDecode = Callable[[np.ndarray, DecodeOptions, str], list[Segment]]


@dataclass(frozen=True)
class Piece:
    """A stretch of one chunk to decode: the whole chunk first, then what is left after the last
    word the model read, with the chunk's tokens so far as context."""

    chunk: int
    start: float
    end: float
    context: tuple[int, ...] = ()
    #: 0 for the chunk itself, then 1, 2, ... for its continuations
    round: int = 0


@dataclass(frozen=True)
class Decoded:
    """One piece's text as a segment (words always aligned), and its tokens."""

    piece: Piece
    tokens: tuple[int, ...]
    segment: Segment


@dataclass
class BatchStats:
    """What the last batched decode did: chunks, continuations, re-decodes."""

    chunks: int = 0
    continued: int = 0
    redecoded: dict[int, str] = field(default_factory=dict)
    dropped_as_silence: int = 0


@dataclass(frozen=True)
class _Job:
    """What every piece of one file shares."""

    audio: np.ndarray
    tokenizer: Tokenizer
    initial: tuple[int, ...]
    suppress_tokens: tuple[int, ...]
    options: DecodeOptions
    #: encoder outputs computed before the steps (the first chunk, after language detection)
    encoded: dict[Piece, np.ndarray]


@dataclass(frozen=True)
class BatchedStart:
    """A batched decode begun: the plan and language now, the segments lazily."""

    language: str
    language_probability: float
    chunks: int
    segments: Iterator[Segment]


class BatchedDecoder:
    """Decodes long audio in batches of windows, continues early stops, re-decodes bad chunks.

    ``workers`` is the model that encodes and decodes the windows. ``lanes`` groups run at once
    (one Python thread each; ``workers`` must have as many CTranslate2 workers). On the CPU each
    window is encoded on its own (``encode_batch`` 1: a batch of 30 s windows is slower per
    window than one at a time on a 2-core CPU, bench/README.md) and a group's windows share one
    beam search; on a GPU both steps take whole batches.
    """

    def __init__(
        self,
        workers: ModelInternals,
        sequential: SequentialDecode,
        *,
        batch_size: int = 8,
        lanes: int = 1,
        encode_batch: int = 1,
    ) -> None:
        self._model = workers
        self._sequential = sequential
        self.batch_size = batch_size
        self.lanes = lanes
        self.encode_batch = encode_batch
        self.last_stats = BatchStats()

    def start(
        self, audio: np.ndarray, options: DecodeOptions, probabilities: np.ndarray | None = None
    ) -> BatchedStart:
        """Plan the chunks and settle the language now; decode as the segments are pulled.
        ``probabilities``: the audio's VAD scores when already computed."""
        with off_model():  # VAD and Python: the model's gate is free meanwhile
            chunk_plan = plan(audio, options.vad, probabilities=probabilities)
        stats = BatchStats(chunks=len(chunk_plan.chunks))
        self.last_stats = stats
        if not chunk_plan.chunks:
            language = options.language or "en"
            return BatchedStart(language, 1.0 if options.language else 0.0, 0, iter(()))
        encoded: dict[Piece, np.ndarray] = {}
        first = [Piece(i, c.start, c.end) for i, c in enumerate(chunk_plan.chunks[: self.lanes])]
        language, probability = self._language(audio, options, first, encoded)
        tokenizer = self._model.tokenizer(options.task, language)
        prompt = " ".join(p for p in (options.hotwords, options.initial_prompt) if p)
        initial = tuple(tokenizer.encode(" " + prompt.strip())) if prompt else ()
        suppress = self._model.suppressed_tokens(tokenizer)
        job = _Job(audio, tokenizer, initial, suppress, options, encoded)
        segments = self._segments(job, chunk_plan, language, stats)
        return BatchedStart(language, probability, len(chunk_plan.chunks), segments)

    def _steps(self) -> Iterator[int]:
        """How many new chunks each step takes: one window per lane first, then twice as many
        each step up to full batches (the first segments come early, later steps fill the
        hardware)."""
        group = 1
        while True:
            yield group * self.lanes
            group = min(group * 2, self.batch_size)

    def _segments(
        self, job: _Job, chunk_plan: ChunkPlan, language: str, stats: BatchStats
    ) -> Iterator[Segment]:
        """Each chunk's checked segments, in timeline order, as soon as it and all chunks before
        it are final."""
        chunks = chunk_plan.chunks
        texts: list[list[Segment]] = [[] for _ in chunks]
        final = [False] * len(chunks)
        queued = [Piece(i, c.start, c.end) for i, c in enumerate(chunks)]
        owed: list[Piece] = []  # continuations for the next step
        released = 0
        next_id = 1
        for size in self._steps():
            if not queued and not owed:
                break
            # a waiting live decode goes first, and while live decodes come the steps stay
            # at one window per lane (on a GPU a full batch would make the next one wait long)
            if wanted():
                let_in()
                size = self.lanes
            taken, queued = queued[:size], queued[size:]
            pieces = owed + taken
            owed = []
            for decoded in self._decode(job, pieces):
                piece = decoded.piece
                if not (piece.context and is_silence([decoded.segment], job.options)):
                    texts[piece.chunk].append(decoded.segment)
                    rest = self._rest(decoded, chunk_plan)
                    if rest is not None:
                        owed.append(rest)
                        stats.continued += 1
                        continue
                final[piece.chunk] = True
            median = self._median(chunks, texts, final)
            if median is None and not all(final):
                continue  # the "sparse" check needs the reading rate of a few chunks first
            while released < len(chunks) and final[released]:
                chunk, text = chunks[released], texts[released]
                for segment in self._checked(job, language, released, chunk, text, median):
                    yield replace(segment, id=next_id)
                    next_id += 1
                released += 1
        if stats.redecoded or stats.continued:
            logger.info(
                "batched decode: %d chunks, %d continued, %d decoded again (%s)",
                len(chunks),
                stats.continued,
                len(stats.redecoded),
                ", ".join(sorted(set(stats.redecoded.values()))) or "-",
            )

    def _median(
        self, chunks: list[Chunk], texts: list[list[Segment]], final: list[bool]
    ) -> float | None:
        """The reading rate over the chunks final so far (None until enough of them)."""
        done = [i for i, f in enumerate(final) if f]
        return median_words_per_second(
            [chunks[i] for i in done], [_with_text(texts[i]) for i in done]
        )

    def _checked(
        self,
        job: _Job,
        language: str,
        index: int,
        chunk: Chunk,
        segments: list[Segment],
        median_wps: float | None,
    ) -> list[Segment]:
        """One chunk's text, checked: silence dropped, a suspicious chunk decoded again, the
        rest cut at sentence ends (words kept only when the job asked for them)."""
        options, stats = job.options, self.last_stats
        segments = _with_text(segments)
        if is_silence(segments, options):
            stats.dropped_as_silence += 1
            return []
        reason = suspicious(chunk, segments, options, language, median_wps)
        if reason is not None:
            stats.redecoded[index] = reason
            let_in()  # a sequential re-decode is long: a waiting live decode goes first
            first, last = int(chunk.start * SAMPLE_RATE), int(chunk.end * SAMPLE_RATE)
            pinned = replace(options, language=language)
            again = self._sequential(job.audio[first:last], pinned, language)
            return [shifted(s, chunk.start) for s in again]
        out = []
        for segment in segments:
            for part in split_sentences(segment):
                out.append(part if options.word_timestamps else replace(part, words=None))
        return out

    def _rest(self, decoded: Decoded, chunk_plan: ChunkPlan) -> Piece | None:
        """What is left of the piece when the model stopped before its speech ended."""
        piece, words = decoded.piece, decoded.segment.words
        if not words or piece.round + 1 >= MAX_ROUNDS:
            return None  # nothing read: the checks decide (empty, or silence)
        last = words[-1].end
        if last < piece.start + MIN_PROGRESS_S:
            return None
        if chunk_plan.speech_between(last, piece.end) < MIN_TAIL_SPEECH_S:
            return None
        # ``_prompts`` keeps the part of the context the model can take
        return Piece(piece.chunk, last, piece.end, piece.context + decoded.tokens, piece.round + 1)

    def _language(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        first: list[Piece],
        encoded: dict[Piece, np.ndarray],
    ) -> tuple[str, float]:
        """The job's language, or the one detected once on the first chunk (never per chunk).
        On the CPU the first step's other chunks are encoded meanwhile, one per lane (the
        encoder does not need the language), and none of them is encoded twice."""
        if options.language is not None:
            return options.language, 1.0
        if not self._model.multilingual:
            return "en", 1.0
        if self.encode_batch > 1:
            return self._model.detect_language(
                self._model.encode(self._features(audio, first[0])[None])
            )

        if len(first) > 1:
            with ThreadPoolExecutor(len(first), thread_name_prefix="whisper-lane") as pool:
                outputs = list(pool.map(lambda piece: self._window(audio, piece), first))
        else:
            outputs = [self._window(audio, first[0])]
        encoded.update(zip(first, outputs, strict=True))
        return self._model.detect_language(StorageView.from_array(outputs[0]))

    def _window(self, audio: np.ndarray, piece: Piece) -> np.ndarray:
        """The encoder output of one piece's window, on the host."""
        return np.asarray(self._model.encode(self._features(audio, piece)[None]))

    def _features(self, audio: np.ndarray, piece: Piece) -> np.ndarray:
        """The piece's log-mel features, padded to one 30 s window (as the library does)."""
        samples = audio[int(piece.start * SAMPLE_RATE) : int(piece.end * SAMPLE_RATE)]
        return self._model.features(samples)

    def _groups(self, pieces: list[Piece]) -> list[list[Piece]]:
        """Consecutive pieces in groups of at most ``batch_size``, at least one per lane."""
        count = len(pieces)
        groups = max(-(-count // self.batch_size), min(self.lanes, count))
        size = -(-count // groups)
        return [pieces[i : i + size] for i in range(0, count, size)]

    def _decode(self, job: _Job, pieces: list[Piece]) -> list[Decoded]:
        """The pieces' windows in three phases (encode, beam search, word alignment), each run
        on every lane at once; between two phases a waiting live decode goes first (a whole
        pass of two 30 s windows on a loaded 2-core CPU can take seconds; a phase is a third
        to a half of it)."""
        groups = self._groups(pieces)
        with ExitStack() as stack:
            run: Callable[..., Iterator[Any]] = map
            if self.lanes > 1 and len(groups) > 1:
                pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="whisper-lane")
                run = stack.enter_context(pool).map
            encoded = list(run(lambda group: self._encode(job, group), groups))
            let_in()
            results = list(run(lambda g, e: self._generate(job, g, e), groups, encoded))
            let_in()
            done = list(run(lambda g, e, r: self._decoded(job, g, e, r), groups, encoded, results))
        return [decoded for group in done for decoded in group]

    def _encode(self, job: _Job, pieces: list[Piece]) -> StorageView:
        """Encoder output of the pieces' windows: one window at a time, or as one batch."""
        if self.encode_batch > 1:
            return self._model.encode(np.stack([self._features(job.audio, p) for p in pieces]))
        outputs = []
        for piece in pieces:
            cached = job.encoded.pop(piece, None)
            if cached is None:
                cached = self._window(job.audio, piece)
            outputs.append(cached)
        return StorageView.from_array(np.concatenate(outputs))

    def _prompts(self, job: _Job, pieces: list[Piece]) -> list[list[int]]:
        """One prompt per piece: the initial prompt and the chunk's text so far, cut to one
        length for the whole group (CTranslate2 needs the start token at one position)."""
        limit = self._model.max_length // 2 - 1
        previous = [(job.initial + p.context)[-limit:] for p in pieces]
        shortest = min(len(p) for p in previous)
        return [
            self._model.prompt(job.tokenizer, p[len(p) - shortest :] if shortest else ())
            for p in previous
        ]

    def _generate(self, job: _Job, pieces: list[Piece], encoder_output: StorageView) -> list[Any]:
        """One beam search for all the group's windows."""
        options = job.options
        return self._model.generate(
            encoder_output,
            self._prompts(job, pieces),
            beam_size=options.beam(BATCHED_BEAM_SIZE),
            patience=options.patience,
            length_penalty=options.length_penalty,
            suppress_tokens=job.suppress_tokens,
        )

    def _decoded(
        self, job: _Job, pieces: list[Piece], encoder_output: StorageView, results: list[Any]
    ) -> list[Decoded]:
        """The group's texts with their word timings (cross-attention, same encoder output)."""
        options = job.options
        fps = self._model.frames_per_second
        raw: list[dict[str, Any]] = []
        for piece, result in zip(pieces, results, strict=True):
            tokens = [t for t in result.sequences_ids[0] if t < job.tokenizer.eot]
            length = len(tokens)
            raw.append(
                {
                    "tokens": tokens,
                    "start": piece.start,
                    "end": piece.end,
                    "seek": piece.start * fps,  # word times come out on the original timeline
                    "avg_logprob": result.scores[0] * length**options.length_penalty / (length + 1),
                    "no_speech_prob": result.no_speech_prob,
                }
            )
        self._model.align_words(
            raw,
            job.tokenizer,
            encoder_output,
            [min(math.ceil((p.end - p.start) * fps), N_FRAMES) for p in pieces],
            pieces[0].start,
        )
        return [
            Decoded(piece, tuple(r["tokens"]), _segment(r, job.tokenizer, options))
            for piece, r in zip(pieces, raw, strict=True)
        ]


def _with_text(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.text.strip()]


def _segment(raw: dict[str, Any], tokenizer: Tokenizer, options: DecodeOptions) -> Segment:
    text = tokenizer.decode(raw["tokens"])
    words = words_from_dicts(raw.get("words", []))
    return Segment(
        id=0,
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=text,
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        compression_ratio=compression_ratio(text),
        temperature=options.temperatures[0],
        words=words,
    )
