"""Custom vocabulary: whole words only, case-insensitive, applied to text, segments and words."""

from __future__ import annotations

from src.engines.base import Segment, Transcript, Word
from src.vocabulary import Vocabulary


def test_whole_words_only() -> None:
    v = Vocabulary({"cat": "Kat"})
    assert v.correct("the cat sat on a catalogue, Cat!") == "the Kat sat on a catalogue, Kat!"


def test_multi_word_terms_and_longest_wins() -> None:
    v = Vocabulary({"pie torch": "PyTorch", "pie": "π", "cooper netties": "Kubernetes"})
    assert v.correct("Pie  torch on cooper netties, a pie.") == "PyTorch on Kubernetes, a π."


def test_regex_characters_are_literal() -> None:
    v = Vocabulary({"c++": "C plus plus", "a.b": "AB"})
    assert v.correct("c++ and axb and a.b") == "C plus plus and axb and AB"


def test_applied_to_transcript_segments_and_words() -> None:
    words = (Word(0.0, 0.5, " deep", 0.9), Word(0.5, 1.0, " seek.", 0.9))
    transcript = Transcript(
        text="deep seek.",
        language="en",
        language_probability=1.0,
        duration=1.0,
        segments=(Segment(0, 0.0, 1.0, " deep seek.", -0.1, 0.0, 1.0, words=words),),
    )
    out = Vocabulary({"seek": "Seek", "deep seek": "DeepSeek"}).apply(transcript)
    assert out.text == "DeepSeek."
    assert out.segments[0].text == " DeepSeek."
    assert out.segments[0].words is not None
    assert [w.word for w in out.segments[0].words] == [" deep", " Seek."]
