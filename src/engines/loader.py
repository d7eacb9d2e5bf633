"""Pick the device, find the model and load the engine the settings name.

Each engine's module is imported only when chosen, so a faster-whisper worker never imports
torch (seconds of cold start and hundreds of MB of memory).
"""

from __future__ import annotations

import logging

from src.config import Settings
from src.engines.base import Engine
from src.models.locate import resolve_model

logger = logging.getLogger(__name__)


def pick_device(settings: Settings) -> str:
    """``cuda`` when asked for, or when ``auto`` and a CUDA device is visible; else ``cpu``."""
    if settings.device != "auto":
        return settings.device
    if settings.engine == "faster-whisper":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_engine(settings: Settings) -> Engine:
    """Load the configured model once; raises ``ModelError`` when it cannot be found or loaded."""
    device = pick_device(settings)
    resolved = resolve_model(settings.engine, settings.model, settings.model_dir)
    logger.info(
        "loading %s model %s from %s (%s) on %s",
        settings.engine,
        resolved.name,
        resolved.path,
        resolved.source,
        device,
    )
    if settings.engine == "faster-whisper":
        from src.engines.faster import FasterWhisperEngine

        return FasterWhisperEngine(
            resolved.path,
            model_name=resolved.name,
            device=device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
        )
    from src.engines.openai import OpenAIWhisperEngine

    return OpenAIWhisperEngine(
        resolved.path,
        model_name=resolved.name,
        device=device,
        compute_type=settings.compute_type,
        alignment_heads=list(resolved.alignment_heads) if resolved.alignment_heads else None,
    )
