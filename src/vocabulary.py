"""Custom vocabulary: whole-word term corrections applied to text, segments and words.

A job may carry ``custom_vocabulary = {"heard": "wanted", ...}`` (e.g. ``{"cooper netties":
"Kubernetes", "pie torch": "PyTorch"}``). Matching is case-insensitive and on whole words only
(``"cat"`` never changes ``"catalogue"``); the longest term wins where terms overlap. Multi-word
terms can only match inside a segment's text, single-word terms also fix the word timings' words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from src.engines.base import Segment, Transcript, Word, joined_text


class Vocabulary:
    """A compiled set of corrections; ``correct`` is a pure function of its text."""

    def __init__(self, corrections: Mapping[str, str]) -> None:
        self._wanted = {heard.strip().lower(): wanted for heard, wanted in corrections.items()}
        terms = sorted(self._wanted, key=len, reverse=True)
        alternation = "|".join(r"\s+".join(map(re.escape, t.split())) for t in terms)
        self._pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)

    def correct(self, text: str) -> str:
        return self._pattern.sub(self._replacement, text)

    def _replacement(self, match: re.Match[str]) -> str:
        return self._wanted[" ".join(match.group(0).lower().split())]

    def apply(self, transcript: Transcript) -> Transcript:
        segments = tuple(self.segment(s) for s in transcript.segments)
        text = joined_text(segments) if segments else transcript.text
        return replace(transcript, segments=segments, text=text)

    def segment(self, segment: Segment) -> Segment:
        """One segment corrected (its text and its words'): a stage of the segment stream."""
        words = segment.words
        if words is not None:
            words = tuple(self._word(w) for w in words)
        return replace(segment, text=self.correct(segment.text), words=words)

    def _word(self, word: Word) -> Word:
        return replace(word, word=self.correct(word.word))
