"""RunPod's own SDK (``runpod.Endpoint``: ``run``, ``status``, ``output``, ``cancel``) against the
local endpoint around the real worker (``handler.job_updates``, tiny.en), with several jobs in
flight at once: each job's output is its own, a cancel frees its place for the next job, and
nothing is left in the temp area."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import runpod
from whisper_client.local_endpoint import LocalEndpoint
from whisper_client.local_queue import ProgressHandler

from tests.conftest import Clip, b64_file, wer

KEY = "sdk-key"
WORKERS = 2


@pytest.fixture
def endpoint(
    handler_module: ModuleType, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalEndpoint]:
    handler_module.get_processor()  # the model loaded before the first job
    worker = ProgressHandler(handler_module.job_updates)
    with LocalEndpoint(worker, endpoint_id="sdk", api_key=KEY, workers=WORKERS) as local:
        monkeypatch.setattr(runpod, "endpoint_url_base", local.base_url)
        yield local


def _input(clip: Clip) -> dict[str, Any]:
    return {"audio": {"base64": b64_file(clip.path)}, "options": {"language": "en"}}


def _until(check: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the endpoint did not reach the expected state"
        time.sleep(0.1)


def test_several_jobs_in_flight_each_get_their_own_output(
    endpoint: LocalEndpoint, manifest: list[Clip], private_tmp: Path
) -> None:
    clips = [c for c in manifest if c.language == "en" and not c.long_form][:4]
    sdk = runpod.Endpoint("sdk", api_key=KEY)
    jobs = [sdk.run(_input(clip)) for clip in clips]
    _until(lambda: endpoint.queue.health()["workers"]["running"] == WORKERS)
    for clip, job in zip(clips, jobs, strict=True):
        output = job.output(timeout=300)
        assert job.status() == "COMPLETED"
        assert wer(clip.text, output["transcription"]["text"]) < 0.3, clip.path.name
    assert list(private_tmp.iterdir()) == []


def test_a_cancel_frees_the_place_and_leaves_nothing_behind(
    endpoint: LocalEndpoint, manifest: list[Clip], jfk: Clip, private_tmp: Path
) -> None:
    long_clip = next(c for c in manifest if c.long_form)
    sdk = runpod.Endpoint("sdk", api_key=KEY)
    first, second = sdk.run(_input(long_clip)), sdk.run(_input(long_clip))
    waiting = sdk.run(_input(jfk))
    _until(lambda: first.status() == "IN_PROGRESS" and second.status() == "IN_PROGRESS")
    assert waiting.status() == "IN_QUEUE"  # both places are taken

    first.cancel()
    # the cancelled job's decode stops at its next step: its place goes to the waiting job
    # while the other long job still runs
    _until(lambda: waiting.status() != "IN_QUEUE")
    assert first.status() == "CANCELLED"
    assert second.status() == "IN_PROGRESS"

    second.cancel()
    output = waiting.output(timeout=300)
    assert waiting.status() == "COMPLETED"
    assert wer(jfk.text, output["transcription"]["text"]) < 0.15
    _until(lambda: endpoint.queue.health()["workers"]["running"] == 0)
    assert list(private_tmp.iterdir()) == []
