"""Queue jobs that overlap, on the real model: several jobs in one worker through RunPod's own
job runner (``rp_job.run_job``), each with its own output; a job stuck in its download does not
hold the model from another; a stopped job frees its share and leaves nothing in the temp area.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from src.config import Settings
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, LocalServer, b64_file, serve_bytes, wer


@pytest.fixture
def overlapping(handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> WhisperProcessor:
    """The handler's model behind a processor that may fetch from loopback."""
    settings = Settings.from_env(
        {"WHISPER_MODEL": "tiny.en", "WARM_UP": "false", "ALLOW_PRIVATE_URLS": "true"}
    )
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    monkeypatch.setattr(handler_module, "get_processor", lambda: processor)
    return processor


@pytest.fixture
def held(jfk: Clip) -> Iterator[LocalServer]:
    """A local server whose ``/held.wav`` waits for ``release`` before it sends the clip."""
    with serve_bytes(jfk.path.read_bytes(), "audio/flac", "/held.wav", held=True) as server:
        yield server


def _job(job_id: str, audio: dict[str, str]) -> dict[str, Any]:
    return {"id": job_id, "input": {"audio": audio, "options": {"language": "en"}}}


def _text(result: dict[str, Any]) -> str:
    assert "error" not in result, result
    text: str = result["output"]["transcription"]["text"]
    return text


def _clips(manifest: list[Clip]) -> list[Clip]:
    short = [c for c in manifest if c.language == "en" and not c.long_form and c.duration_s < 12]
    return short[:4]


def test_several_jobs_at_once_each_get_their_own_output(
    handler_module: ModuleType,
    overlapping: WhisperProcessor,
    manifest: list[Clip],
    private_tmp: Path,
) -> None:
    from runpod.serverless.modules.rp_job import run_job

    clips = _clips(manifest)
    jobs = [_job(f"job-{n}", {"base64": b64_file(c.path)}) for n, c in enumerate(clips)]
    one_at_a_time = [handler_module.handler(job)["transcription"]["text"] for job in jobs]

    async def together() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(run_job(handler_module.concurrent_handler, j) for j in jobs))
        )

    results = asyncio.run(together())
    for clip, result, alone in zip(clips, results, one_at_a_time, strict=True):
        assert _text(result) == alone  # the same transcript as when it ran alone
        assert wer(clip.text, _text(result)) < 0.3
    assert overlapping.budget.held == 0
    assert list(private_tmp.iterdir()) == []


def test_a_job_waiting_on_its_download_does_not_hold_the_model_from_another(
    handler_module: ModuleType, overlapping: WhisperProcessor, held: LocalServer, jfk: Clip
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        slow = asyncio.create_task(
            handler_module.concurrent_handler(_job("slow", {"url": held.url}))
        )
        await asyncio.to_thread(held.asked.wait, 30)
        # the slow job's download has begun and waits: another job decodes meanwhile
        quick = await handler_module.concurrent_handler(
            _job("quick", {"base64": b64_file(jfk.path)})
        )
        assert not slow.done()
        held.release.set()
        return quick, await slow

    quick, slow = asyncio.run(scenario())
    assert wer(jfk.text, quick["transcription"]["text"]) < 0.15
    assert slow["transcription"]["text"] == quick["transcription"]["text"]


def test_a_stopped_job_frees_its_share_and_leaves_nothing_behind(
    handler_module: ModuleType,
    overlapping: WhisperProcessor,
    held: LocalServer,
    jfk: Clip,
    private_tmp: Path,
) -> None:
    """RunPod stops a job by cancelling its task (``JobScaler.stop_job``)."""

    async def scenario() -> dict[str, Any]:
        stopped = asyncio.create_task(
            handler_module.concurrent_handler(_job("stopped", {"url": held.url}))
        )
        other = asyncio.create_task(
            handler_module.concurrent_handler(_job("other", {"base64": b64_file(jfk.path)}))
        )
        await asyncio.to_thread(held.asked.wait, 30)
        stopped.cancel()
        held.release.set()  # the download under way ends; then the job stops, unfinished
        with pytest.raises(asyncio.CancelledError):
            await stopped
        return await other

    other = asyncio.run(scenario())
    assert wer(jfk.text, other["transcription"]["text"]) < 0.15
    assert overlapping.budget.held == 0
    assert list(private_tmp.iterdir()) == []


def test_streaming_jobs_at_once_each_stream_their_own_segments(
    handler_module: ModuleType, overlapping: WhisperProcessor, manifest: list[Clip]
) -> None:
    """The streaming worker with overlap: RunPod's generator runner over the async twin."""
    from runpod.serverless.modules.rp_job import run_job_generator

    clips = _clips(manifest)[:2]
    jobs = [_job(f"stream-{n}", {"base64": b64_file(c.path)}) for n, c in enumerate(clips)]

    async def stream(job: dict[str, Any]) -> list[dict[str, Any]]:
        gen = run_job_generator(handler_module.concurrent_stream_handler, job)
        return [item["output"] async for item in gen]

    async def together() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(stream(job) for job in jobs)))

    for clip, job, items in zip(clips, jobs, asyncio.run(together()), strict=True):
        alone = list(handler_module.stream_handler(job))
        assert _without_timings(items) == _without_timings(alone)
        *segments, last = items
        assert last["type"] == "result" and all(s["type"] == "segment" for s in segments)
        assert wer(clip.text, last["output"]["transcription"]["text"]) < 0.3


def _without_timings(items: list[dict[str, Any]]) -> list[Any]:
    """The items without what differs from run to run (wall-clock timings)."""
    out = []
    for item in items:
        if item.get("type") == "result":
            output = {k: v for k, v in item["output"].items() if k != "metadata"}
            out.append({"type": "result", "output": output})
        else:
            out.append(item)
    return out


def test_jobs_whose_audio_would_pass_the_budget_wait_their_turn_and_all_finish(
    handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch, jfk: Clip, private_tmp: Path
) -> None:
    """MAX_BUFFERED_AUDIO_SECONDS below two JFK clips (11 s each): the second job's samples wait
    for the first's to go; every job still completes with its own output."""
    settings = Settings.from_env(
        {"WHISPER_MODEL": "tiny.en", "WARM_UP": "false", "MAX_BUFFERED_AUDIO_SECONDS": "15"}
    )
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    monkeypatch.setattr(handler_module, "get_processor", lambda: processor)
    held: list[float] = []
    reserve = processor.budget.reserve

    @contextmanager
    def watched(seconds: float) -> Iterator[Any]:
        with reserve(seconds) as reservation:
            held.append(processor.budget.held)  # what all jobs hold once this one may go on
            yield reservation

    monkeypatch.setattr(processor.budget, "reserve", watched)

    async def together() -> list[dict[str, Any]]:
        jobs = [_job(f"budget-{n}", {"base64": b64_file(jfk.path)}) for n in range(3)]
        return list(await asyncio.gather(*(handler_module.concurrent_handler(j) for j in jobs)))

    for output in asyncio.run(together()):
        assert wer(jfk.text, output["transcription"]["text"]) < 0.15
    assert len(held) == 3 and max(held) <= 15.0  # never two JFK clips' samples at once
    assert processor.budget.held == 0
    assert list(private_tmp.iterdir()) == []
