"""Known speakers: a diarized transcript's anonymous speakers named after enrolled voices.

OpenAI's ``known_speaker_names[]`` / ``known_speaker_references[]``: a short clip (2 to 10 s)
of each person who may speak. Each clip becomes a voiceprint, the mean GE2E d-vector of its
speech windows (``pipeline.embed_speech``); each speaker the clustering found gets one from the
audio of the segments labelled with it. A speaker takes a clip's name when the two voiceprints
are as close as two windows the clustering would join (cosine similarity at least
``1 - DEFAULT_THRESHOLD``), best pairs first, each name and each speaker at most once; a
speaker matching no clip keeps its anonymous label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from src.diarization.cluster import DEFAULT_THRESHOLD
from src.diarization.encoder import SpeakerEncoder
from src.diarization.pipeline import embed_speech

#: the least cosine similarity at which a speaker takes an enrolled name
MATCH_SIMILARITY = 1.0 - DEFAULT_THRESHOLD


def voiceprint(
    audio: np.ndarray,
    encoder: SpeakerEncoder,
    speech: list[tuple[float, float]] | None = None,
) -> np.ndarray | None:
    """The unit mean d-vector of ``audio``'s speech (``speech``: regions in seconds, else the
    VAD's); None when it holds no window long enough to embed."""
    embedded = embed_speech(audio, encoder, speech=speech)
    if embedded.embeddings.shape[0] == 0:
        return None
    mean = embedded.embeddings.mean(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12))


def match_speakers(
    audio: np.ndarray,
    spans: Mapping[str, Sequence[tuple[float, float]]],
    references: Mapping[str, np.ndarray],
    encoder: SpeakerEncoder,
    *,
    min_similarity: float = MATCH_SIMILARITY,
) -> dict[str, str]:
    """``{speaker label: enrolled name}`` for the speakers (their ``spans`` in seconds) whose
    voice matches a reference voiceprint."""
    prints = {
        label: vector
        for label, regions in spans.items()
        if regions and (vector := voiceprint(audio, encoder, list(regions))) is not None
    }
    pairs = sorted(
        (
            (float(vector @ reference), label, name)
            for label, vector in prints.items()
            for name, reference in references.items()
        ),
        reverse=True,
    )
    named: dict[str, str] = {}
    for similarity, label, name in pairs:
        if similarity < min_similarity:
            break
        if label not in named and name not in named.values():
            named[label] = name
    return named
