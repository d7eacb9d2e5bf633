"""The completeness check's splicing (``src.engines.coverage``) on made-up segments.

The model is not what is tested here: the re-decode is a function returning words at known
times, so the rules (what is a gap, which words are kept, where they go, nothing twice) can be
checked exactly. The real model on real conversations is in tests/test_completeness.py.
"""

from __future__ import annotations

import pytest

from src.engines.base import CoverageStats, DecodeOptions, Segment, Word
from src.engines.coverage import MIN_GAP_S, CoverageFill, uncovered


def words(*timed: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(start=s, end=e, word=f" {w}", probability=0.9) for w, s, e in timed)


def segment(*timed: tuple[str, float, float], no_speech: float = 0.01) -> Segment:
    ws = words(*timed)
    return Segment(
        id=0,
        start=ws[0].start,
        end=ws[-1].end,
        text="".join(w.word for w in ws),
        avg_logprob=-0.2,
        no_speech_prob=no_speech,
        compression_ratio=1.2,
        words=ws,
    )


def run(
    regions: list[tuple[float, float]],
    decoded: list[Segment],
    redecoded: dict[tuple[float, float], list[Segment]] | None = None,
    word_timestamps: bool = True,
    duration: float = 30.0,
) -> tuple[list[Segment], CoverageStats, list[tuple[float, float]]]:
    asked: list[tuple[float, float]] = []

    def redecode(start: float, end: float) -> list[Segment]:
        asked.append((start, end))
        for (lo, hi), found in (redecoded or {}).items():
            if start <= lo and hi <= end:
                return found
        return []

    stats = CoverageStats()
    options = DecodeOptions(word_timestamps=word_timestamps)
    fill = CoverageFill(regions, redecode, options, stats, duration, first_id=0)
    return list(fill.run(iter(decoded))), stats, asked


def test_uncovered_finds_speech_no_word_covers() -> None:
    regions = [(0.0, 4.0), (5.0, 9.0)]
    spans = [(0.0, 4.2), (5.0, 6.0)]
    assert uncovered(regions, spans, 0.0, 10.0) == [(6.0, 9.0)]
    # shorter than MIN_GAP_S: a word's tail, not a missing sentence
    assert uncovered([(0.0, 1.0 + MIN_GAP_S / 2)], [(0.0, 1.0)], 0.0, 10.0) == []


def test_a_skipped_middle_sentence_is_spliced_in_order() -> None:
    first = segment(("one", 0.5, 1.0), ("two", 1.1, 2.0), ("three.", 9.0, 9.5))
    middle = segment(("four", 4.0, 4.5), ("five.", 4.6, 5.5))
    out, stats, asked = run([(0.4, 2.1), (3.9, 5.6), (8.9, 9.6)], [first], {(4.0, 5.5): [middle]})
    assert [s.text for s in out] == [" one two", " four five.", " three."]
    assert [s.id for s in out] == [0, 1, 2]
    starts = [s.start for s in out]
    assert starts == sorted(starts)
    assert out[0].end <= out[1].start  # the first part no longer stretches over the gap
    assert stats.redecoded == 1 and stats.filled == 1
    assert len(asked) == 1


def test_words_the_padding_brought_in_are_not_written_twice() -> None:
    decoded = [segment(("hello", 0.5, 1.0), ("there.", 1.1, 1.6)), segment(("end.", 8.0, 8.5))]
    # the re-decode hears the neighbours' words too: only the gap's own words are kept
    again = segment(
        ("there.", 1.1, 1.6), ("lost", 3.0, 3.5), ("words.", 3.6, 4.2), ("end", 8.0, 8.5)
    )
    out, stats, _ = run([(0.4, 1.7), (2.9, 4.3), (7.9, 8.6)], decoded, {(3.0, 4.2): [again]})
    text = "".join(s.text for s in out)
    assert text == " hello there. lost words. end."
    assert stats.filled == 1


