"""The HTTP mode's OpenAI routes, through the official ``openai`` SDK against the real server.

One server for the module (tiny.en, with an API key and a small upload cap); every request is
a real decode of real speech. After each test the module's temp area must be empty again: the
upload directories go whatever way a request ends.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import srt
import webvtt
from openai import OpenAI

from tests.conftest import Clip, wer
from tests.server_helpers import API_KEY, RunningServer, serving, translate

#: the upload cap of this module's server (the long-form clip, 4.2 MB, fits)
MAX_BYTES = 6 * 1024 * 1024
#: tiny.en on clean read speech stays well under this (the benchmark's figure is ~5%)
WER_LIMIT = 0.15


@pytest.fixture(scope="module")
def temp_area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The process's temp directory for this module, so what requests leave is countable."""
    area = tmp_path_factory.mktemp("server-tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(area)
    yield area
    tempfile.tempdir = saved


@pytest.fixture(scope="module")
def server(temp_area: Path) -> Iterator[RunningServer]:
    with serving(api_key=API_KEY, max_bytes=MAX_BYTES) as running:
        running.wait_ready()
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.api, api_key=API_KEY, max_retries=0, timeout=600) as c:
        yield c


@pytest.fixture(autouse=True)
def leaves_nothing(server: RunningServer, temp_area: Path) -> Iterator[None]:
    yield
    server.wait_idle()
    assert list(temp_area.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("decode-")]


@pytest.fixture(scope="module")
def long_clip(manifest: list[Clip]) -> Clip:
    return next(c for c in manifest if c.long_form)


def upload(clip: Clip) -> tuple[str, bytes]:
    return (clip.path.name, clip.path.read_bytes())


# ------------------------------------------------------------------------------ response formats


def test_json_is_the_transcript(client: OpenAI, jfk: Clip) -> None:
    result = client.audio.transcriptions.create(file=upload(jfk), model="whisper-1")
    assert wer(jfk.text, result.text) < WER_LIMIT
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == math.ceil(jfk.duration_s)


def test_text_srt_and_vtt_parse_with_real_parsers(client: OpenAI, jfk: Clip) -> None:
    text = client.audio.transcriptions.create(
        file=upload(jfk), model="whisper-1", response_format="text"
    )
    assert isinstance(text, str)
    assert wer(jfk.text, text) < WER_LIMIT

    body = client.audio.transcriptions.create(
        file=upload(jfk), model="whisper-1", response_format="srt"
    )
    cues = list(srt.parse(body))
    assert cues
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    assert all(c.start < c.end for c in cues)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert cues[-1].end.total_seconds() <= jfk.duration_s + 0.05
    assert wer(jfk.text, " ".join(c.content for c in cues)) < WER_LIMIT

    body = client.audio.transcriptions.create(
        file=upload(jfk), model="whisper-1", response_format="vtt"
    )
    captions = webvtt.from_string(body).captions
    assert captions
    assert all(c.start_in_seconds < c.end_in_seconds for c in captions)
    assert captions[-1].end_in_seconds <= jfk.duration_s + 0.05
    assert wer(jfk.text, " ".join(c.text for c in captions)) < WER_LIMIT


