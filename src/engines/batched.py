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
3. Round one decodes every chunk, in groups of up to ``batch_size`` windows; each group is
   encoded, decoded in one beam search and word-aligned (cross-attention, on the same encoder
   output). On a multi-core CPU two groups run side by side (``lanes``).
4. Where detected speech remains after a window's last aligned word, the model stopped early:
   the rest of the chunk is decoded in the next round, from that word on, with the chunk's text
   so far as the prompt (as the sequential decoder conditions on earlier text), for up to
   ``MAX_ROUNDS`` rounds. A continuation the model calls silence is dropped.
5. ``chunk_checks.suspicious`` looks at each chunk's text; a chunk that is empty while it holds
   speech, repetitive, improbable, in another script, or far sparser than the file's median is
   decoded again by the sequential decoder with the job's whole option set. A chunk the model
   itself calls silence is dropped, as the sequential decoder drops such windows.
6. Each piece of text is cut at its sentence ends by its word timings (``sentences``), so long
   audio gives sentence-sized segments on the original timeline; words are returned when asked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ctranslate2 import StorageView
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from src.engines.base import DecodeOptions, Segment, Word
from src.engines.chunk_checks import is_silence, median_words_per_second, suspicious
from src.engines.chunks import SAMPLE_RATE, Chunk, ChunkPlan, plan
from src.engines.sentences import split_sentences

logger = logging.getLogger(__name__)

#: encoder frames in one 30 s window
N_FRAMES = 3000
#: faster-whisper's (and openai-whisper's) defaults for attaching punctuation to words
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
#: detected speech left after a window's last word that means the model stopped early (VAD
#: regions are padded, 0.4 s by default, so a window read to its end leaves up to about 1 s)
MIN_TAIL_SPEECH_S = 1.5
#: a continuation must start at least this far into its piece (no loop that reads nothing)
MIN_PROGRESS_S = 1.0
#: rounds of decoding per chunk: the chunk, then up to three continuations
MAX_ROUNDS = 4
#: beam width when the job gives none: over the benchmark's five long files (bench/README.md)
#: 3 was as accurate as 5 (pooled WER 9.3% against 9.7%) and 1.15x faster on the CPU
BATCHED_BEAM_SIZE = 3

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
    #: encoder outputs computed before the rounds (the first chunk, after language detection)
    encoded: dict[Piece, np.ndarray]


