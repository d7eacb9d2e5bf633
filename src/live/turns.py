"""Server-side turn detection: where a speaker's turn starts and ends, from VAD probabilities.

The rules are Silero's own (``faster_whisper.vad.get_speech_timestamps``), applied as windows
arrive instead of over a finished file, with the knobs of OpenAI's ``server_vad``:

- a window scoring at least ``threshold`` starts a turn; the turn's audio begins
  ``prefix_padding_ms`` earlier (never before the previous turn's speech ended);
- while speaking, a window under ``threshold - 0.15`` opens a pause and a window at
  ``threshold`` or above closes it; a pause of ``silence_duration_ms`` ends the turn, its
  speech ending where the pause began;
- with ``eagerness`` set (OpenAI's ``semantic_vad``), the pause that ends a turn is not
  ``silence_duration_ms`` but what ``src.live.semantic`` reads from the turn's running
  hypothesis (``hypothesis()``): shorter after a finished sentence, longer after a word that
  trails off;
- with ``idle_timeout_ms`` set, that much audio without a turn since the last one ended (or
  since the detector started) gives ``IdleTimeout`` and the clock starts again;
- a turn that reaches ``max_turn_seconds`` (30 s: one Whisper window) is cut at its longest
  pause after the first third, or where speech is least likely when it has none; the rest of
  it goes on as a new turn at once.

Positions are sample offsets on the 16 kHz stream the detector was fed, counted from its
``origin``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.live.semantic import Eagerness, Verdict, judge, silence_ms
from src.live.vad import WINDOW

SAMPLE_RATE = 16000
#: Silero's hysteresis: speech ends below this much under the start threshold
NEG_THRESHOLD_OFFSET = 0.15


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's ``server_vad`` settings, with its defaults; ``eagerness`` set: ``semantic_vad``
    (which takes OpenAI's other defaults from server VAD's)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    #: None: ``server_vad``
    eagerness: Eagerness | None = None
    #: None: no idle timeout
    idle_timeout_ms: int | None = None

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


@dataclass(frozen=True)
class IdleTimeout:
    #: the silent stretch: from the end of the last turn (or the start) to the trigger
    start: int
    end: int


TurnEvent = TurnStarted | TurnEnded | IdleTimeout


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
        #: (verdict, audio end) of the current turn's latest hypothesis (semantic VAD)
        self._hypothesis: tuple[Verdict, int] | None = None
        #: where the idle clock started
        self._idle_from = origin

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

    def hypothesis(self, text: str, end: int) -> None:
        """The current turn's latest hypothesis, of its audio up to ``end`` (semantic VAD
        reads whether it is finished)."""
        if self._speaking and (self._hypothesis is None or end >= self._hypothesis[1]):
            self._hypothesis = (judge(text), end)

    def verdict(self) -> Verdict:
        """The latest hypothesis's verdict, when it covers the speech up to the pause going
        on now; else ``unknown``."""
        if self._hypothesis is None or self._pause_start is None:
            return "unknown"
        verdict, end = self._hypothesis
        return verdict if end >= self._pause_start else "unknown"

    def _silence(self) -> int:
        """Samples of silence that end the current turn now."""
        settings = self.settings
        if settings.eagerness is None:
            return settings.silence_duration_ms * SAMPLE_RATE // 1000
        return silence_ms(settings.eagerness, self.verdict()) * SAMPLE_RATE // 1000

    def interrupt(self, floor: int) -> None:
        """End the current turn without an event (the client committed it); the next turn
        begins no earlier than ``floor``."""
        self._speaking = False
        self._pause_start = None
        self._floor = max(self._floor, floor)
        self._idle_from = max(self._idle_from, floor)

    def push(self, probabilities: np.ndarray) -> list[TurnEvent]:
        """Feed the next windows' probabilities; the turns they start and end, in order."""
        events: list[TurnEvent] = []
        settings = self.settings
        prefix = settings.prefix_padding_ms * SAMPLE_RATE // 1000
        idle = (
            None
            if settings.idle_timeout_ms is None
            else settings.idle_timeout_ms * SAMPLE_RATE // 1000
        )
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
                    self._hypothesis = None
                    events.append(TurnStarted(self._turn_start, window_start))
                elif idle is not None and window_end - self._idle_from >= idle:
                    events.append(IdleTimeout(self._idle_from, window_end))
                    self._idle_from = window_end
                continue
            self._probs.append(p)
            if p >= settings.threshold:
                self._pause_start = None
            elif p < settings.neg_threshold and self._pause_start is None:
                self._pause_start = window_start
            if self._pause_start is not None and window_end - self._pause_start >= self._silence():
                events.append(TurnEnded(self._pause_start, window_end))
                self._speaking = False
                self._idle_from = window_end
                # the next turn's padding may reach back into this one's closing silence
                self._floor = self._pause_start
                self._pause_start = None
            elif window_end - self._turn_start >= self._max_turn:
                cut = self._cut_point()
                events.append(TurnEnded(cut, cut, cut=True))
                events.append(TurnStarted(cut, cut))
                self._turn_start = cut
                self._hypothesis = None
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
