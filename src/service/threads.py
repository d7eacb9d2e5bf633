"""A blocking generator read from the event loop, one item per worker-thread call.

Each ``next()`` of the generator runs in anyio's worker threads. When the reader stops early (a
RunPod job the platform stops, an HTTP client that left) the generator is closed, so that its
``finally`` blocks run (the job's temp directory goes, the engine's decode stops), but only once
the step under way has returned: a generator cannot be closed while a thread is running it.

Why not Starlette's ``iterate_in_threadpool`` alone: it never closes the generator, and a native
``task.cancel()`` (what RunPod's SDK does to stop a job) ends its wait for ``to_thread.run_sync``
while the thread still runs the step, so closing the generator then fails with "generator
already executing". Here each step runs as a task of its own that a cancelled reader waits for
(shielded) before it closes the generator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

import anyio.to_thread

T = TypeVar("T")

_END = object()


def _next(iterator: Iterator[T]) -> Any:
    return next(iterator, _END)


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncGenerator[T, None]:
    """The items of ``iterator``, each computed in a worker thread; the iterator is closed
    (when it has ``close``) however the reading ends, after the step under way."""
    step: asyncio.Task[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anyio.to_thread.run_sync(_next, iterator))
            item = await asyncio.shield(step)
            if item is _END:
                return
            yield item
    finally:
        if step is not None:
            await _settle(step)
        close: Callable[[], object] | None = getattr(iterator, "close", None)
        if close is not None:
            await _settle(asyncio.ensure_future(anyio.to_thread.run_sync(close)))


async def _settle(task: asyncio.Task[Any]) -> None:
    """Wait until ``task`` has ended, even through cancellation (re-raised once it has)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # the step's own error: the reader has it already, or nobody wants it
            break
    if not task.cancelled():
        task.exception()  # retrieved: never "exception was never retrieved"
    if cancelled:
        raise asyncio.CancelledError()