def test_a_redecode_the_model_calls_silence_adds_nothing() -> None:
    decoded = [segment(("hello.", 0.5, 1.0))]
    noise = segment(("Thank", 5.0, 5.5), ("you.", 5.6, 6.0), no_speech=0.95)
    noise = Segment(**{**noise.__dict__, "avg_logprob": -1.5})
    out, stats, _ = run([(0.4, 1.1), (4.9, 6.1)], decoded, {(5.0, 6.0): [noise]})
    assert [s.text for s in out] == [" hello."]
    assert stats.redecoded == 1 and stats.filled == 0


def test_speech_after_the_last_segment_is_filled_and_words_dropped_when_not_asked() -> None:
    decoded = [segment(("start.", 0.5, 1.0))]
    tail = segment(("the", 20.0, 20.3), ("tail.", 20.4, 21.0))
    out, _, _ = run([(0.4, 1.1), (19.9, 21.1)], decoded, {(20.0, 21.0): [tail]}, False)
    assert [s.text for s in out] == [" start.", " the tail."]
    assert all(s.words is None for s in out)


def test_covered_speech_is_never_decoded_again() -> None:
    decoded = [segment(("a", 0.5, 1.0), ("b", 1.2, 2.0)), segment(("c.", 2.5, 3.5))]
    out, stats, asked = run([(0.4, 3.6)], decoded)
    assert asked == [] and stats.redecoded == 0
    assert [s.text for s in out] == [" a b", " c."]


def test_a_sentence_written_twice_is_decoded_again_where_it_came_first() -> None:
    """Whisper writes the later sentence twice, the first time over another speaker's words:
    the first copy's span is decoded on its own and what it really holds replaces it."""
    first = segment(("the", 2.3, 2.5), ("far", 2.6, 3.0), ("horizon.", 3.1, 4.0))
    second = segment(("the", 8.0, 8.2), ("far", 8.3, 8.6), ("horizon.", 8.7, 9.5))
    really = segment(("cabbage", 2.4, 3.0), ("juice", 3.1, 3.5), ("changes.", 3.6, 4.0))
    out, stats, asked = run([(2.2, 4.1), (7.9, 9.6)], [first, second], {(2.3, 4.0): [really]})
    assert [s.text for s in out] == [" cabbage juice changes.", " the far horizon."]
    assert stats.redecoded == 1 and len(asked) == 1


def test_a_repeat_the_model_cannot_hear_again_is_dropped() -> None:
    first = segment(("the", 2.3, 2.5), ("far", 2.6, 3.0), ("horizon.", 3.1, 4.0))
    second = segment(("the", 8.0, 8.2), ("far", 8.3, 8.6), ("horizon.", 8.7, 9.5))
    out, _, _ = run([(7.9, 9.6)], [first, second])
    assert [s.text for s in out] == [" the far horizon."]


def test_gaps_between_the_same_words_are_decoded_together_and_their_edges_kept() -> None:
    """A skipped turn that the fine VAD cuts in three (pauses inside it) is decoded once, as
    one stretch: its first word, heard in the padding before the first region, and a word in
    a pause between two regions are kept (each gap decoded alone lost both)."""
    decoded = [segment(("stars.", 2.2, 2.9)), segment(("when", 19.4, 19.9), ("now.", 20.0, 21.0))]
    regions = [(2.1, 3.0), (7.5, 8.2), (8.5, 10.3), (10.9, 15.4), (19.3, 21.1)]
    turn = segment(
        ("stars.", 2.2, 2.9),  # not heard: the padding ends far before it, shown for clarity
        ("However,", 7.1, 7.8),
        ("due", 8.1, 8.7),
        ("to", 8.7, 9.0),
        ("the", 9.0, 9.5),
        ("slow", 9.5, 10.2),
        ("styles", 10.5, 11.3),
        ("in", 11.3, 12.0),
        ("the", 12.0, 12.8),
        ("west", 12.8, 13.6),
        ("years.", 13.6, 15.3),
        ("when", 19.4, 19.9),
    )
    out, stats, asked = run(regions, decoded, {(7.5, 15.4): [turn]})
    assert asked == [pytest.approx((7.1, 15.8))]
    turn_text = " However, due to the slow styles in the west years."
    assert [s.text for s in out] == [" stars.", turn_text, " when now."]
    assert stats.redecoded == 1 and stats.filled == 1


