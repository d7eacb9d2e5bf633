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

from src.engines.base import Segment, Word


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


@dataclass(frozen=True)
class CueLayout:
    """Limits for cues cut from word timings (the request's ``subtitles`` option)."""

    max_chars_per_line: int = 42
    max_lines_per_cue: int = 2
    max_cue_duration: float = 6.0
    #: a pause longer than this between two words always starts a new cue
    max_pause: float = 1.5


_SENTENCE_END = (".", "?", "!", "。", "？", "！")


def _clean_cue_text(text: str) -> str:
    """Cue text: no arrow that would read as a timing line, no blank lines, lines kept."""
    text = text.replace("-->", "->")
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _clamped(raw: Iterable[Cue], duration: float | None) -> list[Cue]:
    """Empty cues dropped; times clamped to ``[0, duration]``, starts monotonic, end >= start."""
    out: list[Cue] = []
    previous_start = 0.0
    for cue in raw:
        text = _clean_cue_text(cue.text)
        if not text:
            continue
        start = max(cue.start, previous_start, 0.0)
        end = max(cue.end, start)
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        out.append(Cue(start=start, end=end, text=text))
        previous_start = start
    return out


def cues(segments: Iterable[Segment], duration: float | None = None) -> list[Cue]:
    """One cue per segment."""
    return _clamped((Cue(s.start, s.end, s.text) for s in segments), duration)


def wrap_words(words: Sequence[str], max_chars: int) -> list[str]:
    """Greedy line wrap at word boundaries; ``words`` keep Whisper's leading spaces, so languages
    written without spaces wrap between tokens. A word longer than a line gets a line alone."""
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len((line + word).strip()) > max_chars:
            lines.append(line.strip())
            line = word.lstrip()
        else:
            line += word
    if line.strip():
        lines.append(line.strip())
    return lines


def word_cues(
    segments: Sequence[Segment], layout: CueLayout, duration: float | None = None
) -> list[Cue]:
    """Cues cut from word timings so that each fits ``layout``.

    A cue ends before a word that would need one line too many, that would make it last longer
    than ``max_cue_duration``, or that follows a long pause; and after a sentence's end once the
    cue holds at least a full line, so cues tend to end where sentences do. Segments without
    word timings fall back to one cue per segment.
    """
    if any(s.words is None for s in segments):
        return cues(segments, duration)
    words = [w for s in segments for w in (s.words or ()) if w.word.strip()]
    raw: list[Cue] = []
    current: list[Word] = []

    def flush() -> None:
        if current:
            lines = wrap_words([w.word for w in current], layout.max_chars_per_line)
            raw.append(Cue(current[0].start, current[-1].end, "\n".join(lines)))
            current.clear()

    for word in words:
        if current:
            texts = [w.word for w in [*current, word]]
            too_many_lines = len(wrap_words(texts, layout.max_chars_per_line)) > (
                layout.max_lines_per_cue
            )
            too_long = word.end - current[0].start > layout.max_cue_duration
            paused = word.start - current[-1].end > layout.max_pause
            if too_many_lines or too_long or paused:
                flush()
        current.append(word)
        text = "".join(w.word for w in current).strip()
        if text.endswith(_SENTENCE_END) and len(text) >= layout.max_chars_per_line:
            flush()
    flush()
    return _clamped(raw, duration)


def _write(style: _CueStyle, cue_list: Sequence[Cue]) -> str:
    blocks = []
    for index, cue in enumerate(cue_list, start=1):
        marker = style.decimal_marker
        start = format_timestamp(cue.start, always_include_hours=True, decimal_marker=marker)
        end = format_timestamp(cue.end, always_include_hours=True, decimal_marker=marker)
        number = f"{index}\n" if style.numbered else ""
        blocks.append(f"{number}{start} --> {end}\n{cue.text}\n")
    return style.header + "\n".join(blocks)


def _cues_for(
    segments: Sequence[Segment], duration: float | None, layout: CueLayout | None
) -> list[Cue]:
    return cues(segments, duration) if layout is None else word_cues(segments, layout, duration)


def to_srt(
    segments: Sequence[Segment], duration: float | None = None, layout: CueLayout | None = None
) -> str:
    return _write(_SRT, _cues_for(segments, duration, layout))


def to_vtt(
    segments: Sequence[Segment], duration: float | None = None, layout: CueLayout | None = None
) -> str:
    return _write(_VTT, _cues_for(segments, duration, layout))


def to_text(segments: Sequence[Segment]) -> str:
    """The transcript as one paragraph: segment texts joined by single spaces."""
    return " ".join(t for s in segments if (t := s.text.strip()))


def to_lines(segments: Sequence[Segment]) -> str:
    """One segment per line (the official worker's ``formatted_text``)."""
    return "\n".join(t for s in segments if (t := s.text.strip()))


def _without_unset_speaker(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("speaker") is None:
        data.pop("speaker", None)
    return data


def segment_dict(segment: Segment) -> dict[str, Any]:
    """A segment as JSON-ready data; ``words`` only with word timestamps, ``speaker`` only when
    diarized."""
    data = _without_unset_speaker(asdict(segment))
    if segment.words is None:
        del data["words"]
    else:
        data["words"] = [_without_unset_speaker(asdict(w)) for w in segment.words]
    return data
