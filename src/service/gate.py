"""One model, many callers: who runs on it next.

A worker holds one model on one accelerator; two decodes at once only compete for the same
memory and compute. Every use of the model goes through a ``ModelGate``: a file decode holds it
for one step (until its next segment is final), a live session's decode for one short decode.

Who enters when the model comes free: a waiting live decode first (so a long file never freezes
a live session for longer than one step), then the waiting file step whose job arrived first
(``arrival()``, taken once per job). A job that is downloading, running ffmpeg or writing its
output is not waiting, so the model goes to the next job meanwhile: jobs overlap, and the
earliest job finishes first instead of all of them finishing late together.

Inside a step the engine marks what does not need the model and where a step may be cut
(``src/engines/sharing.py``): the whole file's VAD runs with the gate free, and between the
phases of a batched pass (encode, beam search, word alignment), two coverage re-decodes or
before a chunk's sequential re-decode a waiting live decode goes first. So a live decode waits
for one phase of the file's decode at most, not for a whole step (which, before the first
segment of a long file is final, is several passes).

With ``live_beside_files`` (faster-whisper on a CPU: ``processor.live_beside_files``) a live
decode does not wait for a file step at all: it runs beside it, sharing the cores, and a file
step waits for the live decode under way (and those waiting) before it starts. Live decodes
still go one at a time, and so do file steps. Measured with four live sessions and a long file
on the 2-core CPU, a live decode waited 0.53 s (median; p90 2.7 s) with whole steps, 0.31 s
(p90 1.7 s) cut at phases and 0.18 s beside, where nearly every wait is for another session's
decode (bench/README.md, "Live while a long file is transcribed").

``live_waits`` keeps how long the last live decodes waited and behind which holds (their
labels and seconds); each is also logged at DEBUG.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from src.engines import sharing

logger = logging.getLogger(__name__)

#: ``live`` (a live session's short decode) goes before ``file`` (a step of a file decode)
Priority = Literal["live", "file"]

#: live waits kept in ``ModelGate.live_waits``
KEPT_WAITS = 1000


@dataclass(frozen=True)
class LiveWait:
    """One live decode's wait for the model: seconds from asking to entering, and the holds
    that ended meanwhile (label, seconds each held the model)."""

    waited: float
    behind: tuple[tuple[str, float], ...]


class ModelGate:
    """A lock with two priorities; within each, the lowest rank (earliest arrival) first."""

    def __init__(self, *, live_beside_files: bool = False) -> None:
        self._cond = threading.Condition()
        #: who holds the model now: at most one of each (one in all unless ``live_beside_files``)
        self._busy: dict[Priority, bool] = {"live": False, "file": False}
        #: a live decode need not wait for a file step: it runs beside it (see the module's
        #: docstring); live decodes still go one at a time, and so do file steps
        self.live_beside_files = live_beside_files
        self._arrivals = itertools.count()
        self._tickets = itertools.count()
        self._waiting: dict[Priority, list[tuple[int, int]]] = {"live": [], "file": []}
        #: the holds each waiting live decode has waited behind so far, by its ticket
        self._behind: dict[int, list[tuple[str, float]]] = {}
        self.live_waits: deque[LiveWait] = deque(maxlen=KEPT_WAITS)

    def arrival(self) -> int:
        """A job's rank: taken when it arrives, given to each of its ``hold`` calls."""
        return next(self._arrivals)

    @contextmanager
    def hold(
        self, priority: Priority = "file", rank: int | None = None, label: str = "file step"
    ) -> Iterator[None]:
        """Hold the model for the block; ``rank`` orders file steps (default: a new arrival).
        ``label`` names the hold in the live waits it causes."""
        with self._cond:
            entry = (self.arrival() if rank is None else rank, next(self._tickets))
        held = _Held(self, priority, entry, label)
        held.acquire()
        try:
            with sharing.turn(held):
                yield
        finally:
            held.release()

    def _acquire(self, priority: Priority, entry: tuple[int, int]) -> None:
        wait: LiveWait | None = None
        with self._cond:
            asked = time.perf_counter()
            heapq.heappush(self._waiting[priority], entry)
            if priority == "live":
                self._behind[entry[1]] = []
            self._cond.wait_for(lambda: self._may_enter(priority, entry))
            heapq.heappop(self._waiting[priority])
            self._busy[priority] = True
            if priority == "live":
                wait = LiveWait(time.perf_counter() - asked, tuple(self._behind.pop(entry[1])))
                self.live_waits.append(wait)
        if wait is not None and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "model gate: a live decode waited %.3f s behind %s",
                wait.waited,
                ", ".join(f"{label} {seconds:.2f} s" for label, seconds in wait.behind) or "-",
            )

    def _release(self, priority: Priority, label: str, seconds: float) -> None:
        with self._cond:
            self._busy[priority] = False
            for behind in self._behind.values():
                behind.append((label, round(seconds, 3)))
            self._cond.notify_all()

    def _wanted(self, priority: Priority, entry: tuple[int, int]) -> bool:
        """Whether a decode that would enter before this holder is waiting: any live decode for
        a file step, or a step of a job that arrived earlier."""
        if priority == "live":
            return False
        with self._cond:
            if self._waiting["live"] and not self.live_beside_files:
                return True
            waiting = self._waiting["file"]
            return bool(waiting) and waiting[0] < entry

    def _may_enter(self, priority: Priority, entry: tuple[int, int]) -> bool:
        if self._waiting[priority][0] != entry or self._busy[priority]:
            return False
        if priority == "live":
            return self.live_beside_files or not self._busy["file"]
        return not self._busy["live"] and not self._waiting["live"]


class _Held:
    """One ``hold`` of the gate as the engine sees it (``sharing.ModelTurn``): it can step
    aside for a decode that goes first, or free the model for a block, and take it back with
    its own place in line (its priority, rank and ticket)."""

    def __init__(
        self, gate: ModelGate, priority: Priority, entry: tuple[int, int], label: str
    ) -> None:
        self._gate = gate
        self._priority = priority
        self._entry = entry
        self._label = label
        self._since = 0.0

    def acquire(self) -> None:
        self._gate._acquire(self._priority, self._entry)
        self._since = time.perf_counter()

    def release(self) -> None:
        self._gate._release(self._priority, self._label, time.perf_counter() - self._since)

    def wanted(self) -> bool:
        return self._gate._wanted(self._priority, self._entry)

    def let_in(self) -> None:
        if self.wanted():
            self.release()
            self.acquire()

    @contextmanager
    def released(self) -> Iterator[None]:
        if self._priority == "live":  # a live decode is short: giving the model away (to a
            yield  # file step) in its middle would only make it later
            return
        self.release()
        try:
            yield
        finally:
            self.acquire()
