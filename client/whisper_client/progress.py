"""How a batch shows its progress: a bar on a terminal, one log line per file otherwise.

A bar is useless in a log file or a CI job (it becomes thousands of carriage returns), and log
lines scroll past the useful part on a terminal; so the choice follows ``isatty()``. The bar counts
audio (minutes, or hours for a big batch), not files, because one long recording takes as long as
a hundred short ones and the ETA should know it; the files count rides along in its postfix.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import IO, Protocol

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

logger = logging.getLogger(__name__)


class Progress(Protocol):
    def begin(self, files: int, audio_seconds: float) -> None: ...

    def advance(self, rel: str, ok: bool, audio_seconds: float, detail: str) -> None: ...

    def working(self, rel: str, fraction: float) -> None:
        """A file's job is ``fraction`` done (the worker's progress report)."""
        ...

    def end(self) -> None: ...


def human_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.25 h``: audio lengths span four orders of magnitude."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


class LogProgress:
    """One line per finished file: ``[3/40] done talks/monday.wav (61 s of audio, 4.2 s)``."""

    def __init__(self) -> None:
        self._total = 0
        self._count = 0
        self._quarters: dict[str, int] = {}

    def begin(self, files: int, audio_seconds: float) -> None:
        self._total = files
        logger.info("%d files to transcribe, %s of audio", files, human_duration(audio_seconds))

    def advance(self, rel: str, ok: bool, audio_seconds: float, detail: str) -> None:
        self._count += 1
        level = logging.INFO if ok else logging.WARNING
        state = "done" if ok else "FAILED"
        logger.log(level, "[%d/%d] %s %s (%s)", self._count, self._total, state, rel, detail)

    def working(self, rel: str, fraction: float) -> None:
        """A line each time a file's job passes another quarter."""
        quarter = int(fraction * 4)
        if quarter > self._quarters.get(rel, 0):
            self._quarters[rel] = quarter
            logger.info("%s: %d%% transcribed", rel, round(fraction * 100))

    def end(self) -> None:
        pass


class BarProgress:
    """A tqdm bar in audio minutes or hours, with files done and failed in its postfix."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._bar: tqdm[None] | None = None
        self._files = 0
        self._done = 0
        self._failed = 0
        self._working: dict[str, float] = {}
        self._scale = 3600.0
        self._logs = contextlib.ExitStack()

    def begin(self, files: int, audio_seconds: float) -> None:
        self._files = files
        self._scale, unit = (3600.0, "h") if audio_seconds >= 7200 else (60.0, "min")
        self._logs.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
        self._bar = tqdm(
            total=round(audio_seconds / self._scale, 3),
            file=self._stream,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} "
            + unit
            + " audio [{elapsed}<{remaining}]{postfix}",
        )
        self._postfix()

    def advance(self, rel: str, ok: bool, audio_seconds: float, detail: str) -> None:
        self._working.pop(rel, None)
        if ok:
            self._done += 1
        else:
            self._failed += 1
            logger.warning("FAILED %s (%s)", rel, detail)
        if self._bar is not None:
            self._bar.update(round(audio_seconds / self._scale, 6))
            self._postfix()

    def working(self, rel: str, fraction: float) -> None:
        self._working[rel] = fraction
        self._postfix()

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._logs.close()

    def _postfix(self) -> None:
        if self._bar is not None:
            finished = self._done + self._failed
            running = ", ".join(f"{Path(r).name} {f:.0%}" for r, f in self._working.items())
            now = f", now: {running}" if running else ""
            self._bar.set_postfix_str(f"files {finished}/{self._files}, failed {self._failed}{now}")


def make_progress(stream: IO[str] | None = None) -> Progress:
    stream = stream or sys.stderr
    return BarProgress(stream) if stream.isatty() else LogProgress()
