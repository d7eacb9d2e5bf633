"""Speaker diarization without torch: Resemblyzer's GE2E encoder in numpy, clustered by speaker.

Use::

    encoder = load_encoder()                      # once per worker; ~6 MB of float32 weights
    turns = diarize(audio, encoder, num_speakers=None, min_speakers=1, max_speakers=8)
    speakers = label_segments(transcript.segments, turns)   # "SPEAKER_00", ... or None

Modules: ``convert`` (Resemblyzer's ``pretrained.pt`` -> ``.npz``, build time), ``encoder``
(mel front end and LSTM), ``cluster`` (average-linkage clustering), ``pipeline`` (VAD, windows,
turns), ``assign`` (labels for segments and words).
"""

from __future__ import annotations

from pathlib import Path

from src.diarization.assign import label_segments, label_span, label_words
from src.diarization.encoder import SpeakerEncoder
from src.diarization.pipeline import SpeakerTurn, default_encoder_path, diarize


def load_encoder(path: Path | None = None) -> SpeakerEncoder:
    """The baked encoder, from ``default_encoder_path()`` unless ``path``.

    Raises ``OSError`` when the file is absent (the image was built without it).
    """
    return SpeakerEncoder.load(default_encoder_path() if path is None else path)


__all__ = [
    "SpeakerEncoder",
    "SpeakerTurn",
    "default_encoder_path",
    "diarize",
    "label_segments",
    "label_span",
    "label_words",
    "load_encoder",
]
