"""Limits of the live sessions of one process, read once from the environment
(``src.config.Environment``).

``LIVE_MAX_SESSIONS`` (4)
    live sessions open at once; one more is refused with an error event and closed.
``LIVE_MAX_SESSIONS_PER_CLIENT`` (half of ``LIVE_MAX_SESSIONS``, at least 1)
    live sessions one client may hold at once, so that a client that reconnects as fast as it
    is closed cannot take every place. A client is its address (an IPv6 one by its /64, the
    block one machine is usually given): the connection's peer, or the address a trusted proxy
    names in ``X-Forwarded-For`` (only with ``FORWARDED_ALLOW_IPS``: ``src/server/settings.py``).
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
    #: None: half of ``max_sessions`` (at least 1), so one client never holds every place
    max_sessions_per_client: int | None = None

    @property
    def per_client(self) -> int:
        """The sessions one client may hold at once."""
        if self.max_sessions_per_client is not None:
            return self.max_sessions_per_client
        return max(1, self.max_sessions // 2)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        return cls.of(Environment.read(env))

    @classmethod
    def of(cls, env: Environment) -> LiveSettings:
        return cls(
            max_sessions=env.live_max_sessions,
            idle_timeout=env.live_idle_timeout,
            max_buffer_seconds=env.live_max_buffer_seconds,
            max_sessions_per_client=env.live_max_sessions_per_client,
        )
