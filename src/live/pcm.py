"""Raw audio of a live session to the model's 16 kHz mono float32, one chunk at a time.

A live client sends headerless audio in small pieces: 16-bit little-endian PCM at any rate
(OpenAI's Realtime default is 24 kHz), or G.711 mu-law / A-law at 8 kHz. A chunk may end in the
middle of a 16-bit sample; the odd byte waits for the next chunk. Resampling is soxr's streaming
resampler, which carries its filter state across chunks, so the joined output equals resampling
the whole stream at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import soxr

#: the model's rate, and the only rate Silero VAD accepts
TARGET_RATE = 16000

Encoding = Literal["pcm16", "pcmu", "pcma"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)

#: rates a client may declare for 16-bit PCM; G.711 is 8 kHz by definition
MIN_RATE = 8000
MAX_RATE = 96000
G711_RATE = 8000


@dataclass(frozen=True)
class AudioFormat:
    encoding: Encoding = "pcm16"
    rate: int = 24000

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r}: expected one of {', '.join(ENCODINGS)}")
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise ValueError(f"rate {self.rate}: expected {MIN_RATE} to {MAX_RATE} Hz")
        if self.encoding != "pcm16" and self.rate != G711_RATE:
            raise ValueError(f"{self.encoding} is {G711_RATE} Hz audio, not {self.rate} Hz")

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    def seconds(self, n_bytes: int) -> float:
        """How long ``n_bytes`` of this audio lasts."""
        return n_bytes / self.bytes_per_sample / self.rate


def _mulaw_table() -> np.ndarray:
    """ITU-T G.711 mu-law: each of the 256 codes as a float in [-1, 1]."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    values = np.where(sign != 0, -magnitude, magnitude)
    return (values / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    """ITU-T G.711 A-law: each of the 256 codes as a float in [-1, 1]."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    values = np.where(sign != 0, magnitude, -magnitude)
    return (values / 32768.0).astype(np.float32)


_G711 = {"pcmu": _mulaw_table(), "pcma": _alaw_table()}


class PcmDecoder:
    """Turns a stream of raw chunks of one ``AudioFormat`` into 16 kHz float32 samples."""

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._carry = b""
        self._resampler: soxr.ResampleStream | None = None
        if audio_format.rate != TARGET_RATE:
            self._resampler = soxr.ResampleStream(
                audio_format.rate, TARGET_RATE, 1, dtype="float32", quality="HQ"
            )

    def decode(self, chunk: bytes) -> np.ndarray:
        """The samples of ``chunk`` (and of any byte held over from the last one)."""
        data = self._carry + chunk
        usable = len(data) - len(data) % self.format.bytes_per_sample
        self._carry = data[usable:]
        samples = self._to_float(data[:usable])
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (a few milliseconds); the decoder starts afresh."""
        self._carry = b""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._resampler.clear()
        return tail

    def _to_float(self, data: bytes) -> np.ndarray:
        if self.format.encoding == "pcm16":
            return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        codes = np.frombuffer(data, dtype=np.uint8)
        return _G711[self.format.encoding][codes]
