"""Timestamps kept on the audio: no segment or word starts before 0 or ends after the file.

The model reads 30 s windows padded with silence and may place a last timestamp in that padding,
past the end of what it heard. Every segment leaves the processor through ``clip_segment``, so
no output shape (native, the official worker's, OpenAI's, subtitles) can show a time outside
``[0, duration]``.
"""

from __future__ import annotations

from dataclasses import replace

from src.engines.base import Segment, Word


def _clip(t: float, duration: float) -> float:
    return min(max(t, 0.0), duration)


def clip_word(word: Word, duration: float) -> Word:
    start, end = _clip(word.start, duration), _clip(word.end, duration)
    if (start, end) == (word.start, word.end):
        return word
    return replace(word, start=start, end=max(start, end))


def clip_segment(segment: Segment, duration: float) -> Segment:
    """``segment`` with its times and its words' times inside ``[0, duration]``."""
    start, end = _clip(segment.start, duration), _clip(segment.end, duration)
    words = segment.words
    if words is not None:
        words = tuple(clip_word(w, duration) for w in words)
    if (start, end) == (segment.start, segment.end) and words == segment.words:
        return segment
    return replace(segment, start=start, end=max(start, end), words=words)
