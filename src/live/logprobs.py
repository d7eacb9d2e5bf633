"""Log probabilities in OpenAI's ``logprobs`` shape, from a transcript's words.

OpenAI's GPT transcription models return one entry per output token (``token``, ``logprob``,
``bytes``). The engines here keep no token ids; they keep each word's probability (the product
of its tokens' probabilities, faster-whisper's ``Word.probability``), so an entry here is one
word: ``token`` is the word as decoded (with its leading space), ``logprob`` the log of its
probability, ``bytes`` its UTF-8 bytes. A transcript decoded without word timings has no words:
each segment's text is then one entry with its ``avg_logprob``.
"""

from __future__ import annotations

import math
from typing import Any

from src.engines.base import Segment, Transcript
from src.live.events import TokenLogprob

#: the floor of a logprob (a probability of 0 would be -inf, which JSON cannot carry)
MIN_LOGPROB = -100.0


def _log(probability: float) -> float:
    return max(math.log(probability), MIN_LOGPROB) if probability > 0 else MIN_LOGPROB


def segment_logprobs(segment: Segment) -> tuple[TokenLogprob, ...]:
    if segment.words:
        return tuple(TokenLogprob(w.word, _log(w.probability)) for w in segment.words)
    if not segment.text.strip():
        return ()
    return (TokenLogprob(segment.text, max(segment.avg_logprob, MIN_LOGPROB)),)


def word_logprobs(transcript: Transcript) -> tuple[TokenLogprob, ...]:
    return tuple(item for segment in transcript.segments for item in segment_logprobs(segment))


def wire(items: tuple[TokenLogprob, ...] | None) -> list[dict[str, Any]] | None:
    """The entries as OpenAI's JSON (``token``, ``logprob``, ``bytes``)."""
    if items is None:
        return None
    return [
        {"token": i.token, "logprob": round(i.logprob, 6), "bytes": list(i.token.encode())}
        for i in items
    ]
