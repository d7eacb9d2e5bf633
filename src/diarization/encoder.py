"""Resemblyzer's GE2E speaker encoder in numpy: mel front end, 3-layer LSTM, d-vectors.

Why numpy: the worker image runs faster-whisper without torch or librosa, and the network is
small (LSTM 40 -> 256 x 3, linear 256 -> 256, ReLU, L2 norm; 1.4 M parameters) and runs on
1.6 s windows, so a batched numpy LSTM costs seconds per hour of speech. The weights come from
``src.diarization.convert`` (Resemblyzer 0.1.4's ``pretrained.pt``, Apache-2.0).

The front end follows Resemblyzer (``resemblyzer/audio.py``, ``hparams.py``): a *power* (not log)
mel spectrogram as ``librosa.feature.melspectrogram`` computes it with n_fft=400 (25 ms), hop 160
(10 ms), 40 Slaney mel bands, a periodic Hann window and zero-padded centred frames, after the
waveform is raised to -30 dBFS (never lowered). Because the mel is not logarithmic, that volume
normalisation matters: the network was trained on it. ``tests/test_diarization.py`` checks the
filterbank formula against Whisper's librosa-made ``mel_filters.npz`` and the network against the
original torch model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.engines.base import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
N_MELS = 40
#: frames in one partial utterance, as Resemblyzer embeds them (1.6 s)
WINDOW_FRAMES = 160
HIDDEN_SIZE = 256
NUM_LAYERS = 3
#: Resemblyzer's ``audio_norm_target_dBFS``
TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear to 1 kHz, log above."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


@functools.cache
def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """``librosa.filters.mel(sr, n_fft, n_mels)`` (Slaney scale and area norm), float32.

    Shape ``(n_mels, n_fft // 2 + 1)``. Read-only: it is cached and shared.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_points = np.linspace(
        _hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2
    )
    mel_f = _mel_to_hz(mel_points)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


