"""The HTTP mode's settings, read once from the environment at start-up.

RunPod's load-balancing endpoints set ``PORT`` (the application, default 80) and
``PORT_HEALTH`` (where ``/ping`` is asked, default: the same as ``PORT``). The rest are the
worker's own: the queue in front of the model, the idle unload, the optional key, the proxies
whose ``X-Forwarded-For`` is believed (none unless ``FORWARDED_ALLOW_IPS`` names them). Read through
``src.config.Environment``: a malformed value stops the server at start-up naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from src.config import Environment, Settings

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
    #: proxies whose ``X-Forwarded-For`` names the client (``*``: any); None: the header is
    #: never believed and the client is the connection's peer
    forwarded_allow_ips: str | None = None
    #: the worker's settings (model, download limits, ...), as the queue worker reads them
    worker: Settings = field(default_factory=Settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        return cls.of(Environment.read(env))

    @classmethod
    def of(cls, env: Environment) -> ServerSettings:
        return cls(
            host=env.host,
            port=env.port,
            port_health=env.port_health or env.port,
            max_queue=env.max_queue,
            model_idle_timeout=env.model_idle_timeout,
            api_key=env.api_key,
            forwarded_allow_ips=env.forwarded_allow_ips,
            worker=Settings.of(env),
        )
