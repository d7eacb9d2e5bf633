"""``known_speaker_references[]``: data-URL clips decoded, checked and matched to a diarized
transcript's speakers (``src.diarization.known``)."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from src.audio.decode import decode_audio
from src.diarization.known import match_speakers, voiceprint
from src.engines.base import SAMPLE_RATE, Transcript
from src.errors import WorkerError
from src.server.errors import InvalidField
from src.speakers import speaker_encoder

logger = logging.getLogger(__name__)

PARAM = "known_speaker_references[]"
#: OpenAI's bounds on a reference clip (a little slack for codec padding)
MIN_SECONDS = 2.0
MAX_SECONDS = 10.0
_SLACK = 0.25


def reference_prints(known: tuple[tuple[str, str], ...]) -> dict[str, np.ndarray]:
    """Each name's voiceprint from its data-URL clip; ``InvalidField`` naming the clip's field
    when one cannot be read, is not 2-10 s long or holds too little speech."""
    encoder = speaker_encoder()
    prints: dict[str, np.ndarray] = {}
    for index, (name, url) in enumerate(known):
        where = f"{PARAM[:-2]}[{index}]"
        _, _, payload = url.partition(",")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidField(f"{where}: the data URL is not valid base64", param=PARAM) from None
        try:
            samples = decode_audio(raw, max_seconds=MAX_SECONDS + 5)
        except WorkerError:
            raise InvalidField(f"{where}: not audio ffmpeg can read", param=PARAM) from None
        seconds = len(samples) / SAMPLE_RATE
        if not MIN_SECONDS - _SLACK <= seconds <= MAX_SECONDS + _SLACK:
            raise InvalidField(
                f"{where}: {seconds:.1f} s of audio; a reference clip is 2 to 10 s long",
                param=PARAM,
            )
        vector = voiceprint(samples, encoder)
        if vector is None:
            raise InvalidField(f"{where}: no speech heard in the clip", param=PARAM)
        prints[name] = vector
    return prints


def name_speakers(path: Path, transcript: Transcript, prints: dict[str, np.ndarray]) -> Transcript:
    """``transcript`` with each speaker whose voice matches a reference renamed after it."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for segment in transcript.segments:
        if segment.speaker is not None and segment.end > segment.start:
            spans.setdefault(segment.speaker, []).append((segment.start, segment.end))
    if not spans or not prints:
        return transcript
    samples = decode_audio(path)
    named = match_speakers(samples, spans, prints, speaker_encoder())
    logger.info("known speakers: %d of %d speakers named", len(named), len(spans))
    if not named:
        return transcript
    segments = []
    for segment in transcript.segments:
        words = segment.words
        if words is not None:
            words = tuple(
                replace(w, speaker=named.get(w.speaker, w.speaker)) if w.speaker else w
                for w in words
            )
        speaker = named.get(segment.speaker, segment.speaker) if segment.speaker else None
        segments.append(replace(segment, speaker=speaker, words=words))
    return replace(transcript, segments=tuple(segments))
