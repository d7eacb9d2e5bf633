"""Who spoke when: speech regions -> 1.6 s windows -> GE2E d-vectors -> clusters -> speaker turns.

The steps, and why each is shaped so:

1. **Speech regions** from the shared Silero VAD (``src.engines.vad``) with a short minimum
   silence (0.3 s) and little padding, so that a pause between two speakers splits regions; the
   transcription's own VAD settings (1 s silence, 0.4 s pad) would glue turns together.
2. **Volume** raised to Resemblyzer's -30 dBFS, measured on speech only: the encoder reads a
   power (not log) mel spectrogram and was trained on normalised audio.
3. **Windows** of 160 frames (1.6 s, what GE2E was trained to embed) every ``step_s`` inside each
   region; a region shorter than 1.6 s but at least ``MIN_WINDOW_S`` long is one shorter window
   (the LSTM reads any length), shorter ones get no window and take the label of the nearest.
   The step grows for long audio so no more than ``MAX_WINDOWS`` are embedded: the encoder's
   cost is linear and the clustering's memory quadratic in that number.
4. **Clusters** by average linkage on cosine distance (``src.diarization.cluster``), of the
   full 1.6 s windows only; shorter windows give noisier d-vectors (JFK's 11 s speech, phrases
   between pauses, came out as two speakers) and join the nearest cluster afterwards.
5. **Turns**: every 0.1 s of speech takes the speaker whose centroid the windows covering it
   resemble most on average, which places a change of speaker inside a region better than any
   single window's label would; runs of one speaker become ``SpeakerTurn``s.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.diarization.cluster import DEFAULT_THRESHOLD, cluster_speakers
from src.diarization.encoder import (
    HIDDEN_SIZE,
    HOP_LENGTH,
    SAMPLE_RATE,
    TARGET_DBFS,
    WINDOW_FRAMES,
    SpeakerEncoder,
    mel_frames,
)
from src.engines.base import VadParameters

logger = logging.getLogger(__name__)

#: the converted weights, baked into the image by ``builder/bake_diarizer.py``
ENCODER_FILE = "resemblyzer-ge2e.npz"
#: VAD for diarization: split at pauses of 0.3 s, pad speech by 30 ms only
DIARIZATION_VAD = VadParameters(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=30)
DEFAULT_STEP_S = 0.4
MIN_WINDOW_S = 0.4
MAX_WINDOWS = 3000
#: resolution of the speaker decision along the timeline
CELL_S = 0.1
FRAMES_PER_S = SAMPLE_RATE // HOP_LENGTH


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch of speech by one speaker, in seconds on the audio's timeline."""

    start: float
    end: float
    speaker: str


def speaker_name(index: int) -> str:
    """``SPEAKER_00``, ``SPEAKER_01``, ...: the names pyannote and WhisperX give, by first turn."""
    return f"SPEAKER_{index:02d}"


def default_encoder_path(env: dict[str, str] | None = None) -> Path:
    """``$DIARIZATION_MODEL`` if set, else ``$MODEL_DIR/diarization/resemblyzer-ge2e.npz``."""
    env = dict(os.environ) if env is None else env
    if env.get("DIARIZATION_MODEL"):
        return Path(env["DIARIZATION_MODEL"])
    from src.config import DEFAULT_MODEL_DIR  # here: the image's bake step has no src/config.py

    model_dir = env.get("MODEL_DIR", "").strip() or DEFAULT_MODEL_DIR
    return Path(model_dir) / "diarization" / ENCODER_FILE


def _speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    from src.engines.vad import speech_regions  # onnxruntime; only needed when not given regions

    return speech_regions(audio, DIARIZATION_VAD)


def _speech_gain(audio: np.ndarray, regions: list[tuple[int, int]]) -> float:
    """Factor raising the speech to ``TARGET_DBFS`` RMS; 1.0 when it is already louder."""
    speech = [audio[a * HOP_LENGTH : b * HOP_LENGTH] for a, b in regions]
    samples = np.concatenate(speech) if speech else audio
    if samples.size == 0:
        return 1.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0.0:
        return 1.0
    return max(1.0, float(10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20)))


def _windows(regions: list[tuple[int, int]], step: int, min_frames: int) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for start, stop in regions:
        length = stop - start
        if length < min_frames:
            continue
        if length <= WINDOW_FRAMES:
            windows.append((start, stop))
            continue
        last = stop - WINDOW_FRAMES
        starts = list(range(start, last + 1, step))
        if starts[-1] != last:
            starts.append(last)
        windows.extend((s, s + WINDOW_FRAMES) for s in starts)
    return windows


@dataclass(frozen=True)
class SpeechEmbeddings:
    """The d-vectors of one recording's speech windows, before any clustering.

    Kept apart from the clustering so that other speaker counts or thresholds can be tried on
    the same recording without running the encoder again (``bench/diarization_eval.py``).
    ``regions`` and ``windows`` are ``[start, stop)`` in 10 ms frames.
    """

    regions: tuple[tuple[int, int], ...]
    windows: tuple[tuple[int, int], ...]
    embeddings: np.ndarray  # (len(windows), 256), unit rows


def embed_speech(
    audio: np.ndarray,
    encoder: SpeakerEncoder,
    *,
    speech: list[tuple[float, float]] | None = None,
    step_s: float = DEFAULT_STEP_S,
) -> SpeechEmbeddings:
    """Steps 1-3 of the module docstring: speech regions, volume, windows, d-vectors.

    ``speech`` gives the speech regions in seconds (else the Silero VAD finds them).
    """
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {audio.shape}")
    audio = np.asarray(audio, dtype=np.float32)
    n_frames = 1 + audio.size // HOP_LENGTH
    seconds = _speech_regions(audio) if speech is None else speech
    regions = [
        (max(0, round(a * FRAMES_PER_S)), min(n_frames, round(b * FRAMES_PER_S)))
        for a, b in sorted(seconds)
    ]
    regions = [(a, b) for a, b in regions if b > a]
    speech_frames = sum(b - a for a, b in regions)
    step = max(round(step_s * FRAMES_PER_S), -(-speech_frames // MAX_WINDOWS), 1)
    windows = _windows(regions, step, round(MIN_WINDOW_S * FRAMES_PER_S))
    if windows:
        mels = mel_frames(audio * np.float32(_speech_gain(audio, regions)))
        embeddings = encoder.embed_windows(mels, windows)
    else:
        embeddings = np.zeros((0, HIDDEN_SIZE), dtype=np.float32)
    return SpeechEmbeddings(tuple(regions), tuple(windows), embeddings)


def cluster_turns(
    speech: SpeechEmbeddings,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[SpeakerTurn]:
    """Steps 4-5: cluster the windows into speakers and read turns off the timeline."""
    if not speech.windows:
        return []
    full = np.array([stop - start == WINDOW_FRAMES for start, stop in speech.windows])
    if not full.any():  # only short regions: cluster what there is
        full[:] = True
    labels = np.zeros(len(speech.windows), dtype=np.int64)
    labels[full] = cluster_speakers(
        speech.embeddings[full],
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        threshold=threshold,
    )
    if not full.all():
        # windows shorter than 1.6 s are noisier d-vectors: they join the nearest speaker
        # instead of founding one (a lone short phrase became a second speaker of one voice)
        centroids = _centroids(speech.embeddings[full], labels[full])
        labels[~full] = np.argmax(speech.embeddings[~full] @ centroids.T, axis=1)
    return _turns(list(speech.regions), list(speech.windows), speech.embeddings, labels)


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = int(labels.max()) + 1
    centroids = np.stack([embeddings[labels == j].mean(axis=0) for j in range(k)])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.asarray(centroids / np.maximum(norms, 1e-12))


def diarize(
    audio: np.ndarray,
    encoder: SpeakerEncoder,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    speech: list[tuple[float, float]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    step_s: float = DEFAULT_STEP_S,
) -> list[SpeakerTurn]:
    """Speaker turns of ``audio`` (16 kHz mono float32), sorted and non-overlapping.

    ``num_speakers`` fixes the count; otherwise it is found with ``threshold`` and kept within
    ``[min_speakers, max_speakers]``. ``speech`` gives the speech regions in seconds (else the
    Silero VAD finds them). Audio without speech gives no turns. Raises ``ValueError`` for a
    non-1-D array or impossible speaker bounds (checked before any work).
    """
    if min_speakers < 1 or max_speakers < min_speakers:
        raise ValueError(
            f"need 1 <= min_speakers <= max_speakers, got {min_speakers}, {max_speakers}"
        )
    if num_speakers is not None and num_speakers < 1:
        raise ValueError(f"num_speakers must be at least 1, got {num_speakers}")
    began = time.monotonic()
    embedded = embed_speech(audio, encoder, speech=speech, step_s=step_s)
    turns = cluster_turns(
        embedded,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        threshold=threshold,
    )
    logger.info(
        "diarized %.1f s of speech: %d windows, %d speakers, %d turns in %.2f s",
        sum(b - a for a, b in embedded.regions) / FRAMES_PER_S,
        len(embedded.windows),
        len({t.speaker for t in turns}),
        len(turns),
        time.monotonic() - began,
    )
    return turns


def _turns(
    regions: list[tuple[int, int]],
    windows: list[tuple[int, int]],
    embeddings: np.ndarray,
    labels: np.ndarray,
) -> list[SpeakerTurn]:
    scores = embeddings @ _centroids(embeddings, labels).T  # (windows, speakers)
    starts = np.array([w[0] for w in windows])
    stops = np.array([w[1] for w in windows])
    centres = (starts + stops) / 2
    cell = round(CELL_S * FRAMES_PER_S)
    turns: list[SpeakerTurn] = []
    for region_start, region_stop in regions:
        bounds = [*range(region_start, region_stop, cell), region_stop]
        speakers: list[int] = []
        for a, b in itertools.pairwise(bounds):
            mid = (a + b) / 2
            covering = (starts <= mid) & (mid < stops)
            if covering.any():
                speakers.append(int(np.argmax(scores[covering].mean(axis=0))))
            else:  # a region too short for a window of its own
                speakers.append(int(labels[int(np.argmin(np.abs(centres - mid)))]))
        run_start = 0
        for i in range(1, len(speakers) + 1):
            if i == len(speakers) or speakers[i] != speakers[run_start]:
                turns.append(
                    SpeakerTurn(
                        bounds[run_start] / FRAMES_PER_S,
                        bounds[i] / FRAMES_PER_S,
                        speaker_name(speakers[run_start]),
                    )
                )
                run_start = i
    return _renumber(turns)


def _renumber(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Name speakers by order of first turn, so SPEAKER_00 always speaks first."""
    order: dict[str, str] = {}
    for turn in turns:
        order.setdefault(turn.speaker, speaker_name(len(order)))
    return [SpeakerTurn(t.start, t.end, order[t.speaker]) for t in turns]
