"""semantic_vad's rules (``src.live.semantic``) and the turn detector that applies them, on VAD
probabilities laid out window by window: which pause ends a turn for each eagerness and
verdict, that a hypothesis counts only when it covers the speech up to the pause, and server
VAD's idle timeout."""

from __future__ import annotations

import numpy as np
import pytest

from src.live.semantic import MAX_WAIT_MS, WAITS, judge, silence_ms
from src.live.turns import (
    SAMPLE_RATE,
    IdleTimeout,
    TurnDetection,
    TurnDetector,
    TurnEnded,
    TurnStarted,
)
from src.live.vad import WINDOW

WINDOW_MS = WINDOW * 1000 / SAMPLE_RATE


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("I went to the store.", "finished"),
        ("Did you see it?", "finished"),
        ("  What a day!  ", "finished"),
        ('He said "stop."', "finished"),
        ("I went to the store and", "unfinished"),
        ("I went to the store and.", "unfinished"),  # Whisper's period after a conjunction
        ("So I was, um", "unfinished"),
        ("The thing is,", "unfinished"),
        ("Well...", "unfinished"),
        ("Give it to the", "unfinished"),
        ("I went to the store", "unknown"),
        ("", "unknown"),
    ],
)
def test_judge_reads_the_end_of_the_hypothesis(text: str, verdict: str) -> None:
    assert judge(text) == verdict


def test_waits_order_and_stay_within_openais_maximum() -> None:
    for eagerness, waits in WAITS.items():
        assert waits.finished < waits.unknown < waits.unfinished <= MAX_WAIT_MS[eagerness]
    # a 600 ms mid-sentence pause never ends a turn with low or medium, whatever the verdict
    for eagerness in ("low", "medium", "auto"):
        assert min(silence_ms(eagerness, v) for v in ("finished", "unknown", "unfinished")) > 600  # type: ignore[arg-type]
    assert silence_ms("auto", "finished") == silence_ms("medium", "finished")
    # high ends a finished sentence sooner than server_vad's default 500 ms
    assert silence_ms("high", "finished") < TurnDetection().silence_duration_ms


def windows(ms: float) -> int:
    return round(ms / WINDOW_MS)


def run_turn(
    detection: TurnDetection, hypothesis: str | None, *, covers: bool = True
) -> tuple[float, list[object]]:
    """1 s of speech then 10 s of silence; ``hypothesis`` given 200 ms into the pause (as the
    session's speculative final decode arrives); the silence (ms) after which the turn ended."""
    detector = TurnDetector(detection)
    events: list[object] = list(detector.push(np.full(windows(1000), 0.9)))
    assert isinstance(events[0], TurnStarted)
    pause_start = detector.position
    events += detector.push(np.full(windows(200), 0.05))
    if hypothesis is not None:
        end = detector.position if covers else pause_start - WINDOW * 5
        detector.hypothesis(hypothesis, end)
    for _ in range(windows(10_000)):
        events += detector.push(np.array([0.05]))
        if any(isinstance(e, TurnEnded) for e in events):
            break
    ended = next(e for e in events if isinstance(e, TurnEnded))
    assert ended.speech_end == pause_start
    return (ended.end - ended.speech_end) * 1000 / SAMPLE_RATE, events


@pytest.mark.parametrize("eagerness", ["low", "medium", "high", "auto"])
@pytest.mark.parametrize(
    ("hypothesis", "verdict"),
    [
        ("We went to the park.", "finished"),
        ("We went to the park", "unknown"),
        ("We went to the park and", "unfinished"),
        (None, "unknown"),
    ],
)
def test_the_pause_that_ends_a_turn_follows_the_verdict(
    eagerness: str, hypothesis: str | None, verdict: str
) -> None:
    waited, _ = run_turn(TurnDetection(eagerness=eagerness), hypothesis)  # type: ignore[arg-type]
    expected = silence_ms(eagerness, verdict)  # type: ignore[arg-type]
    assert expected <= waited < expected + 2 * WINDOW_MS


def test_a_hypothesis_that_ends_before_the_pause_does_not_count() -> None:
    """A hypothesis of the audio up to before the pause began misses the last words: it says
    nothing about how the speech ended, so the verdict is unknown."""
    waited, _ = run_turn(TurnDetection(eagerness="high"), "Done.", covers=False)
    assert waited >= silence_ms("high", "unknown")


def test_server_vad_ignores_hypotheses() -> None:
    waited, _ = run_turn(TurnDetection(silence_duration_ms=500), "We went to the park and")
    assert 500 <= waited < 500 + 2 * WINDOW_MS


def test_idle_timeout_fires_after_silence_and_starts_again() -> None:
    detector = TurnDetector(TurnDetection(idle_timeout_ms=1000))
    events = detector.push(np.full(windows(2500), 0.01))
    idle = [e for e in events if isinstance(e, IdleTimeout)]
    assert len(idle) == 2
    assert idle[0].start == 0
    assert (idle[0].end - idle[0].start) * 1000 / SAMPLE_RATE >= 1000
    assert idle[1].start == idle[0].end
    # speech holds the clock; it starts again where the turn ended
    events = detector.push(np.full(windows(1500), 0.9))
    assert not [e for e in events if isinstance(e, IdleTimeout)]
    events = detector.push(np.full(windows(1200), 0.01))
    ended = next(e for e in events if isinstance(e, TurnEnded))
    assert not [e for e in events if isinstance(e, IdleTimeout)]
    events = detector.push(np.full(windows(600), 0.01))
    idle = [e for e in events if isinstance(e, IdleTimeout)]
    assert len(idle) == 1 and idle[0].start == ended.end


def test_no_idle_timeout_unless_asked() -> None:
    detector = TurnDetector(TurnDetection())
    assert not detector.push(np.full(windows(60_000), 0.01))
