"""Whether a chunk's batched result can be trusted, or must be decoded again sequentially.

Batched decoding has no temperature fallback, and on some audio it comes back with repetitive
or improbable text, an empty window, or another language. ``suspicious`` names the reason; the
caller then decodes that chunk again with the sequential decoder and the job's whole option set.
``is_silence`` is the sequential decoder's own rule for a window the model calls silence.
"""

from __future__ import annotations

import statistics
import unicodedata

from src.engines.base import DecodeOptions, Segment
from src.engines.chunks import Chunk

#: a chunk holding at least this much speech must not come back empty
MIN_SPEECH_FOR_TEXT_S = 1.0
#: a chunk with fewer words per speech second than this share of the file's median is re-decoded
SPARSE_SHARE = 0.35
#: the median is only trusted over this many chunks with text
MIN_CHUNKS_FOR_MEDIAN = 3
#: languages written in the Latin script: their text must be mostly Latin letters
_LATIN = "en de fr es pt it nl sv da no nn fi et lv lt pl cs sk sl hr bs hu ro ca gl eu tr az uz"
LATIN_LANGUAGES = frozenset((*_LATIN.split(), "id", "ms", "tl", "vi", "sw", "af", "is", "cy"))


def word_count(segments: list[Segment]) -> int:
    return sum(len(s.text.split()) for s in segments)


def _foreign_script(text: str, language: str) -> bool:
    """True when a Latin-script language comes back mostly in another script (a switch)."""
    if language not in LATIN_LANGUAGES:
        return False
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return latin < 0.5 * len(letters)


def suspicious(
    chunk: Chunk,
    segments: list[Segment],
    options: DecodeOptions,
    language: str,
    median_wps: float | None,
) -> str | None:
    """Why this chunk's batched result should be decoded again, or None when it looks right."""
    words = word_count(segments)
    if words == 0:
        return "empty" if chunk.speech >= MIN_SPEECH_FOR_TEXT_S else None
    threshold = options.compression_ratio_threshold
    if threshold is not None and any(s.compression_ratio > threshold for s in segments):
        return "repetitive"
    if options.log_prob_threshold is not None and any(
        s.avg_logprob < options.log_prob_threshold for s in segments
    ):
        return "improbable"
    if _foreign_script("".join(s.text for s in segments), language):
        return "language switch"
    sparse = median_wps is not None and words / chunk.speech < SPARSE_SHARE * median_wps
    if sparse and chunk.speech >= MIN_SPEECH_FOR_TEXT_S:
        return "sparse"
    return None


def is_silence(segments: list[Segment], options: DecodeOptions) -> bool:
    """The sequential decoder's rule: skip a window the model calls silence and cannot read."""
    if not segments:
        return False
    return options.calls_silence(segments[0].no_speech_prob, segments[0].avg_logprob)


def median_words_per_second(chunks: list[Chunk], texts: list[list[Segment]]) -> float | None:
    """The file's median reading rate over its chunks with text and speech, when there are
    enough of them to trust it."""
    rates = [
        word_count(segments) / chunk.speech
        for chunk, segments in zip(chunks, texts, strict=True)
        if segments and chunk.speech >= MIN_SPEECH_FOR_TEXT_S
    ]
    return statistics.median(rates) if len(rates) >= MIN_CHUNKS_FOR_MEDIAN else None
