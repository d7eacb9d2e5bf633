"""Worker settings, read once from the environment at start-up.

Every variable is documented in the README's "Configuration" table. A malformed value stops the
worker at start-up with a message naming the variable, rather than failing the first job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, get_args

from src.engines.base import EngineName

Device = Literal["auto", "cuda", "cpu"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
DEVICES: tuple[str, ...] = get_args(Device)
T = TypeVar("T", int, float)

#: the model used when ``WHISPER_MODEL`` is not set: multilingual, and installable offline
DEFAULT_MODEL = "base"
#: where models are looked for when ``MODEL_DIR`` is unset: the checkout's ``models/`` folder,
#: which ``scripts/setup.sh`` fills (the image sets ``MODEL_DIR=/models``, where its build bakes)
DEFAULT_MODEL_DIR = str(Path(__file__).resolve().parents[1] / "models")


@dataclass(frozen=True)
class DownloadLimits:
    """Limits on fetching audio from a URL or accepting it as base64."""

    max_bytes: int = 1024 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_redirects: int = 5
    allow_private: bool = False
    #: overall wall-clock limit of one download, redirects included: per-read timeouts alone
    #: let a server that drips a byte now and then hold a worker for hours
    total_timeout: float = 900.0


@dataclass(frozen=True)
class Settings:
    engine: EngineName = "faster-whisper"
    model: str = DEFAULT_MODEL
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    device: Device = "auto"
    compute_type: str | None = None
    cpu_threads: int = 0
    download: DownloadLimits = DownloadLimits()
    max_audio_seconds: float = 4 * 3600.0
    warm_up: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        engine = env.get("WHISPER_ENGINE", "faster-whisper").strip().lower()
        if engine not in ENGINE_NAMES:
            raise ValueError(
                f"WHISPER_ENGINE={engine!r}: expected one of {', '.join(ENGINE_NAMES)}"
            )
        device = env.get("DEVICE", "auto").strip().lower()
        if device not in DEVICES:
            raise ValueError(f"DEVICE={device!r}: expected one of {', '.join(DEVICES)}")
        download = DownloadLimits(
            max_bytes=_int(env, "MAX_DOWNLOAD_BYTES", DownloadLimits.max_bytes),
            connect_timeout=_float(env, "DOWNLOAD_CONNECT_TIMEOUT", DownloadLimits.connect_timeout),
            read_timeout=_float(env, "DOWNLOAD_READ_TIMEOUT", DownloadLimits.read_timeout),
            max_redirects=_int(env, "DOWNLOAD_MAX_REDIRECTS", DownloadLimits.max_redirects),
            allow_private=_bool(env, "ALLOW_PRIVATE_URLS", False),
            total_timeout=_float(env, "DOWNLOAD_TOTAL_TIMEOUT", DownloadLimits.total_timeout),
        )
        return cls(
            engine=engine,  # type: ignore[arg-type]
            model=env.get("WHISPER_MODEL", "").strip() or DEFAULT_MODEL,
            model_dir=Path(env.get("MODEL_DIR", "").strip() or DEFAULT_MODEL_DIR),
            device=device,  # type: ignore[arg-type]
            compute_type=env.get("COMPUTE_TYPE", "").strip() or None,
            cpu_threads=_int(env, "CPU_THREADS", 0),
            download=download,
            max_audio_seconds=_float(env, "MAX_AUDIO_SECONDS", cls.max_audio_seconds),
            warm_up=_bool(env, "WARM_UP", True),
        )


def _number(env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T]) -> T:
    """A number from the environment, ``default`` when unset: ints >= 0, floats > 0 and finite."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    expected = "a whole number >= 0" if kind is int else "a number > 0"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {expected}") from None
    if value < 0 or (kind is float and not 0 < value < math.inf):
        raise ValueError(f"{name}={raw!r}: expected {expected}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: expected true or false")
