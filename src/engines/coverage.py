"""Completeness: speech the VAD hears that no aligned word covers is decoded again on its own.

Whisper loses whole sentences in speech with several speakers and pauses: a window holding
several utterances comes back with one left out (the text ends early, or the timestamps jump
past a change of speaker), and nothing in its output says so. Every engine path is therefore
decoded with word timings, and its segments pass through ``CoverageFill`` on their way out:

1. The speech regions are found once per file by the drift-free VAD (``vad.speech_regions``),
   cut finer than the decode's own regions (``COVERAGE_VAD``: short pauses separate them).
2. Each word covers its own time plus ``WORD_MARGIN_S`` either side. Speech of a region that
   no word covers, ``MIN_GAP_S`` or more of it, is a gap.
3. The gaps between two transcribed words are decoded again together, as one stretch of the
   file (``Redecode``: the engine's plain decoder on that audio with ``PAD_S`` either side, the
   file's language, no prompt; stretches over ``MAX_STRETCH_S`` are cut at their pauses). The
   words kept are those whose middle lies between the two transcribed words (the last one
   before the stretch, the first one after it), so a turn's first or last word that the VAD
   cut off or that falls in a pause inside the stretch is kept, and words the padding brought
   in from neighbours, already transcribed, are not: no text is ever written twice. A gap of
   the stretch that its decode still leaves without words is decoded once more on its own. A
   re-decode the model calls silence (the decoder's own no-speech rule) or that is repetitive
   adds nothing: noise the VAD took for speech does not become words.
4. A segment whose words were aligned to (almost) no time, a sentence Whisper wrote a second
   time at a window's end with all its words at one instant, is dropped: text without audio;
   any speech it seemed to cover stays a gap and is decoded again. A segment whose text one
   of the next two repeats (a later speaker's sentence written over an earlier one's words)
   is decoded again on its own, and what its audio holds replaces it.
5. The kept words become segments, cut at sentence ends, spliced in on the original timeline:
   a segment whose words jump over a gap is split there, and segments still come out in
   timeline order, each as soon as the gaps before it are filled and the next two segments
   are in (two segments late at most).

``CoverageStats.redecoded`` counts the gaps decoded again; the job's ``metadata.decode``
reports it.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from src.engines.base import (
    SAMPLE_RATE,
    CoverageStats,
    DecodeOptions,
    Decoding,
    Segment,
    VadParameters,
    Word,
)
from src.engines.fw_internals import compression_ratio
from src.engines.sentences import split_sentences
from src.engines.vad import join_regions, regions_from_probabilities, vad_options

logger = logging.getLogger(__name__)

#: the regions coverage is checked against: finer than a decode's own (pauses of 0.3 s cut)
COVERAGE_VAD = VadParameters(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=100)
#: a word covers its own span and this much either side (word timings are approximate)
WORD_MARGIN_S = 0.3
#: uncovered speech shorter than this is not decoded again (a breath, a click, a word's tail)
MIN_GAP_S = 0.6
#: audio decoded either side of a gap, so its first and last words are heard whole
PAD_S = 0.4
#: gaps between the same two transcribed words are decoded together while they span at most
#: this (the fitted window's longest audio, ``window.WindowFit``)
MAX_STRETCH_S = 25.0
#: a word longer than this covers only this much of its span (from its start): an aligned word
#: stretched over a pause must not hide the speech after it
MAX_WORD_S = 2.0

#: a segment whose text one of the next ``REPEAT_LOOKAHEAD`` segments repeats, this many words
#: or more, is decoded again (a later speaker's sentence written over an earlier one's words
#: came one or two segments before its real place: full completeness set)
MIN_REPEAT_WORDS = 3
REPEAT_LOOKAHEAD = 2
#: words aligned to less time than this each, on average, were heard nowhere: a segment of
#: them (``MIN_REPEAT_WORDS`` or more) is text without audio (a sentence Whisper wrote a second
#: time at a window's end, all its words at one instant) and is dropped
MIN_WORD_S = 0.05
#: a word aligned to longer than this was not heard there: no word lasts seconds. Such words
#: are what a window's words look like when the decoder skipped the speech under them (a later
#: turn's first words aligned over a whole earlier turn: full completeness set, "We must" over
#: a sentence of another speaker, 5 and 8 s a word); they are dropped from the segment, so
#: that the speech they seemed to cover is a gap decoded again (which hears them where they are)
STRETCHED_WORD_S = 3.0

#: decodes a stretch of the file on its own: (start, end) seconds -> segments with words, on
#: the file's timeline
Redecode = Callable[[float, float], list[Segment]]


def uncovered(
    regions: list[tuple[float, float]],
    spans: list[tuple[float, float]],
    start: float,
    end: float,
) -> list[tuple[float, float]]:
    """The parts of ``regions`` between ``start`` and ``end`` that no span (sorted by start,
    each already widened by its margin) overlaps, at least ``MIN_GAP_S`` long."""
    gaps = []
    for r_start, r_end in regions:
        lo, hi = max(r_start, start), min(r_end, end)
        if hi - lo < MIN_GAP_S:
            continue
        at = lo
        for s_start, s_end in spans:
            if s_end <= at:
                continue
            if s_start >= hi:
                break
            if s_start - at >= MIN_GAP_S:
                gaps.append((at, s_start))
            at = max(at, s_end)
            if at >= hi:
                break
        if hi - at >= MIN_GAP_S:
            gaps.append((at, hi))
    return gaps


def word_span(word: Word) -> tuple[float, float]:
    """The time a word covers: its aligned span, at most ``MAX_WORD_S`` of it, with margins."""
    end = min(word.end, word.start + MAX_WORD_S)
    return word.start - WORD_MARGIN_S, end + WORD_MARGIN_S


class CoverageFill:
    """Fills the gaps of one decode's segments (see the module docstring)."""

    def __init__(
        self,
        regions: list[tuple[float, float]],
        redecode: Redecode,
        options: DecodeOptions,
        stats: CoverageStats,
        duration: float,
        first_id: int = 1,
    ) -> None:
        self._first_id = first_id
        self._regions = regions
        self._redecode = redecode
        self._options = options
        self.stats = stats
        self._duration = duration

    def run(self, segments: Iterator[Segment]) -> Iterator[Segment]:
        """``segments`` (with words, in timeline order) with the gaps before, between and after
        them filled; words dropped again unless the job asked for them; ids renumbered from
        ``first_id`` (the engine's own convention). Each segment waits for the next
        ``REPEAT_LOOKAHEAD`` ones: a segment whose text one of them repeats is decoded again
        first."""
        next_id = self._first_id
        checked = 0.0  # coverage is settled up to here
        held: list[tuple[Segment, bool]] = []  # waiting segments, and whether one repeats it
        try:
            for segment in itertools.chain(segments, [None]):
                if segment is not None:
                    if _without_audio(segment):
                        # text the aligner found no speech for (a sentence written again at
                        # a window's end, all its words at one instant): dropped, so that
                        # any speech it claimed stays a gap
                        logger.debug(
                            "coverage: %d words without audio dropped", len(segment.words or ())
                        )
                        continue
                    segment = _without_stretched(self._snapped(segment))
                    if segment is None:
                        continue
                    held = [(h, again or _repeats(h.text, segment.text)) for h, again in held]
                    held.append((segment, False))
                while held and (segment is None or len(held) > REPEAT_LOOKAHEAD):
                    first, again = held.pop(0)
                    kept = [first]
                    if again:  # between the words before it and the next segment's
                        before = held[0][0].start if held else self._duration
                        kept = self._checked(first, checked - WORD_MARGIN_S, before)
                    for found in kept:
                        for part in self._filled(found, checked):
                            yield self._out(part, next_id)
                            next_id += 1
                        checked = max(checked, _covered_until(found))
            tail = self._gaps(checked, self._duration)
            for part in self._gap_segments(tail, checked - WORD_MARGIN_S, self._duration):
                yield self._out(part, next_id)
                next_id += 1
        finally:
            close = getattr(segments, "close", None)
            if close is not None:
                close()

    def _snapped(self, segment: Segment) -> Segment:
        """The segment with its words' edges moved out of silence. An aligned word often starts
        long before its speech (stretched back over the pause before it) or ends long after
        it. A word edge outside every region moves to the edge of the nearest region inside the
        word; a segment's first word keeps only the last region it spans (it belongs with the
        words after it), its last word only the first. A word no region touches is left as it
        is (the VAD may miss soft speech)."""
        if not segment.words:
            return segment
        last = len(segment.words) - 1
        words = [
            self._snap_word(w, first=i == 0 and last > 0, final=i == last and last > 0)
            for i, w in enumerate(segment.words)
        ]
        if words == list(segment.words):
            return segment
        return replace(segment, start=words[0].start, end=words[-1].end, words=tuple(words))

    def _snap_word(self, word: Word, *, first: bool, final: bool) -> Word:
        inside = [(s, e) for s, e in self._regions if s < word.end and e > word.start]
        if not inside:
            return word
        if first:
            inside = inside[-1:]
        elif final:
            inside = inside[:1]
        start = max(word.start, inside[0][0])
        end = min(word.end, inside[-1][1])
        if (start, end) == (word.start, word.end) or end <= start:
            return word
        return replace(word, start=round(start, 3), end=round(end, 3))

    def _checked(self, segment: Segment, after: float, before: float) -> list[Segment]:
        """What the speech of a segment that a later one repeats gives decoded on its own:
        Whisper writes a later sentence twice, the first time over another speaker's words, and
        aligns it there (the words then seem to cover that speech). The stretch decoded is the
        speech regions its words touch, and the words kept lie between ``after`` (the end of
        the words before it) and ``before`` (the start of the next segment)."""
        if not segment.words:
            return [segment]
        start, end = segment.words[0].start, segment.words[-1].end
        touched = [(s, e) for s, e in self._regions if s < end and e > start]
        if touched:
            start, end = min(start, touched[0][0]), max(end, touched[-1][1])
        start, end = max(start, after), min(end, before)
        if end <= start:
            return []
        return self._counted(start, end, max(after, start - PAD_S), min(before, end + PAD_S))

    def _out(self, segment: Segment, index: int) -> Segment:
        words = segment.words if self._options.word_timestamps else None
        return replace(segment, id=index, words=words)

    def _filled(self, segment: Segment, checked: float) -> list[Segment]:
        """The segment, split where its words jump over a gap, with the gaps' segments (and
        those of any gap between the last segment and this one) in timeline order."""
        words = segment.words
        if not words:
            return [segment]
        parts: list[list[Word]] = [[]]
        out: list[Segment] = []
        at = checked
        for word in words:
            span = word_span(word)
            gaps = self._gaps(at, span[0])
            if gaps:
                if parts[-1]:
                    out.append(_from_words(segment, parts[-1]))
                    parts.append([])
                # between the last word read (the frontier less its margin) and this one
                out.extend(self._gap_segments(gaps, at - WORD_MARGIN_S, word.start))
            parts[-1].append(word)
            at = max(at, span[1])
        if parts[-1]:
            piece = parts[-1]
            out.append(segment if len(piece) == len(words) else _from_words(segment, piece))
        return out

    def _gaps(self, start: float, end: float) -> list[tuple[float, float]]:
        """Speech between ``start`` and ``end`` (the coverage frontier and the next word) that
        no word covers: nothing in between was read, so no spans are subtracted."""
        return uncovered(self._regions, [], start, end) if end > start else []

    def _gap_segments(
        self, gaps: list[tuple[float, float]], after: float, before: float
    ) -> list[Segment]:
        """The words of ``gaps`` (all between the same two transcribed words, the one ending at
        ``after`` and the one starting at ``before``), decoded together in stretches of at most
        ``MAX_STRETCH_S``, in timeline order. Each stretch keeps the words whose middle lies
        between its neighbours (the transcribed words, or halfway to the next stretch); a gap
        its decode leaves without words is decoded once more on its own."""
        stretches = join_regions(gaps, MAX_STRETCH_S)
        out: list[Segment] = []
        for k, (start, end) in enumerate(stretches):
            lo = after if k == 0 else (stretches[k - 1][1] + start) / 2
            hi = before if k == len(stretches) - 1 else (end + stretches[k + 1][0]) / 2
            lo, hi = max(lo, start - PAD_S), min(hi, end + PAD_S)
            found = self._counted(start, end, lo, hi)
            inner = [g for g in gaps if start <= g[0] and g[1] <= end]
            kept = [w for s in found for w in s.words or ()]
            missed = uncovered(inner, [word_span(w) for w in kept], start, end)
            if missed and len(inner) > 1:
                for g_start, g_end in missed:
                    g_lo = max([lo, g_start - PAD_S] + [w.end for w in kept if w.end <= g_start])
                    g_hi = min([hi, g_end + PAD_S] + [w.start for w in kept if w.start >= g_end])
                    found += self._counted(g_start, g_end, g_lo, g_hi)
                found.sort(key=lambda s: s.start)
            out.extend(found)
        return out

    def _counted(self, start: float, end: float, lo: float, hi: float) -> list[Segment]:
        """``_decode_gap`` counted in the stats."""
        self.stats.redecoded += 1
        self.stats.seconds += end - start
        found = self._decode_gap(start, end, lo, hi)
        if found:
            self.stats.filled += 1
        return found

    def _decode_gap(self, start: float, end: float, lo: float, hi: float) -> list[Segment]:
        """``start``-``end`` decoded on its own (with ``PAD_S`` either side); only the words
        whose middle lies from ``lo`` to ``hi`` kept, as sentence segments."""
        segments = self._redecode(max(0.0, start - PAD_S), min(self._duration, end + PAD_S))
        out: list[Segment] = []
        for segment in segments:
            if self._rejected(segment):
                continue
            kept = [w for w in segment.words or () if lo <= (w.start + w.end) / 2 < hi]
            if kept:
                out.extend(split_sentences(self._snapped(_from_words(segment, kept))))
        return out

    def _rejected(self, segment: Segment) -> bool:
        """The decoder's own rules for text not to trust: silence, or a repetitive loop."""
        options = self._options
        threshold = options.compression_ratio_threshold
        if threshold is not None and segment.compression_ratio > threshold:
            return True
        return options.calls_silence(segment.no_speech_prob, segment.avg_logprob)


