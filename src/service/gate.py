"""One model, many callers: who runs on it next.

A worker holds one model on one accelerator; two decodes at once only compete for the same
memory and compute. Every use of the model goes through a ``ModelGate``: a file decode holds it
for one step (until its next segment is final), a live session's decode for one short decode.
Between two steps of a file, a waiting live decode goes first, so a long file never freezes a
live session for longer than one step; callers of the same kind go in arrival order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

#: ``live`` (a live session's short decode) goes before ``file`` (a step of a file decode)
Priority = Literal["live", "file"]


class ModelGate:
    """A lock with two priorities, each served first come, first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._tickets = {"live": 0, "file": 0}
        self._serving = {"live": 0, "file": 0}

    @contextmanager
    def hold(self, priority: Priority = "file") -> Iterator[None]:
        with self._cond:
            ticket = self._tickets[priority]
            self._tickets[priority] += 1
            self._cond.wait_for(lambda: self._may_enter(priority, ticket))
            self._busy = True
            self._serving[priority] += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _may_enter(self, priority: Priority, ticket: int) -> bool:
        if self._busy or self._serving[priority] != ticket:
            return False
        live_waiting = self._tickets["live"] > self._serving["live"]
        return priority == "live" or not live_waiting
