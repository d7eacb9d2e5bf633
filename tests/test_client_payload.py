"""Payload preparation: 16 kHz mono Opus from real clips, size budgets, limit errors, probing."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from pathlib import Path

import pytest
from whisper_client.api import RUN_MAX_BODY_BYTES, encode_body
from whisper_client.errors import AudioPrepError, ConfigError, PayloadTooLarge
from whisper_client.payload import OPUS_BITRATES, prepare_audio, transcode_to_opus
from whisper_client.probe import probe
from whisper_client.transcribe import build_input, validate_options

from tests.conftest import BENCHMARK_DIR, Clip

WAV = BENCHMARK_DIR / "en_ls-test-clean_1221-135766-0001.wav"  # 16.7 s, 16 kHz 16-bit mono


def opus_head(data: bytes) -> tuple[int, int]:
    """(channels, input sample rate) from the Ogg stream's OpusHead packet (RFC 7845)."""
    at = data.index(b"OpusHead")
    channels = data[at + 9]
    (rate,) = struct.unpack("<I", data[at + 12 : at + 16])
    return channels, rate


def ffprobe_json(path: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_transcode_gives_16khz_mono_opus_of_the_same_length(tmp_path: Path, jfk: Clip) -> None:
    data = transcode_to_opus(jfk.path)
    out = tmp_path / "jfk.ogg"
    out.write_bytes(data)

    assert data.startswith(b"OggS")
    assert opus_head(data) == (1, 16000)
    info = ffprobe_json(out)
    assert info["streams"][0]["codec_name"] == "opus"
    assert float(info["format"]["duration"]) == pytest.approx(jfk.duration_s, abs=0.1)


def test_size_reduction_on_real_audio(jfk: Clip) -> None:
    """Measured, not assumed: a 16 kHz WAV and a FLAC shrink by the factors in docs/client.md."""
    wav = prepare_audio(WAV, max_bytes=RUN_MAX_BODY_BYTES)
    flac = prepare_audio(jfk.path, max_bytes=RUN_MAX_BODY_BYTES)
    assert wav.transcoded and wav.bitrate == OPUS_BITRATES[0]
    assert wav.reduction > 8
    assert flac.reduction > 20  # this FLAC is 44.1 kHz stereo


def test_bitrate_steps_down_to_fit_the_budget() -> None:
    full = prepare_audio(WAV, max_bytes=RUN_MAX_BODY_BYTES)
    budget = int(len(full.data) * 0.8)

    smaller = prepare_audio(WAV, max_bytes=budget)

    assert smaller.bitrate is not None and smaller.bitrate < OPUS_BITRATES[0]
    assert len(smaller.data) <= budget


def test_known_duration_skips_bitrates_that_cannot_fit() -> None:
    budget = 16.7 * 13_000 / 8  # room for 13 kbit/s, not for 16 or 24
    prepared = prepare_audio(WAV, max_bytes=int(budget), duration=16.7)
    assert prepared.bitrate == OPUS_BITRATES[-1]


def test_too_large_even_at_the_lowest_bitrate_says_to_pass_a_url() -> None:
    with pytest.raises(PayloadTooLarge, match="pass its URL"):
        prepare_audio(WAV, max_bytes=5_000)


def test_without_transcoding_the_bytes_go_as_they_are() -> None:
    prepared = prepare_audio(WAV, max_bytes=RUN_MAX_BODY_BYTES, transcode=False)
    assert prepared.data == WAV.read_bytes()
    assert not prepared.transcoded and prepared.reduction == 1.0
    with pytest.raises(PayloadTooLarge, match="as is"):
        prepare_audio(WAV, max_bytes=1000, transcode=False)


def test_corrupt_or_missing_files_are_audio_prep_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(AudioPrepError, match="not readable as audio"):
        prepare_audio(junk, max_bytes=RUN_MAX_BODY_BYTES)
    with pytest.raises(AudioPrepError, match="cannot read"):
        prepare_audio(tmp_path / "gone.wav", max_bytes=RUN_MAX_BODY_BYTES)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=2"),
            *("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-shortest", str(path)),
        ],
        check=True,
    )
    return path


def test_a_video_file_sends_only_its_audio(video: Path) -> None:
    prepared = prepare_audio(video, max_bytes=RUN_MAX_BODY_BYTES)
    assert opus_head(prepared.data) == (1, 16000)
    assert prepared.reduction > 1


def test_probe_finds_audio_by_content(tmp_path: Path, jfk: Clip, video: Path) -> None:
    renamed = tmp_path / "recording"
    renamed.write_bytes(jfk.path.read_bytes())
    text = tmp_path / "notes.wav"
    text.write_text("hello\n")

    found = probe(renamed)
    assert found.has_audio and found.duration == pytest.approx(11.0, abs=0.05)
    assert probe(video).has_audio
    assert not probe(text).has_audio


def test_the_body_stays_within_the_limit_base64_and_options_included(jfk: Clip) -> None:
    options = {"language": "en", "initial_prompt": "Kennedy. " * 200}
    limit = 45_000  # the 24 kbit/s encoding (~33 kB, 44 kB as base64) does not fit

    job_input, audio = build_input(jfk.path, options, body_limit=limit)

    body = encode_body(job_input)
    assert len(body) <= limit
    assert audio is not None and audio.bitrate is not None and audio.bitrate < OPUS_BITRATES[0]
    assert base64.b64decode(job_input["audio"]["base64"]) == audio.data
    assert job_input["options"] == options


def test_urls_are_passed_through_untouched() -> None:
    url = "https://bucket.test/a.wav?X-Signature=abc"
    job_input, audio = build_input(url, {"language": "en"})
    assert job_input == {"audio": {"url": url}, "options": {"language": "en"}}
    assert audio is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"langauge": "en"}, "langauge: unknown field"),
        ({"beam_size": 0}, "beam_size"),
        ({"language": "klingon"}, "language"),
        ({"output_format": "docx"}, "output_format"),
    ],
)
def test_options_are_checked_by_the_workers_own_model(options: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=field):
        validate_options(options)
    assert validate_options({"language": "en", "word_timestamps": True}) == {
        "language": "en",
        "word_timestamps": True,
    }


def test_already_compact_audio_is_sent_as_it_is() -> None:
    """An Ogg/Opus clip would shrink by 5%: not worth a second lossy generation."""
    ogg = BENCHMARK_DIR / "en_fleurs_000.ogg"
    prepared = prepare_audio(ogg, max_bytes=RUN_MAX_BODY_BYTES)
    assert not prepared.transcoded
    assert prepared.data == ogg.read_bytes()