def normalize_volume(audio: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise ``audio`` to ``target_dbfs`` RMS, never lower it (Resemblyzer, ``increase_only``)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms <= 0.0:
        return audio
    change_db = target_dbfs - 20.0 * np.log10(rms)
    if change_db < 0:
        return audio
    return (audio * np.float32(10 ** (change_db / 20))).astype(np.float32)


def mel_frames(audio: np.ndarray, block_frames: int = 4096) -> np.ndarray:
    """Power mel spectrogram ``(1 + len(audio) // 160, 40)`` float32, frame ``i`` centred at
    sample ``160 * i`` (librosa's ``center=True`` with zero padding).

    Computed ``block_frames`` at a time so an hour of audio never materialises its 400-sample
    frames at once (that would be 0.6 GB).
    """
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.pad(audio, N_FFT // 2)
    n_frames = 1 + audio.size // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, N_FFT),
        strides=(padded.strides[0] * HOP_LENGTH, padded.strides[0]),
        writeable=False,
    )
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    filters_t = mel_filterbank().T
    out = np.empty((n_frames, N_MELS), dtype=np.float32)
    for begin in range(0, n_frames, block_frames):
        block = frames[begin : begin + block_frames] * window
        power = np.abs(np.fft.rfft(block, axis=1)) ** 2
        out[begin : begin + block_frames] = power.astype(np.float32) @ filters_t
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function via tanh: no overflow warning for large negative inputs."""
    out = np.tanh(0.5 * x)
    out += 1.0
    out *= 0.5
    return out


def _ifog(matrix: np.ndarray) -> np.ndarray:
    """Reorder PyTorch's gate blocks (i, f, g, o) along axis 0 to (i, f, o, g).

    Why: the three sigmoid gates then form one contiguous block, one ufunc call per step.
    """
    i, f, g, o = np.split(matrix, 4, axis=0)
    return np.concatenate([i, f, o, g], axis=0)


@dataclass(frozen=True)
class _LstmLayer:
    w_ih_t: np.ndarray  # (in, 4H)
    w_hh_t: np.ndarray  # (H, 4H)
    bias: np.ndarray  # (4H,) = b_ih + b_hh


class SpeakerEncoder:
    """The GE2E network with its weights, turning mel windows into 256-dim unit d-vectors."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self._layers = tuple(
            _LstmLayer(
                w_ih_t=np.ascontiguousarray(_ifog(weights[f"lstm.weight_ih_l{k}"]).T, np.float32),
                w_hh_t=np.ascontiguousarray(_ifog(weights[f"lstm.weight_hh_l{k}"]).T, np.float32),
                bias=_ifog(weights[f"lstm.bias_ih_l{k}"] + weights[f"lstm.bias_hh_l{k}"]).astype(
                    np.float32
                ),
            )
            for k in range(NUM_LAYERS)
        )
        self._linear_t = np.ascontiguousarray(weights["linear.weight"].T, dtype=np.float32)
        self._linear_b = np.asarray(weights["linear.bias"], dtype=np.float32)

    @classmethod
    def load(cls, path: Path) -> SpeakerEncoder:
        """Load the ``.npz`` written by ``src.diarization.convert``."""
        with np.load(path) as npz:
            return cls({name: npz[name] for name in npz.files if name != "source_sha256"})

    def embed_mels(self, mels: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """d-vectors ``(B, 256)`` of a batch of mel windows ``(B, T, 40)``.

        ``lengths`` (frames per window, each 1..T) lets windows shorter than ``T`` share a batch:
        the LSTM is causal, so the top layer's hidden state at frame ``length - 1`` is exactly what
        the unpadded window would end with. Without ``lengths`` every window uses all ``T`` frames,
        as Resemblyzer's ``forward`` does.
        """
        batch, steps, _ = mels.shape
        if lengths is None:
            lengths = np.full(batch, steps)
        lengths = np.asarray(lengths)
        if batch == 0:
            return np.zeros((0, HIDDEN_SIZE), dtype=np.float32)
        if lengths.min() < 1 or lengths.max() > steps:
            raise ValueError("window lengths must lie in 1..T")
        x = np.asarray(mels, dtype=np.float32)
        last = np.zeros((batch, HIDDEN_SIZE), dtype=np.float32)
        for index, layer in enumerate(self._layers):
            top = index == NUM_LAYERS - 1
            gates_in = x @ layer.w_ih_t + layer.bias  # (B, T, 4H), all frames at once
            h = np.zeros((batch, HIDDEN_SIZE), dtype=np.float32)
            c = np.zeros((batch, HIDDEN_SIZE), dtype=np.float32)
            outputs = None if top else np.empty((batch, steps, HIDDEN_SIZE), dtype=np.float32)
            for t in range(steps):
                gates = h @ layer.w_hh_t
                gates += gates_in[:, t]
                sig = _sigmoid(gates[:, : 3 * HIDDEN_SIZE])  # input, forget, output gates
                c *= sig[:, HIDDEN_SIZE : 2 * HIDDEN_SIZE]
                c += sig[:, :HIDDEN_SIZE] * np.tanh(gates[:, 3 * HIDDEN_SIZE :])
                h = sig[:, 2 * HIDDEN_SIZE :] * np.tanh(c)
                if outputs is not None:
                    outputs[:, t] = h
                else:
                    ends = lengths == t + 1
                    last[ends] = h[ends]
            if outputs is not None:
                x = outputs
        raw = np.maximum(last @ self._linear_t + self._linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed_windows(
        self, mels: np.ndarray, windows: list[tuple[int, int]], batch_size: int = 256
    ) -> np.ndarray:
        """d-vectors of frame ranges ``[start, stop)`` of one mel spectrogram, batched by length.

        Windows may be shorter than ``WINDOW_FRAMES`` (short speech regions); they are padded at
        the end and read at their own last frame.
        """
        out = np.zeros((len(windows), HIDDEN_SIZE), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda k: windows[k][1] - windows[k][0])
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            lengths = np.array([windows[k][1] - windows[k][0] for k in chunk])
            steps = int(lengths.max())
            batch = np.zeros((len(chunk), steps, N_MELS), dtype=np.float32)
            for row, k in enumerate(chunk):
                start, stop = windows[k]
                batch[row, : stop - start] = mels[start:stop]
            out[chunk] = self.embed_mels(batch, lengths)
        return out