def _without_audio(segment: Segment) -> bool:
    """Whether the segment's words, ``MIN_REPEAT_WORDS`` or more, were aligned to (almost) no
    time: under ``MIN_WORD_S`` a word on average, which no speech is."""
    words = segment.words
    if not words or len(words) < MIN_REPEAT_WORDS:
        return False
    return words[-1].end - words[0].start < MIN_WORD_S * len(words)


def _without_stretched(segment: Segment) -> Segment | None:
    """The segment without its words aligned to over ``STRETCHED_WORD_S`` each; None when no
    word is left."""
    words = segment.words
    if not words:
        return segment
    kept = [w for w in words if w.end - w.start <= STRETCHED_WORD_S]
    if len(kept) == len(words):
        return segment
    logger.debug("coverage: %d stretched words dropped", len(words) - len(kept))
    return _from_words(segment, kept) if kept else None


def _covered_until(segment: Segment) -> float:
    """How far a segment settles coverage: its last word's span, or its end without words."""
    if segment.words:
        return word_span(segment.words[-1])[1]
    return segment.end


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _repeats(first: str, second: str) -> bool:
    """Whether one text holds the other (three words or more), as a sentence written twice."""
    a, b = _words(first), _words(second)
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) < MIN_REPEAT_WORDS:
        return False
    return any(long[i : i + len(short)] == short for i in range(len(long) - len(short) + 1))


