"""The client's timing rules: retry backoff, poll intervals, and RunPod's execution policy.

Kept apart from the HTTP code so that each rule is a small value that tests can set, and so that
the numbers live in one place.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from whisper_client.errors import ConfigError

#: RunPod's bounds on ``policy`` (milliseconds), from its "Execution policies" documentation
MIN_EXECUTION_TIMEOUT_MS = 5_000
MIN_TTL_MS = 10_000
MAX_TTL_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a call that is safe to repeat is repeated.

    The delay before retry ``n`` (0-based) is "equal jitter": half of ``base * 2**n`` (capped at
    ``max_delay``) plus a random share of the other half. The fixed half guarantees that a
    rate-limited client really backs off; the random half spreads many clients (or many batch
    threads) apart so they do not retry in lock-step. A ``Retry-After`` header, when the server
    sends one, replaces the computed delay (still capped at ``max_delay``).
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("RetryPolicy.attempts: expected at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError("RetryPolicy delays: expected numbers >= 0")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True)
class PollPolicy:
    """Status-poll intervals: start short (a short clip is done in seconds), grow to a ceiling.

    Growth keeps a long job from costing thousands of status calls; the ceiling bounds how late
    the client notices that a job finished.
    """

    initial: float = 0.5
    factor: float = 1.5
    maximum: float = 5.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ConfigError("PollPolicy: expected 0 < initial <= maximum and factor >= 1")

    def intervals(self) -> Iterator[float]:
        interval = self.initial
        while True:
            yield interval
            interval = min(interval * self.factor, self.maximum)


@dataclass(frozen=True)
class ExecutionPolicy:
    """RunPod's per-job ``policy``: passed through as given, validated against RunPod's bounds.

    ``execution_timeout_ms``: the most the job may run (RunPod's default is 10 minutes, which a
    long recording on a slow GPU can exceed). ``ttl_ms``: the job's whole lifetime, queue
    included; after it the job, and its result, are gone (its status answers 404).
    """

    execution_timeout_ms: int | None = None
    ttl_ms: int | None = None
    low_priority: bool | None = None

    def __post_init__(self) -> None:
        t = self.execution_timeout_ms
        if t is not None and t <= MIN_EXECUTION_TIMEOUT_MS:
            raise ConfigError(
                f"executionTimeout: expected more than {MIN_EXECUTION_TIMEOUT_MS} ms, got {t}"
            )
        if self.ttl_ms is not None and not MIN_TTL_MS <= self.ttl_ms <= MAX_TTL_MS:
            raise ConfigError(
                f"ttl: expected {MIN_TTL_MS} ms to {MAX_TTL_MS} ms (one week), got {self.ttl_ms}"
            )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.execution_timeout_ms is not None:
            body["executionTimeout"] = self.execution_timeout_ms
        if self.ttl_ms is not None:
            body["ttl"] = self.ttl_ms
        if self.low_priority is not None:
            body["lowPriority"] = self.low_priority
        return body
