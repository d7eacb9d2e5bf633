"""The decode to 16 kHz mono float32: real benchmark clips of each format, and broken inputs."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from src.audio.decode import SAMPLE_RATE, decode_audio, probe_duration
from src.errors import AudioError, DecodeError
from tests.conftest import BENCHMARK_DIR, Clip

#: one clip per container/codec: stereo 44.1 kHz flac, 16 kHz wav, 48 kHz ogg/opus, 8 kHz wav
FORMATS = [
    "en_jfk.flac",
    "en_ls-test-clean_1089-134686-0001.wav",
    "en_fleurs_000.ogg",
    "en_ls-dev-clean_1272-128104-0004_8k.wav",
]
SHORT_WAV = BENCHMARK_DIR / "en_one_two_three.wav"


@pytest.fixture(scope="module")
def clips(manifest: list[Clip]) -> dict[str, Clip]:
    return {clip.path.name: clip for clip in manifest}


@pytest.fixture(scope="module")
def short_wav() -> np.ndarray:
    return decode_audio(SHORT_WAV)


def ffmpeg_make(out: Path, *args: str) -> Path:
    """Make a test media file with ffmpeg's synthetic sources."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(out)], check=True)
    return out


def decode_error(source: Path | str | bytes, **kw: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_audio(source, **kw)
    message = str(info.value)
    assert message.startswith("audio: ")
    assert "\n" not in message and "Traceback" not in message and len(message) < 250
    return info.value


# ------------------------------------------------------------------------------------------
# real clips


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_decodes_to_16k_mono_float32(name: str, clips: dict[str, Clip]) -> None:
    clip = clips[name]
    samples = decode_audio(clip.path)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(samples.size - clip.duration_s * SAMPLE_RATE) <= 0.02 * SAMPLE_RATE
    assert np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1.5  # resampling may overshoot full scale a little
    assert np.sqrt(np.mean(samples**2)) > 1e-3  # speech, not silence
    assert samples.flags.writeable  # torch.from_numpy warns on read-only arrays


@pytest.mark.parametrize("name", FORMATS)
def test_denoise_keeps_the_length_and_changes_the_signal(name: str, clips: dict[str, Clip]) -> None:
    plain = decode_audio(clips[name].path)
    denoised = decode_audio(clips[name].path, denoise=True)
    assert denoised.dtype == np.float32
    assert denoised.shape == plain.shape
    assert np.isfinite(denoised).all()
    assert not np.array_equal(denoised, plain)


def test_bytes_and_path_give_the_same_samples(short_wav: np.ndarray) -> None:
    from_bytes = decode_audio(SHORT_WAV.read_bytes())
    assert np.array_equal(from_bytes, short_wav)
    assert np.array_equal(decode_audio(str(SHORT_WAV)), short_wav)


def test_decoding_twice_gives_the_same_array() -> None:
    clip = BENCHMARK_DIR / "en_fleurs_000.ogg"
    assert np.array_equal(decode_audio(clip), decode_audio(clip))
    assert np.array_equal(decode_audio(clip, denoise=True), decode_audio(clip, denoise=True))


def test_probe_duration_matches_every_clip_in_the_manifest(manifest: list[Clip]) -> None:
    for clip in manifest:
        duration = probe_duration(clip.path)
        assert duration == pytest.approx(clip.duration_s, abs=0.01), clip.path.name


# ------------------------------------------------------------------------------------------
# video containers


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def test_a_video_with_an_audio_track_decodes_its_audio(media_dir: Path) -> None:
    video = ffmpeg_make(
        media_dir / "tone.mp4",
        *("-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=44100"),
        *("-c:v", "mpeg4", "-c:a", "aac", "-shortest"),
    )
    samples = decode_audio(video)
    assert abs(samples.size - SAMPLE_RATE) < 0.1 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / samples.size
    assert peak_hz == pytest.approx(440, abs=5)
    assert probe_duration(video) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("denoise", [False, True])
def test_a_video_without_audio_is_a_decode_error(denoise: bool, media_dir: Path) -> None:
    video = media_dir / "silent-film.mp4"
    if not video.exists():
        ffmpeg_make(
            video,
            *("-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10", "-c:v", "mpeg4"),
        )
    error = decode_error(video, denoise=denoise)
    assert str(error) == "audio: the file has no audio stream"
    assert probe_duration(video) is None


# ------------------------------------------------------------------------------------------
# broken inputs


def test_an_empty_file_is_a_decode_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert "empty" in str(decode_error(empty))
    assert "empty" in str(decode_error(b""))


def test_random_bytes_are_a_decode_error() -> None:
    noise = np.random.default_rng(0).bytes(20_000)
    assert "not a recognised audio or video format" in str(decode_error(noise))


@pytest.mark.parametrize("name", ["notes.txt", "notes"])
def test_a_text_file_is_a_decode_error(name: str, tmp_path: Path) -> None:
    text = tmp_path / name
    text.write_text("Dear caller, this is not audio.\n" * 50)
    decode_error(text)
    assert probe_duration(text) is None


def test_a_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    assert "could not be read" in str(decode_error(tmp_path / "gone.wav"))
    assert probe_duration(tmp_path / "gone.wav") is None


def test_a_header_without_samples_is_a_decode_error() -> None:
    header = SHORT_WAV.read_bytes()[:100]
    assert "no decodable samples" in str(decode_error(header))


def test_a_truncated_wav_gives_the_decodable_prefix(short_wav: np.ndarray) -> None:
    """The documented rule: a cut-off file decodes to what is there, not to an error."""
    data = SHORT_WAV.read_bytes()
    half = decode_audio(data[: len(data) // 2])
    assert abs(half.size - short_wav.size / 2) < 0.01 * short_wav.size
    # the resampler's edge differs only near the cut
    assert np.allclose(half[:-1000], short_wav[: half.size - 1000], atol=1e-6)


@pytest.mark.parametrize("name", ["en_jfk.flac", "en_fleurs_000.ogg"])
def test_a_truncated_compressed_file_gives_a_shorter_array(name: str) -> None:
    data = (BENCHMARK_DIR / name).read_bytes()
    full = decode_audio(data)
    cut = decode_audio(data[: len(data) // 3])
    assert 0 < cut.size < full.size * 0.6
    assert np.isfinite(cut).all()


def test_max_seconds_stops_an_overlong_decode() -> None:
    jfk = BENCHMARK_DIR / "en_jfk.flac"
    with pytest.raises(AudioError, match="longer than the limit of 2 s"):
        decode_audio(jfk, max_seconds=2)
    assert decode_audio(jfk, max_seconds=11.5).size == 11 * SAMPLE_RATE


def test_a_missing_ffmpeg_is_a_decode_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    error = decode_error(SHORT_WAV)
    assert "ffmpeg is not installed" in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)
    assert probe_duration(SHORT_WAV) is None


# ------------------------------------------------------------------------------------------
# ffmpeg never touches the network


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_playlist_naming_a_url_fetches_nothing(http_server: tuple[str, list[str]]) -> None:
    base, requests = http_server
    playlist = (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{base}/segment.ts\n#EXT-X-ENDLIST\n"
    ).encode()
    decode_error(playlist)
    assert probe_duration(base + "/clip.wav") is None
    assert requests == []
