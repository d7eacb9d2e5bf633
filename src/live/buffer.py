"""The recent audio of a live stream, addressed by absolute sample position.

A session's audio arrives in small chunks and only a window of it is ever needed (the open turn,
or a little pre-roll before the next one); positions stay absolute so that a turn found by the
VAD at samples ``[a, b)`` of the stream can be cut out however much was dropped before it.
"""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._start = 0
        self._end = 0

    @property
    def start(self) -> int:
        """Position of the oldest sample held."""
        return self._start

    @property
    def end(self) -> int:
        """Position after the newest sample: the stream's length so far."""
        return self._end

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(np.asarray(samples, dtype=np.float32))
            self._end += samples.size

    def slice(self, start: int, end: int) -> np.ndarray:
        """A copy of the samples at ``[start, end)``, clipped to what is held."""
        start, end = max(start, self._start), min(end, self._end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        held = self._joined()
        return held[start - self._start : end - self._start].copy()

    def drop_before(self, position: int) -> None:
        """Forget the samples before ``position``."""
        position = min(max(position, self._start), self._end)
        if position == self._start:
            return
        held = self._joined()
        rest = held[position - self._start :].copy()
        self._chunks = [rest] if rest.size else []
        self._start = position

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
            self._chunks = [joined] if joined.size else []
            return joined
        return self._chunks[0]
