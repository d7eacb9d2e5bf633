"""One decode, to the array both engines use: 16 kHz mono float32, by ffmpeg.

ffmpeg reads the first audio stream of whatever container it is given (video files included),
downmixes, resamples and writes raw little-endian float32 to a pipe; the command is built with
``ffmpeg-python``. The audio came from the job's caller, so ffmpeg reads it as what it claims to
be and nothing more:

* ``-protocol_whitelist file``: no URL (http, rtmp, ...) can be opened from inside the input;
* ``-format_whitelist`` (:data:`DEMUXERS`): only audio and video containers that hold their
  media in themselves. A playlist or a list of files (HLS ``.m3u8``, ``concat``, ``image2``,
  DASH, ...) is refused before it is read, so no entry such as ``file:///etc/...`` or
  another job's audio can ever be opened. ffprobe runs under the same two lists.

A truncated or partly corrupt file gives what ffmpeg could decode of it (as Whisper's own loader
does); only a file with nothing decodable is an error.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import ffmpeg
import numpy as np

from src.engines.base import SAMPLE_RATE
from src.errors import DecodeError, TooLarge

logger = logging.getLogger(__name__)


_BYTES_PER_SAMPLE = 4  # float32
_READ_SIZE = 1024 * 1024
_MAX_STDERR = 64 * 1024
_MAX_REASON = 160

#: the containers ffmpeg may read (its demuxer names): every audio and video format a caller
#: can reasonably send, none that opens other files or URLs (hls, concat, dash, image2,
#: tee, ... are left out, and so is every demuxer not named here)
DEMUXERS: tuple[str, ...] = (
    "wav", "w64", "flac", "mp3", "ogg", "mov", "matroska", "aac", "aiff", "amr", "asf",
    "avi", "caf", "au", "mpeg", "mpegts", "ac3", "eac3", "dts", "flv", "wv", "ape", "tta",
    "truehd", "mlp", "loas", "voc", "dsf", "xwma", "s337m",
)  # fmt: skip
_FORMAT_WHITELIST = ",".join(DEMUXERS)
#: what ffmpeg puts before a message: ``[mp3 @ 0x55d0c3a4b2c0] `` (a heap address)
_CONTEXT = re.compile(r"\[([\w:,.-]+) @ 0x[0-9a-fA-F]+\]\s*")
_NOT_WHITELISTED = re.compile(r"\[([\w:,.-]+) @ 0x[0-9a-fA-F]+\]\s*Format not on whitelist")


def decode_audio(
    source: Path | str | bytes, *, denoise: bool = False, max_seconds: float | None = None
) -> np.ndarray:
    """Decode ``source`` (a path, or a whole file's bytes) to 16 kHz mono float32 samples.

    ``denoise`` inserts ffmpeg's ``afftdn`` filter before resampling. ``max_seconds`` stops
    the decode as soon as more audio than that has come out (container metadata can lie about
    the duration, the decoded length cannot) and raises ``TooLarge``. Every other failure is
    a ``DecodeError`` whose message says what was wrong with the audio.
    """
    if isinstance(source, bytes):
        if not source:
            raise DecodeError("audio: the audio is empty (0 bytes)")
        with tempfile.TemporaryDirectory(prefix="decode-") as tmp:
            path = Path(tmp) / "audio"
            path.write_bytes(source)
            return _decode_file(path, denoise, max_seconds)
    return _decode_file(Path(source), denoise, max_seconds)


def probe_duration(path: Path | str) -> float | None:
    """The duration in seconds that the file's container declares; ``None`` if it has none.

    This is metadata, cheap to read before decoding but not proof of the real length. A file
    without an audio stream, one ffprobe cannot read, or a missing ffprobe also give ``None``:
    decoding such a file raises the error that explains why.
    """
    try:
        info = ffmpeg.probe(
            str(Path(path).resolve()),
            v="error",
            protocol_whitelist="file",
            format_whitelist=_FORMAT_WHITELIST,
        )
    except ffmpeg.Error:
        return None
    except OSError as e:
        logger.warning("ffprobe could not be run: %s", e.strerror or type(e).__name__)
        return None
    return _declared_duration(info)


def _declared_duration(info: dict[str, Any]) -> float | None:
    """The container's duration, else the first audio stream's; ``None`` without audio."""
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        return None
    candidates = [info.get("format", {}).get("duration"), audio[0].get("duration")]
    for raw in candidates:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _decode_file(path: Path, denoise: bool, max_seconds: float | None) -> np.ndarray:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DecodeError(f"audio: the audio file could not be read ({e.strerror})") from e
    if size == 0:
        raise DecodeError("audio: the audio is empty (0 bytes)")
    max_bytes = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) * _BYTES_PER_SAMPLE
    pcm = _run_ffmpeg(_ffmpeg_command(path, denoise), path, max_bytes, max_seconds)
    del pcm[len(pcm) - len(pcm) % _BYTES_PER_SAMPLE :]
    if not pcm:
        raise DecodeError("audio: the file holds an audio stream but no decodable samples")
    # frombuffer over a bytearray: no copy, and writable (torch.from_numpy warns otherwise)
    return np.frombuffer(pcm, dtype="<f4").astype(np.float32, copy=False)


def _ffmpeg_command(path: Path, denoise: bool) -> list[str]:
    """``ffmpeg ... -i FILE -map 0:a:0 -f f32le -ac 1 -ar 16000 pipe:1``, via ffmpeg-python."""
    stream = ffmpeg.input(
        str(path.resolve()), protocol_whitelist="file", format_whitelist=_FORMAT_WHITELIST
    )["a:0"]
    if denoise:
        stream = stream.filter("afftdn")
    output = ffmpeg.output(
        stream, "pipe:1", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE
    ).global_args("-nostdin", "-hide_banner", "-loglevel", "error")
    command: list[str] = output.compile()
    return command


def _run_ffmpeg(
    command: list[str], path: Path, max_bytes: int | None, max_seconds: float | None
) -> bytearray:
    """Run ffmpeg, collecting stdout; stderr goes to a temporary file so it can never block."""
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        except FileNotFoundError as e:
            raise DecodeError("audio: cannot decode, ffmpeg is not installed on the worker") from e
        with process:
            assert process.stdout is not None
            pcm = _read_capped(process.stdout, max_bytes)
            if pcm is None:
                process.kill()
                process.wait()
                raise TooLarge(
                    f"audio: longer than the limit of {max_seconds:g} s (MAX_AUDIO_SECONDS)"
                )
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            text = stderr.read(_MAX_STDERR).decode("utf-8", "replace")
            raise DecodeError(_explain_failure(text, path))
    return pcm


def _read_capped(stream: IO[bytes], max_bytes: int | None) -> bytearray | None:
    """All of ``stream``, or ``None`` as soon as it passes ``max_bytes``."""
    pcm = bytearray()
    while chunk := stream.read(_READ_SIZE):
        pcm += chunk
        if max_bytes is not None and len(pcm) > max_bytes:
            return None
    return pcm


def _explain_failure(stderr: str, path: Path) -> str:
    """A caller-facing reason from ffmpeg's stderr: a known case, or its first line, short."""
    refused = _NOT_WHITELISTED.search(stderr)
    if refused:
        return (
            f"audio: the file is in a format the worker does not read ({refused.group(1)}); "
            "playlists and lists of files (m3u8, concat, ...) are refused: send the audio itself"
        )
    if "matches no streams" in stderr:
        return "audio: the file has no audio stream"
    if "Invalid data found when processing input" in stderr:
        return "audio: not a recognised audio or video format, or the file is corrupt"
    lines = [_CONTEXT.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    reason = lines[0] if lines else "ffmpeg failed without a message"
    reason = reason.replace(str(path.resolve()), "input").replace(str(path), "input")
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + "..."
    return f"audio: could not be decoded ({reason})"
