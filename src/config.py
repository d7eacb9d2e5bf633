"""Every setting of the worker, read once from the environment at start-up into one typed model.

``Environment`` (pydantic-settings) declares each variable of the README's configuration tables
with its type and bounds: one dialect everywhere (booleans ``true``/``false``, ``1``/``0``,
``yes``/``no``, ``on``/``off``; numbers as pydantic reads them), and a value it cannot read stops
start-up with a message that names the variable and what it accepts (``STREAM_SEGMENTS=ture``
is an error, not ``false``). Each part takes its own typed view of it: ``Settings`` (the model
service and the queue worker), ``ServerSettings`` (``src/server/settings.py``) and
``LiveSettings`` (``src/live/settings.py``), each with a ``from_env`` that reads through here.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from src.engines.base import EngineName

Device = Literal["auto", "cuda", "cpu"]
WorkerMode = Literal["queue", "http"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
DEVICES: tuple[str, ...] = get_args(Device)

#: the model used when ``WHISPER_MODEL`` is not set: multilingual, and installable offline
DEFAULT_MODEL = "base"
#: where models are looked for when ``MODEL_DIR`` is unset: the checkout's ``models/`` folder,
#: which ``scripts/setup.sh`` fills (the image sets ``MODEL_DIR=/models``, where its build bakes)
DEFAULT_MODEL_DIR = str(Path(__file__).resolve().parents[1] / "models")
#: jobs a worker holds at once (queue: RunPod's concurrency; HTTP: requests past admission)
DEFAULT_MAX_CONCURRENT_JOBS = 4
#: decoded audio the jobs in flight may hold together: 4 h (about 0.9 GB of float32 samples)
DEFAULT_MAX_BUFFERED_AUDIO_SECONDS = 4 * 3600.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: Any) -> Any:
    """The one spelling of booleans: ``1 true yes on`` / ``0 false no off``, any case."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("expected true or false (1/0, yes/no, on/off)")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _off_is_none(value: Any) -> Any:
    """``0``, ``off``, ``none`` or ``false`` for a number of seconds: never."""
    if isinstance(value, str) and value.strip().lower() in ("0", "off", "none", "false"):
        return None
    return value


def _proxies(value: str | None) -> str | None:
    """``FORWARDED_ALLOW_IPS``: ``*`` or addresses and networks, comma-separated."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address or network (expected '*' or addresses and "
                    "networks separated by commas)"
                ) from None
    return ",".join(items) or None


Bool = Annotated[bool, BeforeValidator(parse_bool)]
Whole = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0), AfterValidator(_finite)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Environment(BaseSettings):
    """The environment, as the worker reads it: one field per variable (its name in capitals)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, env_ignore_empty=True, extra="ignore", frozen=True
    )

    # the model service
    whisper_engine: Annotated[EngineName, BeforeValidator(_lower)] = "faster-whisper"
    whisper_model: str = DEFAULT_MODEL
    model_dir: str = DEFAULT_MODEL_DIR
    device: Annotated[Device, BeforeValidator(_lower)] = "auto"
    compute_type: str | None = None
    cpu_threads: Whole = 0
    warm_up: Bool = True
    max_audio_seconds: Positive = 4 * 3600.0
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=64)] = DEFAULT_MAX_CONCURRENT_JOBS
    max_buffered_audio_seconds: Positive = DEFAULT_MAX_BUFFERED_AUDIO_SECONDS
    # downloads and base64
    max_download_bytes: Whole = 1024 * 1024 * 1024
    download_connect_timeout: Positive = 10.0
    download_read_timeout: Positive = 30.0
    download_total_timeout: Positive = 900.0
    download_max_redirects: Whole = 5
    allow_private_urls: Bool = False
    # the queue worker
    worker_mode: Annotated[WorkerMode, BeforeValidator(_lower)] = "queue"
    stream_segments: Bool = False
    log_level: str = "INFO"
    # the HTTP mode
    host: str = "0.0.0.0"
    port: Port = 80
    port_health: Port | None = None
    max_queue: Whole = 16
    model_idle_timeout: Annotated[Positive | None, BeforeValidator(_off_is_none)] = None
    api_key: str | None = None
    forwarded_allow_ips: Annotated[str | None, AfterValidator(_proxies)] = None
    # live sessions
    live_max_sessions: Annotated[int, Field(ge=1)] = 4
    live_max_sessions_per_client: Annotated[int, Field(ge=1)] | None = None
    live_idle_timeout: Positive = 120.0
    live_max_buffer_seconds: Positive = 300.0
    # models: where they come from
    hf_hub_offline: Bool = False
    diarization_model: str | None = None
    whisper_worker_cache: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _strip(cls, data: Any) -> Any:
        """Spaces around a value are not part of it; an empty value is an unset one."""
        if isinstance(data, dict):
            stripped = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
            return {k: v for k, v in stripped.items() if v != ""}
        return data

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> Environment:
        """The environment (``os.environ`` unless ``env`` is given); ``ValueError`` naming each
        variable that cannot be read and what it accepts."""
        try:
            if env is None:
                return cls()
            known = {name.lower(): value for name, value in env.items()}
            return _Given.model_validate({k: v for k, v in known.items() if k in cls.model_fields})
        except ValidationError as e:
            raise ValueError(_explain(e, os.environ if env is None else env)) from None


class _Given(Environment):
    """The same model read from a given mapping only (tests, a subprocess's environment)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _explain(error: ValidationError, env: Mapping[str, str]) -> str:
    lines = []
    values = {name.lower(): value for name, value in env.items()}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        raw = values.get(field, "")
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{field.upper()}={raw.strip()!r}: {message}")
    return "; ".join(lines)


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
    """What the model service and the queue worker take from the environment."""

    engine: EngineName = "faster-whisper"
    model: str = DEFAULT_MODEL
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    device: Device = "auto"
    compute_type: str | None = None
    cpu_threads: int = 0
    download: DownloadLimits = DownloadLimits()
    max_audio_seconds: float = 4 * 3600.0
    warm_up: bool = True
    #: jobs taken at once (RunPod's ``concurrency_modifier``; the HTTP mode's places)
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    #: decoded audio the jobs in flight may hold together (``AudioBudget``)
    max_buffered_audio_seconds: float = DEFAULT_MAX_BUFFERED_AUDIO_SECONDS
    #: the streaming queue worker (``/stream``)
    stream_segments: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return cls.of(Environment.read(env))

    @classmethod
    def of(cls, env: Environment) -> Settings:
        download = DownloadLimits(
            max_bytes=env.max_download_bytes,
            connect_timeout=env.download_connect_timeout,
            read_timeout=env.download_read_timeout,
            max_redirects=env.download_max_redirects,
            allow_private=env.allow_private_urls,
            total_timeout=env.download_total_timeout,
        )
        return cls(
            engine=env.whisper_engine,
            model=env.whisper_model,
            model_dir=Path(env.model_dir),
            device=env.device,
            compute_type=env.compute_type,
            cpu_threads=env.cpu_threads,
            download=download,
            max_audio_seconds=env.max_audio_seconds,
            warm_up=env.warm_up,
            max_concurrent_jobs=env.max_concurrent_jobs,
            max_buffered_audio_seconds=env.max_buffered_audio_seconds,
            stream_segments=env.stream_segments,
        )