def test_verbose_json_segments_and_words(client: OpenAI, jfk: Clip) -> None:
    result = client.audio.transcriptions.create(
        file=upload(jfk),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "english"
    assert abs(result.duration - jfk.duration_s) < 0.1
    assert wer(jfk.text, result.text) < WER_LIMIT
    segments = result.segments
    assert segments
    assert [s.id for s in segments] == list(range(len(segments)))
    for s in segments:
        assert 0 <= s.start < s.end <= jfk.duration_s + 0.05
        assert s.avg_logprob <= 0 and 0 <= s.no_speech_prob <= 1 and s.compression_ratio > 0
        assert isinstance(s.seek, int) and isinstance(s.tokens, list)
        assert s.temperature is not None
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(segments))
    words = result.words
    assert words
    assert all(w.start <= w.end for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert words[-1].end <= jfk.duration_s + 0.05
    assert wer(jfk.text, " ".join(w.word for w in words)) < WER_LIMIT
    raw = result.model_dump()
    assert raw["task"] == "transcribe"

    only_words = client.audio.transcriptions.create(
        file=upload(jfk),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert only_words.words and only_words.segments is None

    default = client.audio.transcriptions.create(
        file=upload(jfk), model="whisper-1", response_format="verbose_json"
    )
    assert default.segments and default.words is None


def test_the_workers_own_options_as_form_fields(client: OpenAI, jfk: Clip) -> None:
    """Numbers, booleans and JSON objects in form fields, validated by the worker's model."""
    body = client.audio.transcriptions.create(
        file=upload(jfk),
        model="whisper-1",
        response_format="srt",
        extra_body={
            "beam_size": 2,
            "vad_filter": False,
            "custom_vocabulary": json.dumps({"americans": "AMERICANS"}),
            "subtitles": json.dumps({"max_chars_per_line": 20, "max_lines_per_cue": 1}),
        },
    )
    cues = list(srt.parse(body))
    assert len(cues) > 2
    assert all(len(line) <= 20 for c in cues for line in c.content.splitlines())
    assert "AMERICANS" in body


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"beam_size": "99"}, "beam_size"),
        ({"response_format": "docx"}, "response_format"),
        ({"colour": "blue"}, "colour"),
        ({"vad_parameters": "{not json"}, "vad_parameters"),
        ({"vad_parameters": json.dumps({"threshold": 7})}, "vad_parameters"),
        ({"language": "klingon"}, "language"),
        ({"temperature": "hot"}, "temperature"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),
        ({"stream": "maybe"}, "stream"),
    ],
)
def test_bad_fields_are_400_in_openais_shape(
    client: OpenAI, jfk: Clip, fields: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=upload(jfk), model="whisper-1", extra_body=fields)
    error = caught.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.body["type"] == "invalid_request_error"
    assert error.body["param"] == param
    assert param.rstrip("[]") in error.body["message"]


