"""The job's audio: fetched into a per-job directory (``source``), then decoded once (``decode``).

``source`` never looks inside the bytes and ``decode`` never touches the network; the
processor calls one after the other and hands the one array to whichever engine is loaded.
"""

from src.audio.decode import SAMPLE_RATE, decode_audio, probe_duration
from src.audio.source import decode_base64, download_url, fetch_audio, redact_url

__all__ = [
    "SAMPLE_RATE",
    "decode_audio",
    "decode_base64",
    "download_url",
    "fetch_audio",
    "probe_duration",
    "redact_url",
]
