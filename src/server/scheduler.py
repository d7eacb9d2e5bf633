"""One model, a bounded FIFO queue in front of it, and the bridge from its blocking decode.

``Scheduler`` admits at most one running file request plus ``max_queue`` waiting ones; past
that ``admit`` raises ``QueueFull`` (HTTP 503 with ``Retry-After``). An admitted request first
receives its upload, then takes its place in line (``ticket.turn()``): requests run one at a
time in the order they became ready. A request whose client goes away leaves the line (its
waiting task is cancelled) or, when running, stops its decode at the next segment boundary.

``ThreadedIterator`` runs the processor's blocking event generator in a thread of its own and
hands the events to the event loop one at a time. Closing it (or cancelling the task that reads
it) asks the thread to stop before it asks the generator for the next event; the thread then
closes the generator, which frees the decode, and ``aclose`` returns only once the thread has
ended, so the next request never overlaps the one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

import anyio

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


class Scheduler:
    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.stats = SchedulerStats()
        self._admitted = 0
        self._running = False
        self._line: deque[asyncio.Future[None]] = deque()
        self._mean_run: float | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def waiting(self) -> int:
        """Admitted requests not running now (receiving their upload, or in line)."""
        return self._admitted - int(self._running)

    def admit(self) -> Ticket:
        """A place for one request, or ``QueueFull`` when every place is taken."""
        if self._admitted >= self.max_queue + 1:
            self.stats.rejected += 1
            raise QueueFull(self.retry_after(), self.max_queue)
        self._admitted += 1
        self.stats.admitted += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean run time times the requests ahead."""
        if self._mean_run is None:
            return DEFAULT_RETRY_AFTER
        estimate = math.ceil(self._mean_run * max(1, self._admitted))
        return max(1, min(MAX_RETRY_AFTER, estimate))

    async def _acquire(self) -> None:
        if not self._running and not self._line:
            self._running = True
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
        self._running = False

    def _leave(self, cancelled: bool) -> None:
        self._admitted -= 1
        if cancelled:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1


class Ticket:
    """One admitted request's place: ``turn()`` waits for and holds the decode slot; ``close``
    (or leaving the ``with`` block) gives the place back."""

    def __init__(self, scheduler: Scheduler) -> None:
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


class _End:
    pass


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class ThreadedIterator(Generic[T]):
    """A blocking iterator run in its own thread, read from the event loop.

    ``make`` is called in that thread and returns the iterator (for the processor, a
    generator: ``close()`` on it stops the decode). Use as ``async with``; iterate it with
    ``async for``. An exception raised in the thread is raised to the reader.
    """

    def __init__(self, make: Callable[[], Iterator[T]], name: str = "decode") -> None:
        self._make = make
        self._name = name
        self._items: asyncio.Queue[T | _End | _Failed] = asyncio.Queue()
        self._stop = threading.Event()
        self._done: asyncio.Future[None] | None = None
        self._finished = False

    def _run(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        def put(item: T | _End | _Failed) -> None:
            loop.call_soon_threadsafe(self._items.put_nowait, item)

        try:
            iterator = self._make()
            try:
                for item in iterator:
                    put(item)
                    if self._stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as e:  # handed to the reader, who decides what it means
            put(_Failed(e))
        else:
            put(_End())
        finally:
            # RuntimeError: the loop is gone (shutdown), nobody is waiting
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, done)

    async def __aenter__(self) -> ThreadedIterator[T]:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        threading.Thread(
            target=self._run, args=(loop, self._done), name=self._name, daemon=True
        ).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> ThreadedIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        item = await self._items.get()
        if isinstance(item, _End):
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, _Failed):
            self._finished = True
            raise item.error
        return item

    async def aclose(self) -> None:
        """Ask the thread to stop at its next item and wait (even when cancelled) until it has."""
        self._stop.set()
        if self._done is not None:
            with anyio.CancelScope(shield=True):
                await self._done


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
