"""Silero VAD run incrementally: each new 32 ms window scored once, as audio arrives.

faster-whisper's ``SileroVADModel.__call__`` scores a whole array in one go, starting from a zero
recurrent state. Its ONNX graph takes and returns that state (``h``, ``c``) and prepends 64
samples of context to each 512-sample window, so carrying both across calls gives exactly the
probabilities of one call over the whole stream (``tests/test_live_policy.py`` checks this)
while each window is computed only once. The loaded model is faster-whisper's own, shared with
the file decodes' ``vad_filter`` (ONNX Runtime sessions may be run from several threads).
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

#: samples per scored window at 16 kHz (32 ms), and the context each window is given
WINDOW = 512
CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)


#: a window under this score counts as silence for ``reset_after_silence_s``
SILENCE_SCORE = 0.15


class StreamingVad:
    """Speech probabilities of successive 512-sample windows of one 16 kHz stream.

    Run over a long stream, the model's recurrent state drifts: after some seconds of speech
    and a pause, the next words score far lower than they do at the start of a stream (0.01 to
    0.15 where a fresh state gives 0.5 to 0.95: measured on the benchmark's clips joined), so a
    turn would start late and lose its first words. With ``reset_after_silence_s`` the state is
    reset once that much silence has passed, which scores the next speech as a fresh stream
    does; nothing is lost, since silence carries nothing to remember. Once per stretch of
    silence: a fresh state scores the first windows of soft speech low for a while, and resetting
    it again then would keep it there.
    """

    def __init__(self, reset_after_silence_s: float | None = None) -> None:
        self._session = get_vad_model().session
        self._reset_after = (
            None
            if reset_after_silence_s is None
            else max(1, round(reset_after_silence_s * 16000 / WINDOW))
        )
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample starts window 0 with a fresh state."""
        self._reset_state()
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        #: windows scored since the last reset
        self.windows = 0

    def _reset_state(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._quiet = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the windows that ``samples`` completes (maybe none), in order."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        count = len(data) // WINDOW
        self._pending = data[count * WINDOW :]
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        windows = data[: count * WINDOW].reshape(count, WINDOW)
        if self._reset_after is None:
            scores = self._score(windows)
        else:  # window by window, to reset the state at the right one
            scores = np.concatenate([self._score_resetting(w[None, :]) for w in windows])
        self.windows += count
        return scores

    def _score_resetting(self, window: np.ndarray) -> np.ndarray:
        scores = self._score(window)
        self._quiet = self._quiet + 1 if scores[0] < SILENCE_SCORE else 0
        if self._quiet == self._reset_after:
            # once per quiet stretch: a fresh state needs a few windows to rise on new words
            self._reset_state()
            self._quiet = self._reset_after + 1
        return scores

    def _score(self, windows: np.ndarray) -> np.ndarray:
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        output, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(output, dtype=np.float32).reshape(len(windows))
