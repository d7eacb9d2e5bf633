"""Progress of a running job: segment events turned into throttled progress reports.

A pure consumer of the job's events (``src.jobs.SegmentEvent``): ``ProgressTracker.update``
returns a report when one is due, at most one a second (on RunPod each report is an HTTP
request). Who shows the report is the door's business: ``handler.py`` hands it to RunPod's
``progress_update`` (visible in ``/status`` while the job is ``IN_PROGRESS``) and yields it from
``job_updates`` for the local endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src.jobs import SegmentEvent

MIN_INTERVAL_SECONDS = 1.0


class ProgressTracker:
    """Counts one job's segments and says, at most once a second, how far the job has got."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = -MIN_INTERVAL_SECONDS
        self._segments = 0

    def update(self, event: SegmentEvent) -> dict[str, Any] | None:
        """The report for this event, or None when the last one was under a second ago."""
        self._segments += 1
        now = self._clock()
        if now - self._last < MIN_INTERVAL_SECONDS:
            return None
        self._last = now
        report: dict[str, Any] = {
            "status": "transcribing",
            "segments": self._segments,
            "audio_seconds_done": round(event.segment.end, 2),
            "file_index": event.file_index,
            "file_count": event.file_count,
        }
        if event.duration > 0:
            fraction = min(event.segment.end / event.duration, 1.0)
            if event.file_count > 1:
                fraction = (event.file_index + fraction) / event.file_count
            report["fraction"] = round(fraction, 3)
        return report
