"""Issue 6's features end to end through the local endpoint (RunPod's routes around the real
handler): streaming via /stream, progress in /status, several files, language detection."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from whisper_client.api import RunPodClient
from whisper_client.local_endpoint import LocalEndpoint, load_handler
from whisper_client.policy import PollPolicy
from whisper_client.transcribe import transcribe

from src.config import Settings
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, b64_file, wer

KEY = "features-key"


def client_for(endpoint: LocalEndpoint) -> RunPodClient:
    return RunPodClient(
        "feat", KEY, base_url=endpoint.base_url, poll=PollPolicy(initial=0.05, maximum=0.2)
    )


@pytest.fixture
def streaming_endpoint(handler_module: ModuleType) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(load_handler(stream=True), endpoint_id="feat", api_key=KEY) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(handler_module: ModuleType) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(load_handler(), endpoint_id="feat", api_key=KEY) as endpoint:
        yield endpoint


def test_streamed_segments_arrive_and_match_the_result(
    streaming_endpoint: LocalEndpoint, handler_module: ModuleType, jfk: Clip
) -> None:
    seen: list[dict[str, Any]] = []
    with client_for(streaming_endpoint) as client:
        result = transcribe(
            client, jfk.path, {"language": "en"}, on_segment=seen.append, transcode=False
        )
    assert seen and all(item["type"] == "segment" for item in seen)
    segments = result.output["transcription"]["segments"]
    assert [item["segment"] for item in seen] == segments
    assert wer(jfk.text, result.text) <= 0.05
    # The aggregated output kept by /status: all items, the last one the whole result.
    job = streaming_endpoint.queue.get(result.job_id)
    assert job is not None and job["status"] == "COMPLETED"
    assert job["output"][-1] == {"type": "result", "output": result.output}
    direct = handler_module.handler(
        {
            "id": "x",
            "input": {"audio": {"base64": b64_file(jfk.path)}, "options": {"language": "en"}},
        }
    )
    assert direct["transcription"] == result.output["transcription"]


def test_stream_of_a_failing_job(streaming_endpoint: LocalEndpoint) -> None:
    from whisper_client.errors import JobError

    with client_for(streaming_endpoint) as client:
        status = client.run({"audio": {"base64": base64.b64encode(b"no audio").decode()}})
        with pytest.raises(JobError) as failed:
            list(client.stream(status.id, timeout=60))
    assert failed.value.status == "FAILED" and "audio" in str(failed.value)


def test_progress_is_visible_in_status_while_in_progress(
    endpoint: LocalEndpoint, manifest: list[Clip]
) -> None:
    long_form = next(c for c in manifest if c.long_form)
    job_input = {
        "audio": {"base64": b64_file(long_form.path)},
        "options": {"output_format": "text", "vad_filter": False},
    }
    reports: list[dict[str, Any]] = []

    def watch(status: Any) -> None:
        if status.status == "IN_PROGRESS" and isinstance(status.output, dict):
            reports.append(status.output)

    with client_for(endpoint) as client:
        submitted = client.run(job_input)
        final = client.wait(submitted.id, timeout=600, on_status=watch)
    assert final.status == "COMPLETED"
    assert wer(long_form.text, final.output["transcription"]["text"]) <= 0.15
    assert reports, "no progress was seen while the job ran"
    fractions = [r["fraction"] for r in reports]
    assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1
    assert all(r["status"] == "transcribing" for r in reports)


def test_several_files_through_the_endpoint(endpoint: LocalEndpoint, manifest: list[Clip]) -> None:
    clips = [c for c in manifest if c.language == "en" and c.duration_s < 5][:2]
    job_input = {
        "audios": [
            {"name": "a.wav", "base64": b64_file(clips[0].path)},
            {"name": "b.wav", "base64": "not//base64!!"},
            {"name": "c.wav", "base64": b64_file(clips[1].path)},
        ],
        "options": {"output_format": "text"},
    }
    with client_for(endpoint) as client:
        final = client.wait(client.run(job_input).id, timeout=300)
    results = final.output["results"]
    assert [r["name"] for r in results] == ["a.wav", "b.wav", "c.wav"]
    assert "audio.base64" in results[1]["error"]
    assert wer(clips[0].text, results[0]["transcription"]["text"]) <= 0.3
    assert wer(clips[1].text, results[2]["transcription"]["text"]) <= 0.3


def test_detect_language_through_the_endpoint(
    handler_module: ModuleType, manifest: list[Clip], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = WhisperProcessor.from_settings(
        Settings.from_env({**os.environ, "WHISPER_MODEL": "base", "WARM_UP": "0"})
    )
    monkeypatch.setattr(handler_module, "get_processor", lambda: base)
    clip = next(c for c in manifest if c.language == "fr")
    with (
        LocalEndpoint(handler_module.handler, endpoint_id="feat", api_key=KEY) as ep,
        client_for(ep) as client,
    ):
        job_input = {
            "audio": {"base64": b64_file(clip.path)},
            "options": {"task": "detect_language", "top_languages": 4},
        }
        final = client.wait(client.run(job_input).id, timeout=300)
    detection = final.output["language_detection"]
    assert detection["language"] == "fr" and len(detection["languages"]) == 4
    assert detection["languages"][0] == {"language": "fr", "probability": detection["probability"]}
