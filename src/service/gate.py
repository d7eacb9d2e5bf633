"""One model, many callers: who runs on it next.

A worker holds one model on one accelerator; two decodes at once only compete for the same
memory and compute. Every use of the model goes through a ``ModelGate``: a file decode holds it
for one step (until its next segment is final), a live session's decode for one short decode.

Who enters when the model comes free: a waiting live decode first (so a long file never freezes
a live session for longer than one step), then the waiting file step whose job arrived first
(``arrival()``, taken once per job). A job that is downloading, running ffmpeg or writing its
output is not waiting, so the model goes to the next job meanwhile: jobs overlap, and the
earliest job finishes first instead of all of them finishing late together.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

#: ``live`` (a live session's short decode) goes before ``file`` (a step of a file decode)
Priority = Literal["live", "file"]


class ModelGate:
    """A lock with two priorities; within each, the lowest rank (earliest arrival) first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._arrivals = itertools.count()
        self._tickets = itertools.count()
        self._waiting: dict[Priority, list[tuple[int, int]]] = {"live": [], "file": []}

    def arrival(self) -> int:
        """A job's rank: taken when it arrives, given to each of its ``hold`` calls."""
        return next(self._arrivals)

    @contextmanager
    def hold(self, priority: Priority = "file", rank: int | None = None) -> Iterator[None]:
        """Hold the model for the block; ``rank`` orders file steps (default: a new arrival)."""
        with self._cond:
            entry = (self.arrival() if rank is None else rank, next(self._tickets))
            heapq.heappush(self._waiting[priority], entry)
            self._cond.wait_for(lambda: self._may_enter(priority, entry))
            heapq.heappop(self._waiting[priority])
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _may_enter(self, priority: Priority, entry: tuple[int, int]) -> bool:
        if self._busy or self._waiting[priority][0] != entry:
            return False
        return priority == "live" or not self._waiting["live"]