def test_a_gap_the_joined_decode_leaves_empty_is_decoded_on_its_own() -> None:
    decoded = [segment(("start.", 0.5, 1.0)), segment(("end.", 20.0, 20.5))]
    regions = [(0.4, 1.1), (3.0, 5.0), (8.0, 10.0), (19.9, 20.6)]
    # the joined decode hears only the first gap; the second, alone, gives its words
    first = segment(("one", 3.0, 3.5), ("two.", 3.6, 4.9))
    second = segment(("three", 8.1, 8.6), ("four.", 8.7, 9.9))
    redecoded = {(3.0, 10.0): [first], (8.0, 10.0): [second]}
    out, stats, asked = run(regions, decoded, redecoded)
    assert asked == [pytest.approx((2.6, 10.4)), pytest.approx((7.6, 10.4))]
    assert [s.text for s in out] == [" start.", " one two.", " three four.", " end."]
    assert stats.redecoded == 2


def test_a_sentence_written_again_without_audio_is_dropped() -> None:
    """The batched path wrote a sentence a second time at its window's end, every word at one
    instant: that copy is dropped, and the first copy (heard) is kept as it is."""
    heard = segment(
        ("the", 94.4, 95.2),
        ("northern", 95.3, 96.6),
        ("office", 96.7, 98.4),
        ("said", 98.5, 100.0),
        ("nothing.", 100.1, 101.5),
    )
    at = 101.52
    again = segment(*((w, at, at) for w in ("the", "northern", "office", "said", "nothing.")))
    out, stats, asked = run([(94.3, 101.6)], [heard, again], duration=110.0)
    assert [s.text for s in out] == [" the northern office said nothing."]
    assert asked == [] and stats.redecoded == 0


def test_a_sentence_written_two_segments_early_is_decoded_again() -> None:
    """A later speaker's sentence written over the first speaker's words, with another
    speaker's sentence between the copy and its real place."""
    first = segment(("the", 1.4, 1.8), ("far", 1.9, 2.6), ("horizon.", 2.7, 3.6))
    between = segment(("the", 7.1, 7.5), ("office", 7.6, 8.2), ("said.", 8.3, 9.0))
    real = segment(("the", 19.4, 19.8), ("far", 19.9, 20.6), ("horizon.", 20.7, 21.6))
    really = segment(("many", 1.4, 1.9), ("people", 2.0, 2.8), ("think.", 2.9, 3.6))
    regions = [(1.3, 3.7), (7.0, 9.1), (19.3, 21.7)]
    out, stats, asked = run(regions, [first, between, real], {(1.4, 3.6): [really]})
    assert [s.text for s in out] == [
        " many people think.",
        " the office said.",
        " the far horizon.",
    ]
    assert stats.redecoded == 1 and len(asked) == 1


def test_words_stretched_over_another_turn_give_way_to_what_it_says() -> None:
    """The batched path skipped a turn and aligned the next turn's first words over it, seconds
    a word: those words are dropped and the turn's speech is decoded again, in its place."""
    before = segment(
        ("a", 53.7, 54.3),
        ("sentence.", 60.3, 60.9),
        ("we", 60.9, 66.3),
        ("must", 66.3, 74.0),
        ("find", 74.0, 74.3),
        ("home.", 74.4, 75.9),
    )
    skipped = segment(("two", 66.0, 66.4), ("pools", 66.5, 67.1), ("hidden.", 69.6, 70.6))
    regions = [(53.6, 61.0), (64.9, 71.8), (73.9, 76.0)]
    out, stats, _ = run(regions, [before], {(66.0, 70.6): [skipped]}, duration=80.0)
    text = "".join(s.text for s in out)
    assert text == " a sentence. two pools hidden. find home."
    assert all(w.end - w.start <= 3.0 for s in out for w in s.words or ())
    assert stats.filled == 1
