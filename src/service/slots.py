"""The HTTP mode's file requests: admission, and the places where they run at once.

``JobSlots`` admits a request once its body has arrived (a client that drips its upload holds
no place), at most ``slots`` running plus ``max_queue`` waiting; past that ``admit`` raises
``QueueFull`` (HTTP 503 with ``Retry-After``). An admitted request takes one of the ``slots``
places in arrival order (``ticket.turn()``); inside it, its download and ffmpeg decode run while
the model decodes other requests' steps (the model itself takes one step at a time: the model
service's ``ModelGate``). A request whose client goes away leaves the line (its waiting task is
cancelled) or, when running, stops its decode at the next segment boundary.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

logger = logging.getLogger(__name__)

#: Retry-After when nothing has been timed yet, and the bounds of any estimate (seconds)
DEFAULT_RETRY_AFTER = 5
MAX_RETRY_AFTER = 600


class QueueFull(Exception):
    """Every place in the queue is taken; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(
            f"the server is busy: {max_queue} requests are already waiting; "
            f"retry after {retry_after} s"
        )
        self.retry_after = retry_after


@dataclass
class SchedulerStats:
    admitted: int = 0
    completed: int = 0
    #: requests whose client went away while they waited or ran
    cancelled: int = 0
    rejected: int = 0


class JobSlots:
    def __init__(self, max_queue: int, slots: int = 1) -> None:
        self.max_queue = max_queue
        self.slots = slots
        self.stats = SchedulerStats()
        self._admitted = 0
        self._running = 0
        self._line: deque[asyncio.Future[None]] = deque()
        self._mean_run: float | None = None

    @property
    def running(self) -> int:
        """Requests holding a place now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Admitted requests waiting for a place."""
        return self._admitted - self._running

    def admit(self) -> Ticket:
        """A place for one request, or ``QueueFull`` when every place is taken."""
        if self._admitted >= self.max_queue + self.slots:
            self.stats.rejected += 1
            raise QueueFull(self.retry_after(), self.max_queue)
        self._admitted += 1
        self.stats.admitted += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean run time times the requests ahead."""
        if self._mean_run is None:
            return DEFAULT_RETRY_AFTER
        ahead = max(1, self._admitted - self.slots + 1)
        estimate = math.ceil(self._mean_run * ahead)
        return max(1, min(MAX_RETRY_AFTER, estimate))

    async def _acquire(self) -> None:
        if self._running < self.slots and not self._line:
            self._running += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._hand_on()  # the turn came just as the client left: pass it on
            else:
                self._line.remove(turn)
            raise

    def _release(self, seconds: float) -> None:
        self._mean_run = seconds if self._mean_run is None else 0.7 * self._mean_run + 0.3 * seconds
        self._hand_on()

    def _hand_on(self) -> None:
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running = 0

    def _leave(self, cancelled: bool) -> None:
        self._admitted -= 1
        if cancelled:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1


class Ticket:
    """One admitted request: ``turn()`` waits for and holds one of the places; ``close``
    (or leaving the ``with`` block) gives the place back."""

    def __init__(self, scheduler: JobSlots) -> None:
        self._scheduler = scheduler
        self._closed = False
        self.cancelled = False

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            await self._scheduler._acquire()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        started = time.perf_counter()
        try:
            yield
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self._scheduler._release(time.perf_counter() - started)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._scheduler._leave(self.cancelled)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.cancelled = True
        self.close()