def _from_words(segment: Segment, words: list[Word]) -> Segment:
    """A segment of some of ``segment``'s words: its text, start and end from them."""
    text = "".join(w.word for w in words)
    return replace(
        segment,
        start=words[0].start,
        end=words[-1].end,
        text=text,
        words=tuple(words),
        compression_ratio=compression_ratio(text) if text.strip() else segment.compression_ratio,
    )


def complete(
    decoding: Decoding,
    probabilities: np.ndarray,
    num_samples: int,
    redecode: Redecode,
    options: DecodeOptions,
    first_id: int = 1,
) -> Decoding:
    """``decoding`` (decoded with word timings) with its gaps filled as its segments flow; the
    count goes to its info's ``coverage``. ``probabilities`` are the file's drift-free VAD scores
    (``vad.speech_probabilities``)."""
    regions = [
        (start / SAMPLE_RATE, end / SAMPLE_RATE)
        for start, end in regions_from_probabilities(
            probabilities, vad_options(COVERAGE_VAD), num_samples
        )
    ]
    stats = CoverageStats()
    fill = CoverageFill(regions, redecode, options, stats, num_samples / SAMPLE_RATE, first_id)
    return Decoding(replace(decoding.info, coverage=stats), fill.run(decoding.segments))


def with_words(options: DecodeOptions) -> DecodeOptions:
    """The options a decode runs with when its gaps are to be filled: word timings on (the
    check needs them; ``CoverageFill`` drops them again unless the job asked)."""
    return replace(options, word_timestamps=True) if options.fill_gaps else options
