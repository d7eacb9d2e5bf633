"""Transcript output formats: plain text, JSON-ready dicts, SRT and WebVTT.

Pure functions of the records, no I/O. SRT and VTT differ only in the data of ``_CueStyle``
(decimal marker, whether hours are always written, the header), as in openai-whisper's
``utils.py``. Every cue's times are clamped to ``[0, duration]`` and kept monotonic, so a player
never sees a cue that ends before it starts or one past the end of the audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from src.engines.base import Segment


def format_timestamp(
    seconds: float, *, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    """``HH:MM:SS.mmm``: rounded to whole milliseconds first, so 59.9996 s becomes 00:01:00.000."""
    if seconds < 0:
        raise ValueError("a timestamp cannot be negative")
    total_ms = round(seconds * 1000.0)
    hours, total_ms = divmod(total_ms, 3_600_000)
    minutes, total_ms = divmod(total_ms, 60_000)
    secs, ms = divmod(total_ms, 1000)
    hours_part = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_part}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class _CueStyle:
    header: str
    decimal_marker: str
    numbered: bool


_SRT = _CueStyle(header="", decimal_marker=",", numbered=True)
_VTT = _CueStyle(header="WEBVTT\n\n", decimal_marker=".", numbered=False)


def _clean_cue_text(text: str) -> str:
    """One line of cue text: no arrow that would read as a timing line, no blank lines."""
    text = text.replace("-->", "->")
    return " ".join(text.split())


def cues(segments: Iterable[Segment], duration: float | None = None) -> list[Cue]:
    """Segments as subtitle cues: empty ones dropped, times clamped and monotonic."""
    out: list[Cue] = []
    previous_start = 0.0
    for segment in segments:
        text = _clean_cue_text(segment.text)
        if not text:
            continue
        start = max(segment.start, previous_start, 0.0)
        end = max(segment.end, start)
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        out.append(Cue(start=start, end=end, text=text))
        previous_start = start
    return out


def _write(style: _CueStyle, segments: Sequence[Segment], duration: float | None) -> str:
    blocks = []
    for index, cue in enumerate(cues(segments, duration), start=1):
        start = format_timestamp(
            cue.start, always_include_hours=True, decimal_marker=style.decimal_marker
        )
        end = format_timestamp(
            cue.end, always_include_hours=True, decimal_marker=style.decimal_marker
        )
        number = f"{index}\n" if style.numbered else ""
        blocks.append(f"{number}{start} --> {end}\n{cue.text}\n")
    return style.header + "\n".join(blocks)


def to_srt(segments: Sequence[Segment], duration: float | None = None) -> str:
    return _write(_SRT, segments, duration)


def to_vtt(segments: Sequence[Segment], duration: float | None = None) -> str:
    return _write(_VTT, segments, duration)


def to_text(segments: Sequence[Segment]) -> str:
    """The transcript as one paragraph: segment texts joined by single spaces."""
    return " ".join(t for s in segments if (t := s.text.strip()))


def to_lines(segments: Sequence[Segment]) -> str:
    """One segment per line (the official worker's ``formatted_text``)."""
    return "\n".join(t for s in segments if (t := s.text.strip()))


def segment_dict(segment: Segment) -> dict[str, Any]:
    """A segment as JSON-ready data; ``words`` only when word timestamps were asked for."""
    data = asdict(segment)
    if segment.words is None:
        del data["words"]
    else:
        data["words"] = [asdict(w) for w in segment.words]
    return data
