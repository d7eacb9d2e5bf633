"""Long audio cut into windows: Silero VAD regions joined into chunks of at most 30 s.

Each chunk is a *contiguous* stretch of the original audio (pauses inside it are kept, long
silences between chunks are skipped), so every timestamp the model gives inside a chunk is the
chunk's start plus the model's own offset: already on the original timeline, with no re-mapping.
The speech regions are kept beside the chunks: they tell whether the model stopped reading
before the speech in its window ended (``speech_between``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.engines.base import SAMPLE_RATE, VadParameters
from src.engines.vad import WINDOW_SECONDS, join_regions, speech_regions

#: Whisper's window: a chunk never exceeds it
CHUNK_SECONDS = WINDOW_SECONDS


@dataclass(frozen=True)
class Chunk:
    """One stretch of the original audio decoded as one window, with its speech seconds."""

    start: float
    end: float
    speech: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of one file and the speech regions (seconds) they were built from."""

    chunks: list[Chunk]
    regions: list[tuple[float, float]]

    def speech_between(self, start: float, end: float) -> float:
        """Seconds of detected speech between ``start`` and ``end``."""
        return _speech(self.regions, start, end)


def _speech(regions: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in regions)


def plan(
    audio: np.ndarray,
    vad: VadParameters,
    max_seconds: float = CHUNK_SECONDS,
    probabilities: np.ndarray | None = None,
) -> ChunkPlan:
    """Speech regions of ``audio``, joined while each chunk spans at most ``max_seconds``.

    Regions longer than a window are split by Silero at its longest inner pause (or hard at the
    window's end when there is none), as faster-whisper does for its own batched mode.
    """
    # a little under the window, so that padding never pushes a region past it
    found = speech_regions(
        audio,
        vad,
        SAMPLE_RATE,
        max_speech_duration_s=max_seconds - 0.5,
        probabilities=probabilities,
    )
    total = audio.size / SAMPLE_RATE
    regions = [(max(0.0, s), min(total, e)) for s, e in found if min(total, e) > max(0.0, s)]
    chunks: list[Chunk] = []
    for start, end in join_regions(regions, max_seconds):
        end = min(end, start + max_seconds)
        chunks.append(Chunk(start, end, _speech(regions, start, end)))
    return ChunkPlan(chunks, regions)


def plan_chunks(
    audio: np.ndarray, vad: VadParameters, max_seconds: float = CHUNK_SECONDS
) -> list[Chunk]:
    """Only the chunks of ``plan``."""
    return plan(audio, vad, max_seconds).chunks
