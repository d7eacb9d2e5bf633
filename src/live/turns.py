"""Server-side turn detection: where a speaker's turn starts and ends, from VAD probabilities.

The rules are Silero's own (``faster_whisper.vad.get_speech_timestamps``), applied as windows
arrive instead of over a finished file, with the knobs of OpenAI's ``server_vad``:

- a window scoring at least ``threshold`` starts a turn; the turn's audio begins
  ``prefix_padding_ms`` earlier (never before the previous turn's speech ended);
- while speaking, a window under ``threshold - 0.15`` opens a pause and a window at
  ``threshold`` or above closes it; a pause of ``silence_duration_ms`` ends the turn, its
  speech ending where the pause began;
- a turn that reaches ``max_turn_seconds`` (30 s: one Whisper window) is cut at its longest
  pause after the first third, or where speech is least likely when it has none; the rest of
  it goes on as a new turn at once.

Positions are sample offsets on the 16 kHz stream the detector was fed, counted from its
``origin``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.live.vad import WINDOW

SAMPLE_RATE = 16000
#: Silero's hysteresis: speech ends below this much under the start threshold
NEG_THRESHOLD_OFFSET = 0.15


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's ``server_vad`` settings, with its defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - NEG_THRESHOLD_OFFSET, 0.01)


@dataclass(frozen=True)
class TurnStarted:
    #: where the turn's audio begins (prefix padding included)
    start: int
    #: the first window that scored as speech
    speech_start: int


@dataclass(frozen=True)
class TurnEnded:
    #: where the speech stopped: the start of the closing pause, or the cut
    speech_end: int
    #: where the end was decided (the speech end plus the silence waited for, or the cut)
    end: int
    #: True when the turn was cut for length rather than ended by silence
    cut: bool = False


TurnEvent = TurnStarted | TurnEnded


class TurnDetector:
    def __init__(
        self, settings: TurnDetection, *, max_turn_seconds: float = 30.0, origin: int = 0
    ) -> None:
        self.settings = settings
        self._max_turn = int(max_turn_seconds * SAMPLE_RATE)
        self._origin = origin
        self._windows = 0
        self._floor = origin
        self._speaking = False
        self._turn_start = 0
        self._pause_start: int | None = None
        #: this turn's window probabilities, the first at ``_probs_start``
        self._probs: list[float] = []
        self._probs_start = 0
        self._last = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def turn_start(self) -> int | None:
        return self._turn_start if self._speaking else None

    @property
    def pause_start(self) -> int | None:
        """While speaking: where the pause that is going on now began, if one is."""
        return self._pause_start if self._speaking else None

    @property
    def quiet(self) -> bool:
        """Whether the last window scored under ``threshold`` (speech fading or absent)."""
        return self._last < self.settings.threshold

    @property
    def position(self) -> int:
        """The end of the last window scored."""
        return self._origin + self._windows * WINDOW

    def interrupt(self, floor: int) -> None:
        """End the current turn without an event (the client committed it); the next turn
        begins no earlier than ``floor``."""
        self._speaking = False
        self._pause_start = None
        self._floor = max(self._floor, floor)

    def push(self, probabilities: np.ndarray) -> list[TurnEvent]:
        """Feed the next windows' probabilities; the turns they start and end, in order."""
        events: list[TurnEvent] = []
        settings = self.settings
        prefix = settings.prefix_padding_ms * SAMPLE_RATE // 1000
        silence = settings.silence_duration_ms * SAMPLE_RATE // 1000
        for p in probabilities.tolist():
            self._last = p
            window_start = self.position
            self._windows += 1
            window_end = window_start + WINDOW
            if not self._speaking:
                if p >= settings.threshold:
                    self._speaking = True
                    self._turn_start = max(self._floor, window_start - prefix)
                    self._pause_start = None
                    self._probs = [p]
                    self._probs_start = window_start
                    events.append(TurnStarted(self._turn_start, window_start))
                continue
            self._probs.append(p)
            if p >= settings.threshold:
                self._pause_start = None
            elif p < settings.neg_threshold and self._pause_start is None:
                self._pause_start = window_start
            if self._pause_start is not None and window_end - self._pause_start >= silence:
                events.append(TurnEnded(self._pause_start, window_end))
                self._speaking = False
                # the next turn's padding may reach back into this one's closing silence
                self._floor = self._pause_start
                self._pause_start = None
            elif window_end - self._turn_start >= self._max_turn:
                cut = self._cut_point()
                events.append(TurnEnded(cut, cut, cut=True))
                events.append(TurnStarted(cut, cut))
                self._turn_start = cut
                keep = (cut - self._probs_start) // WINDOW
                self._probs = self._probs[keep:]
                self._probs_start += keep * WINDOW
                if self._pause_start is not None and self._pause_start < cut:
                    self._pause_start = cut
        return events

    def _cut_point(self) -> int:
        """Where to cut the current over-long turn: the middle of its longest pause after its
        first third (the latest of equals), else its least speech-like window (the latest)."""
        probs = np.asarray(self._probs)
        first = max(0, (self._turn_start + self._max_turn // 3 - self._probs_start) // WINDOW)
        first = min(first, len(probs) - 1)
        quiet = probs < self.settings.neg_threshold
        best_start, best_length = -1, 0
        run_start = None
        for i in range(first, len(probs) + 1):
            if i < len(probs) and quiet[i]:
                run_start = i if run_start is None else run_start
                continue
            if run_start is not None:
                if i - run_start >= best_length:
                    best_start, best_length = run_start, i - run_start
                run_start = None
        if best_length > 0:
            middle = best_start + best_length // 2
        else:  # the latest of the least speech-like windows: as long a turn as allowed
            rest = probs[first:]
            middle = first + len(rest) - 1 - int(np.argmin(rest[::-1]))
        return self._probs_start + middle * WINDOW
