"""Limits of the live sessions of one process, read once from the environment
(``src.config.Environment``).

``LIVE_MAX_SESSIONS`` (4)
    live sessions open at once; one more is refused with an error event and closed.
``LIVE_IDLE_TIMEOUT`` (120)
    seconds without a client event before a session is closed.
``LIVE_MAX_BUFFER_SECONDS`` (300)
    audio a session may hold untranscribed (an uncommitted manual buffer, or turns waiting for
    their final decode); a chunk past it is refused with an error event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from src.config import Environment


@dataclass(frozen=True)
class LiveSettings:
    max_sessions: int = 4
    idle_timeout: float = 120.0
    max_buffer_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        return cls.of(Environment.read(env))

    @classmethod
    def of(cls, env: Environment) -> LiveSettings:
        return cls(
            max_sessions=env.live_max_sessions,
            idle_timeout=env.live_idle_timeout,
            max_buffer_seconds=env.live_max_buffer_seconds,
        )
