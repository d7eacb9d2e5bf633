"""Property-based fuzzing of ``handler.handler`` with hostile job inputs and broken media.

Every case must come back as a result or as ``{"error": message}`` where the message is one the
worker wrote on purpose: never a traceback, never the "internal error" of an exception nobody
foresaw, and no job directory left behind. Each case is bounded by hypothesis' deadline, each
test by pytest-timeout.

The media are made once per module with ffmpeg and sox from real speech (the JFK clip), then
hypothesis truncates, bit-flips, splices and re-wraps their bytes.

``HYPOTHESIS_PROFILE=ci`` (the default) keeps the module well under 90 s on a CPU;
``HYPOTHESIS_PROFILE=soak`` runs ten times more cases (``--hypothesis-show-statistics`` counts
them).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Clip, wav_bytes

_BASE = settings(
    deadline=timedelta(seconds=30),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILES = {
    "ci": {"junk": 300, "media": 20},
    "soak": {"junk": 3000, "media": 200},
}
PROFILE = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")]
JUNK = settings(_BASE, max_examples=PROFILE["junk"])
MEDIA = settings(_BASE, max_examples=PROFILE["media"])
TIMEOUT = 120 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else 3000


@pytest.fixture(scope="module", autouse=True)
def job_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp area of this module's own (other processes share /tmp): every file a job makes
    lands here, so "nothing left" can be checked exactly."""
    area = tmp_path_factory.mktemp("job-tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(area)
    yield area
    tempfile.tempdir = saved


# --------------------------------------------------------------------------------------------
# the media, made once


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(jfk: Clip, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Name -> bytes of every kind of file the fuzzer starts from."""
    d = tmp_path_factory.mktemp("fuzz-media")
    src = str(jfk.path)
    speech = ["-ss", "1.5", "-t", "2.5", "-i", src]
    tone_video = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2.5"]
    _ffmpeg(*speech, "-ar", "16000", "-ac", "1", str(d / "speech.wav"))
    _ffmpeg(*speech, str(d / "speech.flac"))
    _ffmpeg(*speech, "-c:a", "libmp3lame", "-b:a", "32k", str(d / "speech.mp3"))
    _ffmpeg(*speech, "-c:a", "libopus", "-b:a", "16k", str(d / "speech.ogg"))
    _ffmpeg(*speech, "-c:a", "aac", "-b:a", "32k", str(d / "speech.m4a"))
    _ffmpeg(*speech, "-ar", "8000", str(d / "speech-8k.wav"))
    _ffmpeg(*speech, "-ar", "96000", "-c:a", "pcm_s24le", str(d / "speech-96k.wav"))
    _ffmpeg(*speech, "-ac", "6", "-c:a", "flac", str(d / "speech-6ch.flac"))
    _ffmpeg(*tone_video, *speech, "-c:v", "libx264", "-c:a", "aac", "-shortest", str(d / "av.mp4"))
    _ffmpeg(*tone_video, "-c:v", "libvpx", "-an", str(d / "video-only.webm"))
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "600", str(d / "silence.flac"))
    subprocess.run(
        ["sox", str(d / "speech.wav"), "-r", "8000", "-e", "u-law", str(d / "speech.au")],
        check=True,
    )
    files = {p.name: p.read_bytes() for p in sorted(d.iterdir())}
    files["one-sample.wav"] = wav_bytes(np.array([0.25], dtype=np.float32))
    files["empty"] = b""
    return files


# --------------------------------------------------------------------------------------------
# strategies

OUTPUT_FORMATS = ["text", "json", "srt", "vtt", "all", "verbose_json", "tsv", "bogus"]
OPTION_KEYS = [
    "task",
    "language",
    "temperature",
    "beam_size",
    "best_of",
    "output_format",
    "word_timestamps",
    "vad_filter",
    "vad_parameters",
    "initial_prompt",
    "custom_vocabulary",
    "denoise",
    "no_speech_threshold",
    "subtitles",
    "transcription",
    "translate",
    "model",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=16).map(lambda b: b.decode("latin-1"))
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
huge_strings = st.sampled_from([10_000, 1_000_000, 6_000_000]).flatmap(
    lambda n: st.sampled_from(["A", "=", "%", "\u00e9", "\x00", "QUJD"]).map(
        lambda c: c * (n // len(c))
    )
)
urls = st.one_of(
    st.text(max_size=60),
    st.builds(
        "{}://{}{}/{}{}".format,
        st.sampled_from(["http", "https", "file", "ftp", "gopher", "data", "HTTP", ""]),
        st.sampled_from(
            [
                "127.0.0.1",
                "127.0.0.1:1",
                "10.0.0.1",
                "169.254.169.254",
                "[::1]",
                "[::ffff:127.0.0.1]",
                "[fe80::1%25eth0]",
                "0",
                "2130706433",
                "0x7f.1",
                "localhost",
                "user:pw@127.0.0.1",
                "[",
                "",
                "256.256.256.256",
            ]
        ),
        st.sampled_from(["", ":80", ":0", ":99999", ":-1", ":abc"]),
        st.text(max_size=20),
        st.sampled_from(["", "?X-Amz-Signature=s3cret", "#frag", "?a=%zz"]),
    ),
)
base64_texts = st.one_of(
    st.text(max_size=200),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n",
        max_size=200,
    ),
    st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(
        ["data:", "data:audio/wav,AAAA", "data:;base64,", "====", "A", "AB=", "\u0000"]
    ),
)
options = st.dictionaries(
    st.sampled_from(OPTION_KEYS) | st.text(max_size=10),
    junk | st.sampled_from(OUTPUT_FORMATS),
    max_size=4,
)
audio_fields = st.one_of(
    junk,
    st.fixed_dictionaries({"url": urls}),
    st.fixed_dictionaries({"base64": base64_texts}),
    st.fixed_dictionaries({"base64": huge_strings}),
    st.fixed_dictionaries({"url": urls, "base64": base64_texts}),
    st.dictionaries(st.sampled_from(["url", "base64", "name", "format", "x"]), junk, max_size=3),
)
job_inputs = st.one_of(
    junk,
    huge_strings,
    st.fixed_dictionaries({"audio": audio_fields}, optional={"options": options | junk}),
    st.dictionaries(st.sampled_from(["audio", "options", "input", "webhook"]) | st.text(), junk),
    # the RunPod worker-faster_whisper shape
    st.fixed_dictionaries(
        {"audio_base64": base64_texts | junk},
        optional={"model": junk, "transcription": junk, "translate": junk, "language": junk},
    ),
)


def mutate(data: st.DataObject, original: bytes) -> bytes:
    """One of: as is, truncated, bit-flipped (often in the header), spliced, prefixed, doubled."""
    raw = bytearray(original)
    how = data.draw(st.sampled_from(["as-is", "truncate", "flip", "splice", "prefix", "double"]))
    if not raw or how == "as-is":
        return bytes(raw)
    if how == "truncate":
        return bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    if how == "flip":
        header = data.draw(st.booleans())
        for _ in range(data.draw(st.integers(1, 32))):
            end = min(len(raw), 512) if header else len(raw)
            at = data.draw(st.integers(0, end - 1))
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(raw)
    if how == "splice":
        at = data.draw(st.integers(0, len(raw)))
        return bytes(raw[:at]) + data.draw(st.binary(min_size=1, max_size=4096)) + bytes(raw[at:])
    if how == "prefix":
        return data.draw(st.binary(min_size=1, max_size=64)) + bytes(raw)
    return bytes(raw + raw)


def encode(data: st.DataObject, raw: bytes) -> str:
    text = base64.b64encode(raw).decode("ascii")
    form = data.draw(st.sampled_from(["plain", "urlsafe", "data-uri", "wrapped"]))
    if form == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    if form == "data-uri":
        return "data:audio/x-anything;base64," + text
    if form == "wrapped":
        return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    return text


# --------------------------------------------------------------------------------------------
# the property


def check(handler_module: ModuleType, job: dict[str, Any]) -> dict[str, Any]:
    """Run one job; the answer must be a clean result or a deliberate, clear error."""
    out = handler_module.handler(job)
    assert isinstance(out, dict)
    encoded = json.dumps(out)  # what RunPod will send back must serialise
    assert "Traceback" not in encoded
    if "error" in out:
        assert set(out) == {"error"}
        message = out["error"]
        assert isinstance(message, str) and 0 < len(message) < 2000
        assert not message.startswith("internal error"), message
        assert "s3cret" not in message
    assert os.listdir(tempfile.gettempdir()) == []  # nothing left in the temp area
    return out


@pytest.mark.timeout(TIMEOUT)
@JUNK
@given(job_input=job_inputs, job_id=junk)
def test_junk_job_inputs_give_clear_errors(
    handler_module: ModuleType, job_input: Any, job_id: Any
) -> None:
    check(handler_module, {"id": job_id, "input": job_input})


@pytest.mark.timeout(TIMEOUT)
@MEDIA
@given(data=st.data())
def test_broken_media_give_a_result_or_a_clear_error(
    handler_module: ModuleType, media: dict[str, bytes], data: st.DataObject
) -> None:
    # ten minutes of silence costs seconds per case; it runs intact in its own test below
    name = data.draw(st.sampled_from(sorted(set(media) - {"silence.flac"})), label="media")
    raw = mutate(data, media[name])
    opts = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "output_format": st.sampled_from(["text", "json", "srt", "vtt", "all"]),
                "word_timestamps": st.booleans(),
                "vad_filter": st.booleans(),
                "denoise": st.booleans(),
                "temperature": st.sampled_from([0.0, [0.0, 0.5]]),
            },
        ),
        label="options",
    )
    # beam 1 and no temperature fallback unless drawn: the media are under test, not the search
    opts = {"beam_size": 1, "temperature": 0.0} | opts
    job = {"id": "fuzz-media", "input": {"audio": {"base64": encode(data, raw)}, "options": opts}}
    check(handler_module, job)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize(
    "name",
    [
        "speech.wav",
        "speech.flac",
        "speech.mp3",
        "speech.ogg",
        "speech.m4a",
        "speech-8k.wav",
        "speech-96k.wav",
        "speech-6ch.flac",
        "speech.au",
        "av.mp4",
    ],
)
def test_every_intact_speech_file_is_transcribed(
    name: str, handler_module: ModuleType, media: dict[str, bytes]
) -> None:
    """The fuzz seeds themselves are good audio: a result with words, not an error."""
    options = {"output_format": "text", "beam_size": 1, "temperature": 0.0}
    job = {"audio": {"base64": base64.b64encode(media[name]).decode()}, "options": options}
    out = check(handler_module, {"id": "seed", "input": job})
    assert "america" in out["transcription"]["text"].lower()


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty", "audio.base64"),
        ("video-only.webm", "no audio stream"),
    ],
)
def test_files_without_audio_are_clear_errors(
    name: str, expected: str, handler_module: ModuleType, media: dict[str, bytes]
) -> None:
    out = check(
        handler_module,
        {"id": "seed", "input": {"audio": {"base64": base64.b64encode(media[name]).decode()}}},
    )
    assert expected in out["error"]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name", ["one-sample.wav", "silence.flac"])
def test_no_speech_gives_an_empty_transcript(
    name: str, handler_module: ModuleType, media: dict[str, bytes]
) -> None:
    job = {
        "audio": {"base64": base64.b64encode(media[name]).decode()},
        "options": {"output_format": "text"},
    }
    out = check(handler_module, {"id": "seed", "input": job})
    assert out["transcription"]["text"] == ""
