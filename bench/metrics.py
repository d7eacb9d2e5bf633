"""Accuracy measures: pooled WER and coverage after Whisper's English text normaliser."""

from __future__ import annotations

import functools
import gc
import warnings
from collections.abc import Callable


@functools.cache
def normaliser() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    with warnings.catch_warnings():  # its constructor leaves a JSON file open
        warnings.simplefilter("ignore", ResourceWarning)
        normalise = EnglishTextNormalizer()
        gc.collect()
    return normalise


def scores(pairs: list[tuple[str, str]]) -> tuple[float | None, float | None]:
    """(WER, coverage) pooled over (reference, hypothesis) pairs with a non-empty reference.

    Coverage is the share of reference words found in the output (hits / reference words): a
    dropped segment lowers it, a hallucination does not.
    """
    import jiwer

    normalise = normaliser()
    refs, hyps = [], []
    for ref, hyp in pairs:
        ref_n = normalise(ref)
        if ref_n.strip():
            refs.append(ref_n)
            hyps.append(normalise(hyp))
    if not refs:
        return None, None
    out = jiwer.process_words(refs, hyps)
    words = out.hits + out.substitutions + out.deletions
    return float(out.wer), out.hits / words if words else None
