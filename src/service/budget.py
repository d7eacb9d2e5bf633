"""How much decoded audio the jobs in flight may hold together.

Jobs overlap: while one is decoded by the model, others download and run ffmpeg, and each
holds its samples (16 kHz float32, 64 KB a second) until its decode ends. ``AudioBudget``
bounds their sum: before ffmpeg decodes a file, its job reserves the seconds the container
declares (``MAX_AUDIO_SECONDS`` when it declares none), and waits while the others hold too
much; once decoded, the reservation shrinks to what came out. A job always proceeds when no
other holds anything, so one file as long as the limit still runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class Reservation:
    """Seconds of audio held by one job; ``shrink`` gives back what it did not use."""

    def __init__(self, budget: AudioBudget, seconds: float) -> None:
        self._budget = budget
        self.seconds = seconds

    def shrink(self, seconds: float) -> None:
        if seconds < self.seconds:
            self._budget._give_back(self.seconds - seconds)
            self.seconds = seconds


class AudioBudget:
    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._held = 0.0
        self._holders = 0
        self._cond = threading.Condition()

    @property
    def held(self) -> float:
        """Seconds of audio reserved now, by every job together."""
        with self._cond:
            return self._held

    @contextmanager
    def reserve(self, seconds: float) -> Iterator[Reservation]:
        """Hold ``seconds`` (at most the whole budget) for the block, waiting until they fit."""
        seconds = min(max(seconds, 0.0), self.max_seconds)
        with self._cond:
            if self._holders and self._held + seconds > self.max_seconds:
                logger.info(
                    "a job waits for %.0f s of audio to fit: %.0f of %.0f s held",
                    seconds,
                    self._held,
                    self.max_seconds,
                )
            self._cond.wait_for(
                lambda: self._holders == 0 or self._held + seconds <= self.max_seconds
            )
            self._held += seconds
            self._holders += 1
        reservation = Reservation(self, seconds)
        try:
            yield reservation
        finally:
            with self._cond:
                self._holders -= 1
            self._give_back(reservation.seconds)

    def _give_back(self, seconds: float) -> None:
        with self._cond:
            # exactly nothing once nobody holds any (no rounding left over)
            self._held = max(0.0, self._held - seconds) if self._holders else 0.0
            self._cond.notify_all()
