"""Where the speech is: Silero VAD as bundled with faster-whisper, shared by both engines.

Why one module: faster-whisper runs this VAD internally; openai-whisper has none. Calling the
very same detector for openai-whisper means ``vad_filter`` keeps the same stretches of audio
whichever engine a worker runs, so results differ only by decoder.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from src.engines.base import SAMPLE_RATE, VadParameters


def vad_options(vad: VadParameters, max_speech_duration_s: float = float("inf")) -> VadOptions:
    """Our VAD settings as faster-whisper's ``VadOptions`` (the one place they are mapped)."""
    return VadOptions(
        threshold=vad.threshold,
        min_silence_duration_ms=vad.min_silence_duration_ms,
        speech_pad_ms=vad.speech_pad_ms,
        max_speech_duration_s=max_speech_duration_s,
    )


def speech_regions(
    audio: np.ndarray,
    vad: VadParameters,
    sample_rate: int = SAMPLE_RATE,
    max_speech_duration_s: float = float("inf"),
) -> list[tuple[float, float]]:
    """Speech regions of ``audio`` as sorted, non-overlapping ``(start, end)`` seconds.

    ``audio`` is mono float32 at 16 kHz (the worker's decoded array). Times are on the audio's
    own timeline, padded by ``vad.speech_pad_ms`` as faster-whisper pads them; a region longer
    than ``max_speech_duration_s`` is split at its longest inner pause. Raises
    ``ValueError`` for another sample rate, which the model would silently misjudge.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"Silero VAD needs {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {audio.shape}")
    if audio.size == 0:
        return []
    options = vad_options(vad, max_speech_duration_s)
    chunks = get_speech_timestamps(
        np.ascontiguousarray(audio, dtype=np.float32), options, sampling_rate=sample_rate
    )
    return [(chunk["start"] / sample_rate, chunk["end"] / sample_rate) for chunk in chunks]


#: Whisper's window: a joined stretch of speech never spans more
WINDOW_SECONDS = 30.0


def join_regions(
    regions: list[tuple[float, float]], max_seconds: float = WINDOW_SECONDS
) -> list[tuple[float, float]]:
    """Speech regions joined, in order, while each joined stretch spans at most ``max_seconds``
    (pauses inside it kept, longer silences between stretches skipped); a region that is itself
    longer stays whole. The one rule both engines decode by: the
    batched chunks (``chunks.plan``) and openai-whisper's clips (``openai.decode_clips``)."""
    joined: list[tuple[float, float]] = []
    for start, end in regions:
        if end <= start:
            continue
        if joined and end - joined[-1][0] <= max_seconds + 1e-9:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined
