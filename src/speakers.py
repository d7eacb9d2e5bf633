"""Speaker labels for a transcript: the diarization encoder loaded once, turns attached to
segments and words.

The encoder is baked into the image (``builder/bake_diarizer.py`` writes
``$MODEL_DIR/diarization/resemblyzer-ge2e.npz``; ``DIARIZATION_MODEL`` names another file). A
worker built without it refuses ``"diarize": true`` with a clear message instead of failing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from src.diarization import SpeakerEncoder, diarize, label_segments, label_words, load_encoder
from src.diarization.pipeline import default_encoder_path
from src.engines.base import Transcript
from src.errors import UnsupportedOption

logger = logging.getLogger(__name__)


@functools.cache
def _encoder(path: Path) -> SpeakerEncoder:
    return load_encoder(path)


def speaker_encoder() -> SpeakerEncoder:
    """The process-wide encoder; ``UnsupportedOption`` when this worker has none."""
    path = default_encoder_path()
    if not path.is_file():
        raise UnsupportedOption(
            "options.diarize: this worker was built without the speaker model "
            f"(expected at {path}; bake it with builder/bake_diarizer.py)"
        )
    return _encoder(path)


def label_speakers(
    samples: np.ndarray,
    transcript: Transcript,
    *,
    num_speakers: int | None,
    max_speakers: int,
) -> Transcript:
    """``transcript`` with each segment and word labelled ``SPEAKER_00``, ``SPEAKER_01``, ..."""
    encoder = speaker_encoder()
    if num_speakers is not None:
        max_speakers = max(max_speakers, num_speakers)
    turns = diarize(samples, encoder, num_speakers=num_speakers, max_speakers=max_speakers)
    speakers = label_segments(transcript.segments, turns)
    segments = []
    for segment, speaker in zip(transcript.segments, speakers, strict=True):
        words = segment.words
        if words is not None:
            labels = label_words(words, turns)
            words = tuple(replace(w, speaker=s) for w, s in zip(words, labels, strict=True))
        segments.append(replace(segment, speaker=speaker, words=words))
    logger.info(
        "diarization: %d turns, %d speakers",
        len(turns),
        len({t.speaker for t in turns}),
    )
    return replace(transcript, segments=tuple(segments))