def test_bad_audio_and_missing_file(client: OpenAI, server: RunningServer, jfk: Clip) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=("notes.mp3", b"not audio at all"), model="x")
    assert caught.value.body["code"] == "decode_error"  # type: ignore[index]

    response = httpx.post(
        f"{server.api}/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"other": ("a.wav", b"RIFF")},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "other"

    response = httpx.post(
        f"{server.api}/audio/transcriptions",
        data={"model": "whisper-1"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"

    # tiny.en knows English only: a translation is a clear client error, not a crash
    with pytest.raises(openai.BadRequestError) as caught:
        translate(client, file=upload(jfk), model="whisper-1")
    assert caught.value.body["code"] == "unsupported_option"  # type: ignore[index]


def test_an_upload_over_the_cap_is_413(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    too_big = b"\0" * (MAX_BYTES + 1)
    # declared in Content-Length: refused before the body is read
    response = httpx.post(
        f"{server.api}/audio/transcriptions",
        files={"file": ("big.wav", too_big)},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    # chunked, no length: stopped once the file part passes the cap
    boundary = "worker-test-boundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{server.api}/audio/transcriptions",
        content=body(),
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "file"


def test_the_api_key_is_required_except_for_ping(server: RunningServer, jfk: Clip) -> None:
    with (
        OpenAI(base_url=server.api, api_key="wrong", max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        stranger.audio.transcriptions.create(file=upload(jfk), model="whisper-1")
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401
    assert httpx.post(f"{server.base_url}/v1/jobs", json={}).status_code == 401
    assert httpx.get(f"{server.base_url}/ping").status_code == 200


def test_models_lists_the_served_model(client: OpenAI, server: RunningServer) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [server.settings.worker.model]
    assert models[0].object == "model"
    assert client.models.retrieve(models[0].id).id == models[0].id


# ------------------------------------------------------------------------------ streaming


def test_the_stream_arrives_while_the_file_is_decoded(client: OpenAI, long_clip: Clip) -> None:
    started = time.perf_counter()
    first_delta: float | None = None
    deltas: list[str] = []
    ends: list[float] = []
    done: Any = None
    stream = client.audio.transcriptions.create(
        file=upload(long_clip), model="whisper-1", stream=True
    )
    for event in stream:
        if event.type == "transcript.text.delta":
            first_delta = first_delta or time.perf_counter() - started
            assert done is None
            deltas.append(event.delta)
            ends.append(event.model_dump()["segment"]["end"])
        elif event.type == "transcript.text.done":
            done = event
    total = time.perf_counter() - started
    assert done is not None and first_delta is not None
    print(f"\nfirst delta after {first_delta:.1f} s of {total:.1f} s ({len(deltas)} deltas)")
    assert first_delta < total
    assert len(deltas) > 10
    assert ends == sorted(ends) and ends[-1] <= long_clip.duration_s + 0.05
    assert wer(long_clip.text, "".join(deltas)) < WER_LIMIT
    assert wer(long_clip.text, done.text) < WER_LIMIT


def test_a_client_that_leaves_mid_stream_stops_its_decode(
    client: OpenAI, server: RunningServer, long_clip: Clip
) -> None:
    stats = server.app.services.slots.stats
    cancelled = stats.cancelled
    stream = client.audio.transcriptions.create(
        file=upload(long_clip), model="whisper-1", stream=True
    )
    first = next(iter(stream))
    assert first.type == "transcript.text.delta"
    stream.close()
    server.wait_until(lambda: stats.cancelled == cancelled + 1)
    server.wait_idle()


def test_streamed_verbose_json_ends_with_the_whole_response(client: OpenAI, jfk: Clip) -> None:
    events = list(
        client.audio.transcriptions.create(
            file=upload(jfk),
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            stream=True,
        )
    )
    done = events[-1].model_dump()
    assert done["type"] == "transcript.text.done"
    assert done["segments"] and done["words"] and done["language"] == "english"
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)


# ------------------------------------------------------------------------------ load


def test_six_concurrent_requests_are_all_answered(
    server: RunningServer, manifest: list[Clip]
) -> None:
    clips = [c for c in manifest if c.language == "en" and not c.long_form][:6]
    formats = ["json", "text", "srt", "vtt", "verbose_json", "json"]
    completed = server.app.services.slots.stats.completed

    def one(clip: Clip, fmt: str) -> tuple[Clip, Any]:
        with OpenAI(base_url=server.api, api_key=API_KEY, max_retries=0, timeout=600) as c:
            return clip, c.audio.transcriptions.create(
                file=upload(clip),
                model="whisper-1",
                response_format=fmt,  # type: ignore[arg-type]
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, clips, formats))
    assert len(results) == 6
    for (clip, result), fmt in zip(results, formats, strict=True):
        if fmt in ("json", "verbose_json"):
            text = result.text
        elif fmt == "srt":
            text = " ".join(c.content for c in srt.parse(result))
        elif fmt == "vtt":
            text = " ".join(c.text for c in webvtt.from_string(result).captions)
        else:
            text = result
        assert wer(clip.text, text) < 0.3, (clip.path.name, fmt)
    assert server.app.services.slots.stats.completed == completed + 6


# ------------------------------------------------------------------------------ the native job


def test_the_native_job_answers_what_the_queue_handler_answers(
    server: RunningServer, jfk: Clip, handler_module: Any
) -> None:
    job = {
        "input": {
            "audio": {"base64": base64.b64encode(jfk.path.read_bytes()).decode()},
            "options": {"output_format": "all"},
        }
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = httpx.post(f"{server.api}/jobs", json=job, headers=headers, timeout=300)
    assert response.status_code == 200
    over_http = response.json()
    from_queue = handler_module.handler({"id": "test", **job})
    assert over_http.keys() == from_queue.keys()
    assert over_http["transcription"] == from_queue["transcription"]
    assert over_http["metadata"].keys() == from_queue["metadata"].keys()

    # the streaming worker's items, over Server-Sent Events
    with httpx.stream(
        "POST", f"{server.api}/jobs?stream=true", json=job, headers=headers, timeout=300
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        items = [json.loads(line[5:]) for line in streamed.iter_lines() if line.startswith("data:")]
    assert {i["type"] for i in items[:-1]} == {"segment"}
    assert items[-1]["type"] == "result"
    assert items[-1]["output"]["transcription"]["text"] == over_http["transcription"]["text"]


def test_native_job_errors_name_the_field_and_keep_the_ssrf_guard(
    server: RunningServer, audio_server: str
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    bad = httpx.post(
        f"{server.api}/jobs",
        json={"input": {"audio": {"url": "ftp://x"}}},
        headers=headers,
    )
    assert bad.status_code == 400
    assert "audio.url" in bad.json()["error"]["message"]

    blocked = httpx.post(
        f"{server.api}/jobs",
        json={"input": {"audio": {"url": f"{audio_server}/jfk.flac"}}},
        headers=headers,
        timeout=60,
    )
    assert blocked.status_code == 400
    assert blocked.json()["error"]["code"] == "blocked_address"

    not_a_job = httpx.post(f"{server.api}/jobs", content=b"{", headers=headers)
    assert not_a_job.status_code == 400
