"""What ffprobe says about a local file: does it hold an audio stream, and how long is it.

Used to find audio by content (a recording saved without an extension is still found) and to
know durations up front, for the progress bar's audio hours and the transcoder's bitrate choice.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from whisper_client.errors import ConfigError

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MediaInfo:
    has_audio: bool
    duration: float | None  # seconds; None where the container does not say


def probe(path: Path, *, ffprobe: str = "ffprobe", timeout: float = PROBE_TIMEOUT_S) -> MediaInfo:
    """Probe ``path``; a file ffprobe cannot parse (text, corrupt data) has no audio."""
    command = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,duration",
        "-of",
        "json",
        str(path),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ConfigError(f"{ffprobe!r} not found: install ffmpeg (it provides ffprobe)") from None
    except subprocess.TimeoutExpired:
        logger.warning("ffprobe took over %.0f s on %s; treated as not audio", timeout, path)
        return MediaInfo(has_audio=False, duration=None)
    if done.returncode != 0:
        return MediaInfo(has_audio=False, duration=None)
    try:
        data = json.loads(done.stdout or b"{}")
    except ValueError:
        return MediaInfo(has_audio=False, duration=None)
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "audio"]
    duration = _seconds(data.get("format", {}).get("duration"))
    if duration is None and streams:
        duration = _seconds(streams[0].get("duration"))
    return MediaInfo(has_audio=bool(streams), duration=duration)


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
