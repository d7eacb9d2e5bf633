"""The HTTP mode's settings, read once from the environment at start-up.

RunPod's load-balancing endpoints set ``PORT`` (the application, default 80) and
``PORT_HEALTH`` (where ``/ping`` is asked, default: the same as ``PORT``). The rest are the
worker's own: the queue in front of the model, the idle unload, the optional key. A malformed
value stops the server at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from src.config import Settings

DEFAULT_PORT = 80
#: requests that may wait behind the one being decoded before new ones get a 503
DEFAULT_MAX_QUEUE = 16


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    #: where ``/ping`` is served; the main app serves it too when it equals ``port``
    port_health: int = DEFAULT_PORT
    max_queue: int = DEFAULT_MAX_QUEUE
    #: seconds without a request after which the model is unloaded (None: never)
    model_idle_timeout: float | None = None
    #: when set, every route but ``/ping`` needs ``Authorization: Bearer <api_key>``
    api_key: str | None = None
    #: the worker's settings (model, download limits, ...), as the queue worker reads them
    worker: Settings = field(default_factory=Settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if env is None else env
        port = _port(env, "PORT", DEFAULT_PORT)
        idle = _seconds(env, "MODEL_IDLE_TIMEOUT")
        return cls(
            host=env.get("HOST", "").strip() or "0.0.0.0",
            port=port,
            port_health=_port(env, "PORT_HEALTH", port),
            max_queue=_whole(env, "MAX_QUEUE", DEFAULT_MAX_QUEUE),
            model_idle_timeout=idle,
            api_key=env.get("API_KEY", "").strip() or None,
            worker=Settings.from_env(env),
        )


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r}: expected a whole number >= 0")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _whole(env, name, default)
    if not 0 < value < 65536:
        raise ValueError(f"{name}={value}: expected a port number from 1 to 65535")
    return value


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    """A positive number of seconds; unset, empty, ``0`` or ``off`` mean never."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "off", "none", "false"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds, or 0 for never") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={raw!r}: expected a number of seconds > 0, or 0 for never")
    return value