def _shift(segment: Segment, offset: float) -> Segment:
    words = segment.words
    if words is not None:
        words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)


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
        workers: WhisperModel,
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

    def transcribe(
        self, audio: np.ndarray, options: DecodeOptions
    ) -> tuple[list[Segment], str, float]:
        """Segments on the original timeline, the language and its probability."""
        chunk_plan = plan(audio, options.vad)
        chunks = chunk_plan.chunks
        stats = BatchStats(chunks=len(chunks))
        self.last_stats = stats
        if not chunks:
            return [], options.language or "en", 1.0 if options.language else 0.0
        encoded: dict[Piece, np.ndarray] = {}
        pieces = [Piece(i, c.start, c.end) for i, c in enumerate(chunks)]
        language, probability = self._language(audio, options, pieces[0], encoded)
        tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task=options.task,
            language=language,
        )
        prompt = options.initial_prompt
        initial = tuple(tokenizer.encode(" " + prompt.strip())) if prompt else ()
        suppress = tuple(get_suppressed_tokens(tokenizer, [-1]) or ())
        job = _Job(audio, tokenizer, initial, suppress, options, encoded)

        texts: list[list[Segment]] = [[] for _ in chunks]
        for _ in range(MAX_ROUNDS):
            following = []
            for decoded in self._decode(job, pieces):
                if decoded.piece.context and is_silence([decoded.segment], options):
                    continue  # the rest of the window held no more speech: nothing was lost
                texts[decoded.piece.chunk].append(decoded.segment)
                rest = self._rest(decoded, chunk_plan)
                if rest is not None:
                    following.append(rest)
            pieces = following
            if not pieces:
                break
            stats.continued += len(pieces)

        out = self._checked(audio, chunks, texts, options, language, stats)
        if stats.redecoded or stats.continued:
            logger.info(
                "batched decode: %d chunks, %d continued, %d decoded again (%s)",
                len(chunks),
                stats.continued,
                len(stats.redecoded),
                ", ".join(sorted(set(stats.redecoded.values()))) or "-",
            )
        return [replace(s, id=i) for i, s in enumerate(out, start=1)], language, probability

    def _checked(
        self,
        audio: np.ndarray,
        chunks: list[Chunk],
        texts: list[list[Segment]],
        options: DecodeOptions,
        language: str,
        stats: BatchStats,
    ) -> list[Segment]:
        """Each chunk's text, checked: silence dropped, suspicious chunks decoded again, the rest
        cut at sentence ends (words kept only when the job asked for them)."""
        texts = [[s for s in segments if s.text.strip()] for segments in texts]
        median_wps = median_words_per_second(chunks, texts)
        pinned = replace(options, language=language)
        out: list[Segment] = []
        for i, (chunk, segments) in enumerate(zip(chunks, texts, strict=True)):
            if is_silence(segments, options):
                stats.dropped_as_silence += 1
                continue
            reason = suspicious(chunk, segments, options, language, median_wps)
            if reason is not None:
                stats.redecoded[i] = reason
                first, last = int(chunk.start * SAMPLE_RATE), int(chunk.end * SAMPLE_RATE)
                again = self._sequential(audio[first:last], pinned, language)
                out.extend(_shift(s, chunk.start) for s in again)
                continue
            for segment in segments:
                for part in split_sentences(segment):
                    out.append(part if options.word_timestamps else replace(part, words=None))
        return out

    def _rest(self, decoded: Decoded, chunk_plan: ChunkPlan) -> Piece | None:
        """What is left of the piece when the model stopped before its speech ended."""
        piece, words = decoded.piece, decoded.segment.words
        if not words:
            return None  # nothing read: the checks decide (empty, or silence)
        last = words[-1].end
        if last < piece.start + MIN_PROGRESS_S:
            return None
        if chunk_plan.speech_between(last, piece.end) < MIN_TAIL_SPEECH_S:
            return None
        # at most MAX_ROUNDS pieces of text: ``_prompts`` keeps the part the model can take
        return Piece(piece.chunk, last, piece.end, piece.context + decoded.tokens)

    def _language(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        first: Piece,
        encoded: dict[Piece, np.ndarray],
    ) -> tuple[str, float]:
        """The job's language, or the one detected once on the first chunk (never per chunk)."""
        if options.language is not None:
            return options.language, 1.0
        if not self._model.model.is_multilingual:
            return "en", 1.0
        output = self._model.encode(self._features(audio, first)[None])
        if self.encode_batch == 1:
            encoded[first] = np.asarray(output)  # the first chunk is not encoded twice
        token, probability = self._model.model.detect_language(output)[0][0]
        return token[2:-2], float(probability)

    def _features(self, audio: np.ndarray, piece: Piece) -> np.ndarray:
        """The piece's log-mel features, padded to one 30 s window (as the library does)."""
        samples = audio[int(piece.start * SAMPLE_RATE) : int(piece.end * SAMPLE_RATE)]
        return pad_or_trim(self._model.feature_extractor(samples)[..., :-1])

    def _groups(self, pieces: list[Piece]) -> list[list[Piece]]:
        """Consecutive pieces in groups of at most ``batch_size``, at least one per lane."""
        count = len(pieces)
        groups = max(-(-count // self.batch_size), min(self.lanes, count))
        size = -(-count // groups)
        return [pieces[i : i + size] for i in range(0, count, size)]

    def _decode(self, job: _Job, pieces: list[Piece]) -> list[Decoded]:
        groups = self._groups(pieces)
        if self.lanes > 1 and len(groups) > 1:
            with ThreadPoolExecutor(self.lanes, thread_name_prefix="whisper-lane") as pool:
                done = list(pool.map(lambda group: self._decode_group(job, group), groups))
        else:
            done = [self._decode_group(job, group) for group in groups]
        return [decoded for group in done for decoded in group]

    def _encode(self, job: _Job, pieces: list[Piece]) -> StorageView:
        """Encoder output of the pieces' windows: one window at a time, or as one batch."""
        if self.encode_batch > 1:
            return self._model.encode(np.stack([self._features(job.audio, p) for p in pieces]))
        outputs = []
        for piece in pieces:
            cached = job.encoded.pop(piece, None)
            if cached is None:
                cached = np.asarray(self._model.encode(self._features(job.audio, piece)[None]))
            outputs.append(cached)
        return StorageView.from_array(np.concatenate(outputs))

    def _prompts(self, job: _Job, pieces: list[Piece]) -> list[list[int]]:
        """One prompt per piece: the initial prompt and the chunk's text so far, cut to one
        length for the whole group (CTranslate2 needs the start token at one position)."""
        limit = self._model.max_length // 2 - 1
        previous = [(job.initial + p.context)[-limit:] for p in pieces]
        shortest = min(len(p) for p in previous)
        return [
            self._model.get_prompt(
                job.tokenizer,
                list(p[len(p) - shortest :]) if shortest else [],
                without_timestamps=True,
            )
            for p in previous
        ]

    def _decode_group(self, job: _Job, pieces: list[Piece]) -> list[Decoded]:
        """One batch: encode, one beam search for all its windows, word alignment."""
        options = job.options
        encoder_output = self._encode(job, pieces)
        results = self._model.model.generate(
            encoder_output,
            self._prompts(job, pieces),
            beam_size=options.beam(BATCHED_BEAM_SIZE),
            patience=options.patience,
            length_penalty=options.length_penalty,
            max_length=self._model.max_length,
            suppress_blank=True,
            suppress_tokens=list(job.suppress_tokens),
            return_scores=True,
            return_no_speech_prob=True,
        )
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
        self._model.add_word_timestamps(
            [[r] for r in raw],
            job.tokenizer,
            encoder_output,
            [min(math.ceil((p.end - p.start) * fps), N_FRAMES) for p in pieces],
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            pieces[0].start,
        )
        return [
            Decoded(piece, tuple(r["tokens"]), _segment(r, job.tokenizer, options))
            for piece, r in zip(pieces, raw, strict=True)
        ]


def _segment(raw: dict[str, Any], tokenizer: Tokenizer, options: DecodeOptions) -> Segment:
    text = tokenizer.decode(raw["tokens"])
    words = tuple(
        Word(
            start=float(w["start"]),
            end=float(w["end"]),
            word=w["word"],
            probability=float(w["probability"]),
        )
        for w in raw.get("words", [])
    )
    return Segment(
        id=0,
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=text,
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        compression_ratio=float(get_compression_ratio(text)),
        temperature=options.temperatures[0],
        words=words,
    )
