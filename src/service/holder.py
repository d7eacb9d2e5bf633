"""The one model of an HTTP-mode process: loaded in the background, unloaded when idle.

``ModelHolder`` owns the ``WhisperProcessor``. Its state is what ``/ping`` reports:
"loading" and "unloaded" answer 204 (RunPod: initializing), "ready" 200, "failed" 503 (RunPod
takes an unhealthy worker out of rotation).

Every user of the model holds a lease, ``async with holder.use() as processor``: the lease
loads the model first if it is not loaded, and while any lease is held the model stays. With
``MODEL_IDLE_TIMEOUT`` set, the model is dropped once no lease has been held for that long, and
the next lease loads it again. All state changes happen on the event loop; only the load itself
runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

from src.engines.base import ModelInfo
from src.errors import ModelError
from src.service.processor import WhisperProcessor, release_memory

logger = logging.getLogger(__name__)

ModelState = Literal["unloaded", "loading", "ready", "failed"]
ProcessorFactory = Callable[[], WhisperProcessor]


class ModelHolder:
    def __init__(self, factory: ProcessorFactory, idle_timeout: float | None = None) -> None:
        self._factory = factory
        self._idle_timeout = idle_timeout
        self._processor: WhisperProcessor | None = None
        self._loading: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._leases = 0
        self._error: str | None = None
        #: how many times the model was loaded and unloaded (for tests and logs)
        self.loads = 0
        self.unloads = 0

    @property
    def state(self) -> ModelState:
        if self._processor is not None:
            return "ready"
        if self._loading is not None:
            return "loading"
        return "failed" if self._error is not None else "unloaded"

    @property
    def ready(self) -> bool:
        return self._processor is not None

    @property
    def info(self) -> ModelInfo | None:
        """What the loaded model is (None while it is not loaded)."""
        return self._processor.info if self._processor is not None else None

    @property
    def leases(self) -> int:
        """How many users hold the model now."""
        return self._leases

    def start_loading(self) -> None:
        """Begin loading in the background unless loaded or loading; returns at once."""
        if self._processor is None and self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            processor = await asyncio.to_thread(self._factory)
        except Exception as e:  # reported to whoever waits, and by /ping as "failed"
            self._error = f"the model could not be loaded ({type(e).__name__})"
            logger.error("model load failed: %s", type(e).__name__)
            return
        finally:
            self._loading = None
        self._processor = processor
        self._error = None
        self.loads += 1
        logger.info("model ready in %.2f s", time.perf_counter() - started)
        self._arm_idle_timer()

    async def wait_ready(self) -> WhisperProcessor:
        """The loaded processor, loading it first when needed (a failed load is tried again
        once per caller); raises ModelError when the load fails."""
        if self._processor is None:
            self.start_loading()
            assert self._loading is not None
            await asyncio.shield(self._loading)
        if self._processor is None:
            raise ModelError(self._error or "the model is not loaded")
        return self._processor

    @asynccontextmanager
    async def use(self) -> AsyncIterator[WhisperProcessor]:
        """Hold the model for the block's duration (loading it first when it is not loaded)."""
        self._leases += 1
        self._cancel_idle_timer()
        try:
            yield await self.wait_ready()
        finally:
            self._leases -= 1
            self._arm_idle_timer()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _arm_idle_timer(self) -> None:
        if self._idle_timeout is None or self._leases or self._processor is None:
            return
        self._cancel_idle_timer()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._idle_timeout, self._unload_if_idle)

    def _unload_if_idle(self) -> None:
        self._idle_timer = None
        if self._leases or self._processor is None:
            return
        self.unload()
        logger.info("model unloaded after %.0f s idle", self._idle_timeout or 0.0)

    def unload(self) -> None:
        """Drop the model now (no lease may be held); the next lease loads it again."""
        if self._leases:
            raise RuntimeError("the model is in use")
        self._cancel_idle_timer()
        if self._processor is None:
            return
        self._processor = None
        self.unloads += 1
        gc.collect()
        release_memory()

    async def close(self) -> None:
        """At shutdown: wait for a load under way, then drop the model."""
        self._cancel_idle_timer()
        if self._loading is not None:
            await asyncio.shield(self._loading)
        if not self._leases:
            self._processor = None
