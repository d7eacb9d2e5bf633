"""Media input can only be what it says: every container the README lists still decodes, and a
playlist or list of files (HLS ``.m3u8`` with ``file://`` entries, ffmpeg ``concat``) is refused
however it arrives (an upload, base64, a URL), so it can never read a local file.

The URL and base64 cases go through ``fetch_audio`` then ``decode_audio``, the two steps every
door's audio takes; the upload case goes through the HTTP door with the real model.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from src.audio.decode import SAMPLE_RATE, decode_audio, probe_duration
from src.audio.source import UploadedAudio, fetch_audio
from src.config import DownloadLimits
from src.errors import DecodeError
from src.request import AudioInput
from tests.conftest import Clip, serve_bytes

#: ffmpeg output options for each container the README names, and a few more it accepts
CONTAINERS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-c:a", "libmp3lame"],
    "ogg": ["-c:a", "libvorbis"],
    "opus": ["-c:a", "libopus"],
    "m4a": ["-c:a", "aac"],
    "webm": ["-c:a", "libopus"],
    "mkv": ["-c:a", "flac"],
    "aac": ["-c:a", "aac", "-f", "adts"],
    "aiff": ["-c:a", "pcm_s16be"],
    "wma": ["-c:a", "wmav2"],
    "ts": ["-c:a", "mp2"],
    "caf": ["-c:a", "pcm_s16le"],
}
SECONDS = 3.0


def _make(source: Path, dest: Path, options: list[str], video: bool = False) -> Path:
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", str(SECONDS), "-i", str(source)]
    if video:
        command += ["-f", "lavfi", "-t", str(SECONDS), "-i", "color=c=blue:s=64x64:r=10"]
        command += ["-map", "0:a", "-map", "1:v", "-c:v", "mpeg4", "-shortest"]
    subprocess.run([*command, *options, str(dest)], check=True, capture_output=True)
    return dest


@pytest.mark.parametrize("suffix", sorted(CONTAINERS))
def test_every_listed_container_decodes(jfk: Clip, tmp_path: Path, suffix: str) -> None:
    path = _make(jfk.path, tmp_path / f"clip.{suffix}", CONTAINERS[suffix])
    samples = decode_audio(path)
    assert abs(len(samples) / SAMPLE_RATE - SECONDS) < 0.2
    assert float(abs(samples).max()) > 0.01


@pytest.mark.parametrize("suffix", ["mp4", "avi", "mkv"])
def test_video_with_an_audio_track_decodes(jfk: Clip, tmp_path: Path, suffix: str) -> None:
    path = _make(jfk.path, tmp_path / f"clip.{suffix}", ["-c:a", "aac"], video=True)
    samples = decode_audio(path)
    assert abs(len(samples) / SAMPLE_RATE - SECONDS) < 0.2


def _playlist(target: Path) -> bytes:
    """An HLS playlist whose one segment is a local file."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:30\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:30.0,\nfile://{target}\n#EXT-X-ENDLIST\n"
    ).encode()


def _concat(target: Path) -> bytes:
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


HOSTILE = {"m3u8": _playlist, "ffconcat": _concat}


@pytest.fixture
def secret_audio(jfk: Clip, tmp_path: Path) -> Path:
    """A local media file that no job names: what a playlist would try to read."""
    secret = tmp_path / "secret"
    secret.mkdir()
    return _make(jfk.path, secret / "other-job.flac", ["-c:a", "flac"])


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_list_of_files_is_refused_from_a_file(
    secret_audio: Path, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"audio.{kind}"
    path.write_bytes(HOSTILE[kind](secret_audio))
    with pytest.raises(DecodeError, match="playlists and lists of files") as caught:
        decode_audio(path)
    assert str(secret_audio) not in str(caught.value)
    assert probe_duration(path) is None


def test_a_playlist_is_refused_as_base64(secret_audio: Path, tmp_path: Path) -> None:
    payload = base64.b64encode(_playlist(secret_audio)).decode()
    path = fetch_audio(AudioInput(base64=payload), tmp_path, DownloadLimits())
    with pytest.raises(DecodeError, match="playlists"):
        decode_audio(path)


@pytest.fixture
def playlist_server(secret_audio: Path) -> Iterator[str]:
    body = _playlist(secret_audio)
    with serve_bytes(body, "application/vnd.apple.mpegurl", "/list.m3u8") as server:
        yield server.url


def test_a_playlist_is_refused_by_url(playlist_server: str, tmp_path: Path) -> None:
    limits = replace(DownloadLimits(), allow_private=True)
    path = fetch_audio(AudioInput(url=playlist_server), tmp_path, limits)
    with pytest.raises(DecodeError, match="playlists"):
        decode_audio(path)


def test_a_playlist_is_refused_as_an_upload_path(secret_audio: Path, tmp_path: Path) -> None:
    path = tmp_path / "upload.m3u8"
    path.write_bytes(_playlist(secret_audio))
    with pytest.raises(DecodeError, match="playlists"):
        decode_audio(fetch_audio(UploadedAudio(path), tmp_path, DownloadLimits()))


def test_a_playlist_upload_is_a_400_over_http(secret_audio: Path) -> None:
    from tests.server_helpers import serving

    with serving(model="tiny.en") as server:
        for name in ("list.m3u8", "audio.mp3"):
            reply = httpx.post(
                f"{server.api}/audio/transcriptions",
                files={"file": (name, _playlist(secret_audio), "audio/mpeg")},
                data={"model": "whisper-1"},
                timeout=120,
            )
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert "playlists" in error["message"]
            assert str(secret_audio) not in reply.text


def test_no_heap_address_in_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp3"
    # an MP3 frame header followed by junk: ffmpeg names its context "[mp3 @ 0x...]"
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 64)
    with pytest.raises(DecodeError) as caught:
        decode_audio(path)
    assert not re.search(r"0x[0-9a-f]{6,}", str(caught.value)), str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_explain_failure_strips_addresses() -> None:
    from src.audio.decode import _explain_failure

    text = "[mp3 @ 0x55d0c3a4b2c0] Header missing\n[aist#0:0/mp3 @ 0x55d0c3a4b3c0] Error\n"
    reason = _explain_failure(text, Path("/tmp/x"))
    assert "0x55" not in reason
    assert "Header missing" in reason
