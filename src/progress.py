"""Progress of a running job, reported to whoever can show it.

On RunPod, ``runpod.serverless.progress_update`` makes the report visible in ``/status`` while the
job is ``IN_PROGRESS``; the local endpoint (``src.client.local_endpoint``) registers its own sink
with ``set_sink`` to do the same. Reports are throttled: each RunPod update is an HTTP request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client's local endpoint imports this module: keep it light
    from src.jobs import SegmentEvent

logger = logging.getLogger(__name__)

#: (job, progress) -> None
ProgressSink = Callable[[dict[str, Any], dict[str, Any]], None]

MIN_INTERVAL_SECONDS = 1.0

_sink: ProgressSink | None = None
_sink_lock = threading.Lock()


def set_sink(sink: ProgressSink | None) -> None:
    """Send progress reports to ``sink`` (None restores the default)."""
    global _sink
    with _sink_lock:
        _sink = sink


def _runpod_sink(job: dict[str, Any], progress: dict[str, Any]) -> None:
    from runpod.serverless import progress_update

    progress_update(job, progress)


def current_sink() -> ProgressSink | None:
    """The registered sink, else RunPod's when running on RunPod, else none."""
    with _sink_lock:
        if _sink is not None:
            return _sink
    if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        return _runpod_sink
    return None


class ProgressReporter:
    """Turns segment events into throttled progress reports for one job."""

    def __init__(
        self,
        job: dict[str, Any],
        sink: ProgressSink,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._job = job
        self._sink = sink
        self._clock = clock
        self._last = -MIN_INTERVAL_SECONDS
        self._segments = 0

    def __call__(self, event: SegmentEvent) -> None:
        self._segments += 1
        now = self._clock()
        if now - self._last < MIN_INTERVAL_SECONDS:
            return
        self._last = now
        report: dict[str, Any] = {
            "status": "transcribing",
            "segments": self._segments,
            "audio_seconds_done": round(event.segment.end, 2),
            "file_index": event.file_index,
            "file_count": event.file_count,
        }
        if event.duration > 0:
            report["fraction"] = round(min(event.segment.end / event.duration, 1.0), 3)
        try:
            self._sink(self._job, report)
        except Exception as e:  # progress is best effort: never fail the job for it
            logger.warning("progress report failed: %s", type(e).__name__)
