"""Cutting a long segment at its sentence ends by its word timings (pure function)."""

from __future__ import annotations

from src.engines.base import Segment, Word
from src.engines.sentences import split_sentences


def _segment(*words: tuple[str, float, float]) -> Segment:
    timed = tuple(Word(start=s, end=e, word=w, probability=0.9) for w, s, e in words)
    return Segment(
        id=3,
        start=timed[0].start,
        end=timed[-1].end,
        text="".join(w.word for w in timed),
        avg_logprob=-0.2,
        no_speech_prob=0.05,
        compression_ratio=1.4,
        words=timed,
    )


def test_each_sentence_becomes_a_segment_with_its_own_times_and_words() -> None:
    segment = _segment(
        (" Mr.", 10.0, 10.3),
        (" Smith", 10.3, 10.7),
        (" came", 10.7, 11.0),
        (" home.", 11.0, 11.5),
        (" Did", 12.0, 12.2),
        (" he?", 12.2, 12.6),
        (" Yes!", 13.0, 13.4),
        (" And", 14.0, 14.2),
        (" then", 14.2, 14.6),
    )
    parts = split_sentences(segment)
    assert [p.text for p in parts] == [" Mr. Smith came home.", " Did he?", " Yes!", " And then"]
    times = [(10.0, 11.5), (12.0, 12.6), (13.0, 13.4), (14.0, 14.6)]
    assert [(p.start, p.end) for p in parts] == times
    assert [len(p.words or ()) for p in parts] == [4, 2, 1, 2]
    assert all(p.avg_logprob == -0.2 and p.no_speech_prob == 0.05 for p in parts)
    assert "".join(p.text for p in parts) == segment.text


def test_one_sentence_or_no_words_is_left_as_it_is() -> None:
    one = _segment((" Hello", 1.0, 1.4), (" there.", 1.4, 1.9))
    assert split_sentences(one) == [one]
    bare = Segment(
        id=1, start=0.0, end=9.0, text=" No words. Two sentences.", avg_logprob=-0.1,
        no_speech_prob=0.0, compression_ratio=1.2,
    )  # fmt: skip
    assert split_sentences(bare) == [bare]


def test_cjk_full_stops_end_sentences() -> None:
    segment = _segment(("今天天气很好。", 0.0, 1.5), ("我们出去吧！", 1.6, 2.8))
    assert [p.text for p in split_sentences(segment)] == ["今天天气很好。", "我们出去吧！"]
