"""Attaching speakers to transcript segments and words, by time overlap with speaker turns.

Why labels and not new records: ``Segment`` and ``Word`` (``src.engines.base``) are frozen and
shared by both engines; this module returns one label per item, in order, and the caller builds
its records with them (``dataclasses.replace(segment, speaker=label)``). A segment or word takes
the speaker it overlaps longest; one that falls in a gap between turns (Whisper's timestamps and
the VAD's disagree by a few hundred milliseconds) takes the nearest turn within ``max_gap``
seconds, else ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.diarization.pipeline import SpeakerTurn
from src.engines.base import Segment, Word

#: how far (seconds) an item may lie from every turn and still take the nearest one's speaker
DEFAULT_MAX_GAP = 1.0


def label_span(
    start: float, end: float, turns: Sequence[SpeakerTurn], max_gap: float = DEFAULT_MAX_GAP
) -> str | None:
    """The speaker of ``[start, end]``: most overlapped in total, else nearest within ``max_gap``.

    Ties in overlap go to the speaker whose turn comes first.
    """
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=lambda speaker: overlap[speaker])
    nearest: str | None = None
    best = max_gap
    for turn in turns:
        gap = max(turn.start - end, start - turn.end, 0.0)
        if gap <= best:
            nearest, best = turn.speaker, gap
            if gap == 0.0:
                break
    return nearest


def label_segments(
    segments: Sequence[Segment], turns: Sequence[SpeakerTurn], max_gap: float = DEFAULT_MAX_GAP
) -> list[str | None]:
    """One speaker (or ``None``) per segment, in order."""
    return [label_span(s.start, s.end, turns, max_gap) for s in segments]


def label_words(
    words: Sequence[Word], turns: Sequence[SpeakerTurn], max_gap: float = DEFAULT_MAX_GAP
) -> list[str | None]:
    """One speaker (or ``None``) per word, in order."""
    return [label_span(w.start, w.end, turns, max_gap) for w in words]
