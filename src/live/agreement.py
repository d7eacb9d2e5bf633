"""LocalAgreement-2: commit only the words two successive hypotheses agree on.

The policy of Whisper-Streaming (Machacek, Dabre and Bojar, 2023, github ufal/whisper_streaming,
``HypothesisBuffer``): the growing audio of a turn is decoded again and again; a word is final
once two decodes in a row put it at the same place after what is already committed. Whisper's
last words before the audio's edge are often guessed ("as it..." before "as a direct"); they
change in the next decode and so are never committed.

Whisper-Streaming trims its audio buffer at committed segments and compares word timestamps to
skip the words already committed. A turn here never exceeds one 30 s window (``turns``), so
every decode covers the whole turn from its start and the committed words are found by their
position in the new hypothesis instead: directly when the hypothesis starts with them, else by
aligning the two word sequences (``difflib``), since Whisper now and then rewrites an early word.
Words are compared case- and punctuation-blind ("God," and "god" agree); what is committed is
the newer hypothesis's spelling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")


def normalise(word: str) -> str:
    """The form two words are compared in: case-folded, without leading/trailing punctuation."""
    return _EDGE_PUNCTUATION.sub("", word.casefold())


def words_of(text: str) -> list[str]:
    """A hypothesis's words, split on whitespace (Whisper puts spaces between words)."""
    return text.split()


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LocalAgreement:
    """The committed words of one turn, and the hypothesis they are checked against next."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._committed_norm: list[str] = []
        self._previous: list[str] | None = None

    @property
    def text(self) -> str:
        return " ".join(self.committed)

    def insert(self, words: Sequence[str]) -> list[str]:
        """Take a new hypothesis (all the turn's words); return the words it newly commits."""
        tail = self.tail(words)
        new: list[str] = []
        if self._previous is not None:
            previous_tail = [normalise(w) for w in self.tail(self._previous)]
            agreed = _common_prefix(previous_tail, [normalise(w) for w in tail])
            new = list(tail[:agreed])
        self._previous = list(words)
        self.committed.extend(new)
        self._committed_norm.extend(normalise(w) for w in new)
        return new

    def tail(self, words: Sequence[str]) -> list[str]:
        """The words of a hypothesis after those already committed."""
        return list(words[self._aligned_end(words) :])

    def _aligned_end(self, words: Sequence[str]) -> int:
        """Where, in ``words``, the committed words end."""
        n = len(self._committed_norm)
        if n == 0:
            return 0
        hypothesis = [normalise(w) for w in words]
        if hypothesis[:n] == self._committed_norm:
            return n
        matcher = SequenceMatcher(None, self._committed_norm, hypothesis, autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            return min(n, len(words))
        last = blocks[-1]
        # committed words after the last match are taken to stand for as many words here
        end = last.b + last.size + (n - (last.a + last.size))
        return min(end, len(words))
