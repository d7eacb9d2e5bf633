"""A segment cut at its sentence ends, using its word timings.

The batched long-audio path decodes a whole chunk (up to 30 s) as one piece of text; with the
word timings of that text it can still give subtitle-sized segments, one per sentence, each with
its own start and end on the original timeline.
"""

from __future__ import annotations

from dataclasses import replace

from src.engines.base import Segment, Word

#: what ends a sentence, in Latin and CJK punctuation
SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
#: words ending in a full stop that do not end a sentence
TITLES = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "prof.", "mt."})


def _ends_sentence(word: Word) -> bool:
    text = word.word.strip()
    return text.endswith(SENTENCE_ENDS) and text.lower() not in TITLES


def split_sentences(segment: Segment) -> list[Segment]:
    """``segment`` as one segment per sentence; unchanged when it has no word timings or holds
    one sentence. Each part keeps the segment's scores; ids are left to the caller."""
    if not segment.words:
        return [segment]
    parts: list[list[Word]] = [[]]
    for word in segment.words:
        parts[-1].append(word)
        if _ends_sentence(word):
            parts.append([])
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return [segment]
    return [
        replace(
            segment,
            start=part[0].start,
            end=part[-1].end,
            text="".join(w.word for w in part),
            words=tuple(part),
        )
        for part in parts
    ]
