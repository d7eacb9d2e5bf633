"""Where the speech is: Silero VAD as bundled with faster-whisper, shared by both engines.

Why one module: faster-whisper runs this VAD internally; openai-whisper has none. Calling the
very same detector for openai-whisper means ``vad_filter`` keeps the same stretches of audio
whichever engine a worker runs, so results differ only by decoder.

Why not faster-whisper's ``get_speech_timestamps`` as it is: it scores a whole file with one
recurrent state carried from the first window to the last. Over speech with pauses that state
drifts: after one speaker's words and a pause, the next speaker's words score far lower than
the same words do at the start of a file (0.01-0.15 instead of 0.5-0.95, measured on the
benchmark's clips joined), so a whole sentence can fall under the threshold and never reach the
decoder. ``speech_probabilities`` scores the windows exactly as Silero does but starts the state
afresh once per stretch of silence (as the live path's ``StreamingVad`` does), and
``regions_from_probabilities`` applies Silero's own rules (faster-whisper's code, unchanged in
meaning) to those scores.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import VadOptions, get_vad_model

from src.engines.base import SAMPLE_RATE, VadParameters

#: samples per scored window at 16 kHz (32 ms), and the context Silero prepends to each
WINDOW = 512
CONTEXT = 64
#: a window under this score counts as silence ...
SILENCE_SCORE = 0.15
#: ... and after this much of it the recurrent state starts afresh (once per quiet stretch)
RESET_AFTER_SILENCE_S = 0.3
#: windows scored per ONNX call (the state is carried between calls)
_BLOCK = 64
_STATE_SHAPE = (1, 1, 128)


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
    probabilities: np.ndarray | None = None,
) -> list[tuple[float, float]]:
    """Speech regions of ``audio`` as sorted, non-overlapping ``(start, end)`` seconds.

    ``audio`` is mono float32 at 16 kHz (the worker's decoded array). Times are on the audio's
    own timeline, padded by ``vad.speech_pad_ms`` as faster-whisper pads them; a region longer
    than ``max_speech_duration_s`` is split at its longest inner pause. Raises
    ``ValueError`` for another sample rate, which the model would silently misjudge.
    ``probabilities`` are the audio's scores when already computed (``speech_probabilities``).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"Silero VAD needs {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {audio.shape}")
    if audio.size == 0:
        return []
    options = vad_options(vad, max_speech_duration_s)
    if probabilities is None:
        probabilities = speech_probabilities(audio)
    return [
        (start / sample_rate, end / sample_rate)
        for start, end in regions_from_probabilities(probabilities, options, audio.size)
    ]


def speech_probabilities(
    audio: np.ndarray, reset_after_silence_s: float | None = RESET_AFTER_SILENCE_S
) -> np.ndarray:
    """Silero's speech probability of each 512-sample window of ``audio`` (16 kHz mono), with
    the recurrent state started afresh after ``reset_after_silence_s`` of silence (None: never,
    which is faster-whisper's own scoring)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    count = -(-audio.size // WINDOW)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(count * WINDOW, dtype=np.float32)
    padded[: audio.size] = audio
    windows = padded.reshape(count, WINDOW)
    contexts = np.concatenate([np.zeros((1, CONTEXT), np.float32), windows[:-1, -CONTEXT:]])
    batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
    session = get_vad_model().session
    reset_after = (
        None
        if reset_after_silence_s is None
        else max(1, round(reset_after_silence_s * SAMPLE_RATE / WINDOW))
    )
    out = np.empty(count, dtype=np.float32)
    h = c = np.zeros(_STATE_SHAPE, dtype=np.float32)
    quiet, at = 0, 0
    while at < count:
        block = batch[at : at + _BLOCK]
        scores, h_next, c_next = session.run(None, {"input": block, "h": h, "c": c})
        scores = np.asarray(scores, dtype=np.float32).reshape(len(block))
        taken = len(block)
        if reset_after is not None:
            for k, score in enumerate(scores):
                quiet = quiet + 1 if score < SILENCE_SCORE else 0
                if quiet == reset_after:
                    taken = k + 1
                    quiet = reset_after + 1  # once per quiet stretch
                    break
        out[at : at + taken] = scores[:taken]
        if taken == len(block):
            h, c = h_next, c_next
        else:  # the state after window ``taken - 1`` is dropped: start afresh after it
            h = c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        at += taken
    return out


def regions_from_probabilities(
    probabilities: np.ndarray, options: VadOptions, num_samples: int
) -> list[tuple[int, int]]:
    """Speech regions, as (start, end) samples, from per-window speech probabilities.

    Silero's rules as faster-whisper's ``get_speech_timestamps`` applies them (the same
    thresholds, hysteresis, minimum silence, splitting at ``max_speech_duration_s`` and padding),
    on probabilities given rather than computed inside; with the probabilities of
    ``speech_probabilities(audio, None)`` both give the same regions (tests/test_vad.py).
    """
    threshold = options.threshold
    neg_threshold = options.neg_threshold
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    pad = SAMPLE_RATE * options.speech_pad_ms / 1000
    min_speech = SAMPLE_RATE * options.min_speech_duration_ms / 1000
    max_speech = SAMPLE_RATE * options.max_speech_duration_s - WINDOW - 2 * pad
    min_silence = SAMPLE_RATE * options.min_silence_duration_ms / 1000
    min_silence_at_max_speech = SAMPLE_RATE * 98 / 1000

    triggered = False
    speeches: list[list[int]] = []
    current: list[int] = []  # [start] or [start, end]
    temp_end = prev_end = next_start = 0
    for i, probability in enumerate(probabilities):
        at = WINDOW * i
        if probability >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if probability >= threshold and not triggered:
            triggered = True
            current = [at]
            continue
        if triggered and at - current[0] > max_speech:
            if prev_end:
                speeches.append([current[0], prev_end])
                if next_start < prev_end:
                    triggered = False
                    current = []
                else:
                    current = [next_start]
                prev_end = next_start = temp_end = 0
            else:
                speeches.append([current[0], at])
                current = []
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if probability < neg_threshold and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max_speech:
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            if temp_end - current[0] > min_speech:
                speeches.append([current[0], temp_end])
            current = []
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if current and num_samples - current[0] > min_speech:
        speeches.append([current[0], num_samples])

    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1][0] - speech[1]
            if silence < 2 * pad:
                speech[1] += int(silence // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - silence // 2))
            else:
                speech[1] = int(min(num_samples, speech[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            speech[1] = int(min(num_samples, speech[1] + pad))
    return [(start, end) for start, end in speeches]


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
