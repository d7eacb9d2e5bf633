"""Formatters checked with real parsers: ``srt`` and ``webvtt-py``."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import srt
import webvtt

from src.engines.base import Segment, Word
from src.formats import (
    CueLayout,
    cues,
    format_timestamp,
    segment_dict,
    to_lines,
    to_srt,
    to_text,
    to_vtt,
    word_cues,
    wrap_words,
)


def seg(
    i: int, start: float, end: float, text: str, words: tuple[Word, ...] | None = None
) -> Segment:
    return Segment(
        id=i,
        start=start,
        end=end,
        text=text,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        words=words,
    )


SEGMENTS = (
    seg(1, 0.0, 2.5, " Hello there."),
    seg(2, 2.5, 3661.0004, " An hour --> later."),
    seg(3, 3661.5, 3662.0, "   "),
    seg(4, 3661.0, 3663.25, " Done."),
)


@pytest.mark.parametrize(
    ("seconds", "hours", "marker", "expected"),
    [
        (0.0, False, ".", "00:00.000"),
        (59.9996, False, ".", "01:00.000"),
        (3661.0004, True, ",", "01:01:01,000"),
        (3725.123, False, ".", "01:02:05.123"),
        (1.0005, True, ".", "00:00:01.000"),
    ],
)
def test_format_timestamp(seconds: float, hours: bool, marker: str, expected: str) -> None:
    assert format_timestamp(seconds, always_include_hours=hours, decimal_marker=marker) == expected


def test_format_timestamp_refuses_negative() -> None:
    with pytest.raises(ValueError):
        format_timestamp(-0.1)


def test_srt_parses_and_is_monotonic() -> None:
    subtitles = list(srt.parse(to_srt(SEGMENTS, duration=3662.5)))
    assert [s.index for s in subtitles] == [1, 2, 3]
    assert [s.content for s in subtitles] == ["Hello there.", "An hour -> later.", "Done."]
    starts = [s.start for s in subtitles]
    assert starts == sorted(starts)
    assert all(s.end >= s.start for s in subtitles)
    assert max(s.end for s in subtitles) <= timedelta(seconds=3662.5)


def test_vtt_parses_and_starts_with_header() -> None:
    text = to_vtt(SEGMENTS, duration=3662.5)
    assert text.startswith("WEBVTT\n\n")
    captions = webvtt.from_buffer(io.StringIO(text)).captions
    assert [c.text for c in captions] == ["Hello there.", "An hour -> later.", "Done."]
    assert captions[0].start == "00:00:00.000" and captions[-1].end == "01:01:02.500"
    assert all("-->" not in c.text for c in captions)


def test_empty_transcript_gives_valid_empty_files() -> None:
    assert list(srt.parse(to_srt(()))) == []
    assert webvtt.from_buffer(io.StringIO(to_vtt(()))).captions == []


def test_cues_clamp_to_duration_and_drop_empty() -> None:
    out = cues(SEGMENTS, duration=3662.5)
    assert len(out) == 3
    assert out[-1].start == 3661.0 and out[-1].end == 3662.5
    out = cues((seg(1, 5.0, 6.0, "a"), seg(2, 4.0, 3.0, "b")), duration=10.0)
    assert [(c.start, c.end) for c in out] == [(5.0, 6.0), (5.0, 5.0)]


def test_text_and_lines() -> None:
    assert to_text(SEGMENTS) == "Hello there. An hour --> later. Done."
    assert to_lines(SEGMENTS).splitlines() == ["Hello there.", "An hour --> later.", "Done."]


def test_segment_dict_words_only_when_present() -> None:
    assert "words" not in segment_dict(SEGMENTS[0])
    with_words = seg(1, 0.0, 1.0, " Hi", words=(Word(0.1, 0.4, " Hi", 0.9),))
    assert segment_dict(with_words)["words"] == [
        {"start": 0.1, "end": 0.4, "word": " Hi", "probability": 0.9}
    ]


def words_of(text: str, start: float = 0.0, step: float = 0.3) -> tuple[Word, ...]:
    return tuple(
        Word(start + i * step, start + i * step + 0.25, f" {w}", 0.9)
        for i, w in enumerate(text.split())
    )


LONG = (
    "Four score and seven years ago our fathers brought forth on this continent a new nation. "
    "Conceived in liberty and dedicated to the proposition that all men are created equal."
)


@pytest.mark.parametrize(
    "layout",
    [CueLayout(), CueLayout(max_chars_per_line=20, max_lines_per_cue=1, max_cue_duration=2.0)],
)
def test_word_cues_respect_the_layout(layout: CueLayout) -> None:
    words = words_of(LONG)
    segments = (seg(0, 0.0, words[-1].end, " " + LONG, words=words),)
    subtitles = list(srt.parse(to_srt(segments, duration=30.0, layout=layout)))
    assert len(subtitles) > 1
    for sub in subtitles:
        lines = sub.content.split("\n")
        assert len(lines) <= layout.max_lines_per_cue
        assert all(len(line) <= layout.max_chars_per_line for line in lines)
        assert (sub.end - sub.start).total_seconds() <= layout.max_cue_duration
    # Every word is kept, in order.
    assert " ".join(s.content.replace("\n", " ") for s in subtitles) == LONG
    captions = webvtt.from_buffer(io.StringIO(to_vtt(segments, 30.0, layout))).captions
    assert [c.text for c in captions] == [s.content for s in subtitles]


def test_word_cues_break_at_pauses_and_sentence_ends() -> None:
    first = words_of("Hello there my friend, this is the first sentence here.")
    second = words_of("After a long pause.", start=first[-1].end + 3.0)
    segments = (seg(0, 0.0, second[-1].end, " x", words=first + second),)
    out = word_cues(segments, CueLayout(max_chars_per_line=42))
    assert [c.text.replace("\n", " ") for c in out] == [
        "Hello there my friend, this is the first sentence here.",
        "After a long pause.",
    ]


def test_wrap_words() -> None:
    assert wrap_words([" one", " two", " three"], 9) == ["one two", "three"]
    assert wrap_words([" supercalifragilistic", " x"], 5) == ["supercalifragilistic", "x"]
    assert wrap_words(["日本", "語の", "文"], 4) == ["日本語の", "文"]


def test_word_cues_fall_back_to_segments_without_words() -> None:
    assert word_cues(SEGMENTS, CueLayout(), 3662.5) == cues(SEGMENTS, 3662.5)
