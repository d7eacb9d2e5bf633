"""Local audio made small enough to send inline: 16 kHz mono Opus, checked against a byte budget.

RunPod caps a /run body at 10 MB (20 MB for /runsync), and base64 adds a third. Whisper hears
16 kHz mono, so anything above that is thrown away by the worker anyway; Opus at 24 kbit/s keeps
speech intelligible to the model while a 16-bit 16 kHz WAV costs 256 kbit/s and a CD-quality one
1411 kbit/s. Video files lose their video stream here too.

A file that Opus would shrink by less than a fifth (already Opus, or a low-rate MP3) is sent as
it is: a second lossy generation would cost quality for little gain. When the 24 kbit/s file is
over the budget (about 40 minutes fit in a /run), the encoder steps down to 16 and then 12
kbit/s, which still carry speech well, before giving up with an error that says to pass a URL:
past that point quality, not size, would suffer.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from whisper_client.errors import AudioPrepError, Interrupted, PayloadTooLarge

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
#: bitrates tried in order, highest first (bit/s)
OPUS_BITRATES: tuple[int, ...] = (24_000, 16_000, 12_000)
#: Ogg pages and Opus framing on top of the nominal bitrate, for the size estimate
_CONTAINER_OVERHEAD = 1.05
_FFMPEG_TIMEOUT_S = 3600.0
#: a re-encode must save at least a fifth of the bytes to be worth a second lossy generation
_WORTHWHILE = 0.8


@dataclass(frozen=True)
class PreparedAudio:
    """The bytes to send, and what it took to get them."""

    data: bytes
    source_bytes: int
    transcoded: bool
    bitrate: int | None = None

    @property
    def reduction(self) -> float:
        """How many times smaller than the source file (1.0 when sent as is)."""
        return self.source_bytes / max(len(self.data), 1)


def base64_size(raw_bytes: int) -> int:
    return 4 * ((raw_bytes + 2) // 3)


def transcode_to_opus(
    path: Path,
    *,
    bitrate: int = OPUS_BITRATES[0],
    ffmpeg: str = "ffmpeg",
    timeout: float = _FFMPEG_TIMEOUT_S,
) -> bytes:
    """The first audio stream of ``path`` as 16 kHz mono Ogg/Opus at ``bitrate`` bit/s."""
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-c:a",
        "libopus",
        "-b:a",
        str(bitrate),
        "-application",
        "voip",  # tuned for speech: better intelligibility at low bitrates
        "-f",
        "ogg",
        "pipe:1",
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise AudioPrepError(
            f"{ffmpeg!r} not found: install ffmpeg, or send the file as is (--no-transcode)"
        ) from None
    except subprocess.TimeoutExpired:
        raise AudioPrepError(f"{path.name}: ffmpeg took over {timeout:.0f} s") from None
    if done.returncode in (-signal.SIGINT, 255):
        # ffmpeg got the terminal's Ctrl-C too (255 is its exit code on a signal)
        raise Interrupted(f"{path.name}: transcoding interrupted")
    if done.returncode != 0 or not done.stdout:
        raise AudioPrepError(f"{path.name}: not readable as audio ({_last_line(done.stderr)})")
    return done.stdout


def prepare_audio(
    path: Path,
    *,
    max_bytes: int,
    transcode: bool = True,
    duration: float | None = None,
    bitrates: Sequence[int] = OPUS_BITRATES,
) -> PreparedAudio:
    """The audio of ``path`` as at most ``max_bytes`` raw bytes (before base64).

    ``duration`` (seconds, from ffprobe) lets bitrates that cannot fit be skipped without
    encoding. Raises ``PayloadTooLarge`` when even the lowest bitrate does not fit, and
    ``AudioPrepError`` when the file cannot be read or decoded.
    """
    try:
        source_bytes = path.stat().st_size
    except OSError as e:
        raise AudioPrepError(f"{path}: cannot read it ({e.strerror})") from None
    if not transcode:
        if source_bytes > max_bytes:
            raise _too_large(path, source_bytes, max_bytes, "as is")
        return PreparedAudio(path.read_bytes(), source_bytes, transcoded=False)
    data = b""
    for i, bitrate in enumerate(bitrates):
        last = i == len(bitrates) - 1
        if duration is not None and not last:
            estimate = duration * bitrate / 8 * _CONTAINER_OVERHEAD
            if estimate > max_bytes:
                continue
        data = transcode_to_opus(path, bitrate=bitrate)
        if len(data) > _WORTHWHILE * source_bytes and source_bytes <= max_bytes:
            # already compact (an Opus or low-rate MP3 file): a re-encode would only cost quality
            logger.info("%s: sent as is (%d bytes; as Opus %d)", path.name, source_bytes, len(data))
            return PreparedAudio(path.read_bytes(), source_bytes, transcoded=False)
        if len(data) <= max_bytes:
            prepared = PreparedAudio(data, source_bytes, transcoded=True, bitrate=bitrate)
            logger.info(
                "%s: %d -> %d bytes as %d kbit/s Opus (%.1fx smaller)",
                path.name,
                source_bytes,
                len(data),
                bitrate // 1000,
                prepared.reduction,
            )
            return prepared
    raise _too_large(path, len(data), max_bytes, f"even as {bitrates[-1] // 1000} kbit/s Opus")


def _too_large(path: Path, size: int, limit: int, how: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{path.name}: {size / 1e6:.1f} MB {how}, over the {limit / 1e6:.1f} MB of audio that fit "
        "in one request: upload the file (e.g. to S3, with a presigned link) and pass its URL"
    )


def _last_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "ffmpeg failed"
