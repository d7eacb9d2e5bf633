"""What a loaded model can do: the one place that refuses a task or language it cannot serve.

An English-only model (``tiny.en``, ...) neither translates nor detects languages and only
transcribes English. The processor checks a job here before any download; the engines check
again before decoding, for callers that reach them directly.
"""

from __future__ import annotations

from src.engines.base import ModelInfo
from src.errors import UnsupportedOption


def check_capability(model: ModelInfo, task: str, language: str | None = None) -> None:
    """Raise ``UnsupportedOption`` naming the option when ``model`` cannot do ``task`` in
    ``language`` (``task`` is a job task: transcribe, translate or detect_language)."""
    if model.multilingual:
        return
    if task == "translate":
        raise UnsupportedOption(
            f"options.task: 'translate' needs a multilingual model; the loaded model "
            f"{model.model!r} is English-only (allowed: 'transcribe')"
        )
    if task == "detect_language":
        raise UnsupportedOption(
            f"options.task: 'detect_language' needs a multilingual model; the loaded model "
            f"{model.model!r} is English-only"
        )
    if language not in (None, "en"):
        raise UnsupportedOption(
            f"options.language: the loaded model {model.model!r} is English-only "
            "(allowed: 'en' or null)"
        )
