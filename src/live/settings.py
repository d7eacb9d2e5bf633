"""Limits of the live sessions of one process, read once from the environment.

``LIVE_MAX_SESSIONS`` (4)
    live sessions open at once; one more is refused with an error event and closed.
``LIVE_IDLE_TIMEOUT`` (120)
    seconds without a client event before a session is closed.
``LIVE_MAX_BUFFER_SECONDS`` (300)
    audio a session may hold untranscribed (an uncommitted manual buffer, or turns waiting for
    their final decode); a chunk past it is refused with an error event.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveSettings:
    max_sessions: int = 4
    idle_timeout: float = 120.0
    max_buffer_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        env = os.environ if env is None else env
        return cls(
            max_sessions=int(_positive(env, "LIVE_MAX_SESSIONS", cls.max_sessions, whole=True)),
            idle_timeout=_positive(env, "LIVE_IDLE_TIMEOUT", cls.idle_timeout),
            max_buffer_seconds=_positive(env, "LIVE_MAX_BUFFER_SECONDS", cls.max_buffer_seconds),
        )


def _positive(env: Mapping[str, str], name: str, default: float, *, whole: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    expected = "a whole number > 0" if whole else "a number > 0"
    try:
        value = float(int(raw)) if whole else float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {expected}") from None
    if not 0 < value < math.inf:
        raise ValueError(f"{name}={raw!r}: expected {expected}")
    return value
