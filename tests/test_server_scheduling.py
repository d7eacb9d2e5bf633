"""The HTTP mode's one model and its queue: /ping while loading, idle unload and reload, the
bounded FIFO (503 with Retry-After when full), and clients that leave (queued or running).

Each test starts its own real server (tiny.en), configured for what it checks.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from src.config import Settings
from src.service.processor import WhisperProcessor
from tests.conftest import Clip, LocalServer, wer
from tests.server_helpers import RunningServer, serving


@pytest.fixture
def temp_area(tmp_path: Path) -> Iterator[Path]:
    area = tmp_path / "tmp"
    area.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(area)
    yield area
    tempfile.tempdir = saved


@pytest.fixture(scope="module")
def long_clip(manifest: list[Clip]) -> Clip:
    return next(c for c in manifest if c.long_form)


def transcribe(server: RunningServer, clip: Clip) -> str:
    with OpenAI(base_url=server.api, api_key="-", max_retries=0, timeout=600) as client:
        return client.audio.transcriptions.create(
            file=(clip.path.name, clip.path.read_bytes()), model="whisper-1"
        ).text


def test_ping_follows_the_model_through_load_idle_unload_and_reload(
    jfk: Clip, temp_area: Path
) -> None:
    gate = threading.Event()

    def load_when_let() -> WhisperProcessor:
        gate.wait(120)
        return WhisperProcessor.from_settings(Settings.from_env())

    with serving(
        processor_factory=load_when_let, separate_health_port=True, model_idle_timeout=1.0
    ) as server:
        holder = server.app.services.model
        ping = f"{server.health_url}/ping"
        assert httpx.get(ping).status_code == 204
        # /ping has its own port here; the main port does not answer it
        assert httpx.get(f"{server.base_url}/ping").status_code == 404

        with ThreadPoolExecutor(1) as pool:
            early = pool.submit(transcribe, server, jfk)  # waits for the model, then is answered
            server.wait_until(lambda: server.app.services.slots.running > 0)
            assert httpx.get(ping).status_code == 204
            gate.set()
            assert wer(jfk.text, early.result(timeout=300)) < 0.15

        server.wait_until(lambda: holder.state == "unloaded")
        assert holder.unloads == 1
        assert httpx.get(ping).status_code == 204
        assert wer(jfk.text, transcribe(server, jfk)) < 0.15
        assert holder.loads == 2
        server.wait_idle()
    assert list(temp_area.iterdir()) == []


def test_a_full_queue_answers_503_and_leaving_clients_free_their_places(
    jfk: Clip, long_clip: Clip, temp_area: Path
) -> None:
    with serving(max_queue=1, max_concurrent_jobs=1) as server:
        server.wait_ready()
        scheduler = server.app.services.slots

        async def post(client: httpx.AsyncClient, clip: Clip) -> httpx.Response:
            return await client.post(
                f"{server.api}/audio/transcriptions",
                files={"file": (clip.path.name, clip.path.read_bytes())},
                data={"model": "whisper-1"},
            )

        async def until(check: object) -> None:
            for _ in range(6000):
                if check():  # type: ignore[operator]
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("the server did not reach the expected state in time")

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=600) as client:
                running = asyncio.create_task(post(client, long_clip))
                await until(lambda: scheduler.running)
                queued = asyncio.create_task(post(client, jfk))
                await until(lambda: scheduler.waiting == 1)

                # the one place in line is taken: the official SDK sees a 503 with Retry-After
                with (
                    OpenAI(base_url=server.api, api_key="-", max_retries=0) as sdk,
                    pytest.raises(openai.InternalServerError) as caught,
                ):
                    await asyncio.to_thread(
                        sdk.audio.transcriptions.create,
                        file=(jfk.path.name, jfk.path.read_bytes()),
                        model="whisper-1",
                    )
                assert caught.value.status_code == 503
                assert int(caught.value.response.headers["retry-after"]) >= 1
                assert caught.value.body["code"] == "queue_full"  # type: ignore[index]
                assert scheduler.stats.rejected == 1

                # the queued client leaves: its place is freed without it ever running
                queued.cancel()
                await until(lambda: scheduler.stats.cancelled == 1 and scheduler.waiting == 0)
                assert scheduler.running
                # the running client leaves: its decode stops at the next segment
                running.cancel()
                await until(lambda: scheduler.stats.cancelled == 2 and not scheduler.running)
                assert scheduler.stats.completed == 0

        asyncio.run(scenario())
        server.wait_until(
            lambda: not [t for t in threading.enumerate() if t.name.startswith("decode-")]
        )
        # and the server goes on serving
        assert wer(jfk.text, transcribe(server, jfk)) < 0.15
        assert scheduler.stats.completed == 1
        server.wait_idle()
    assert list(temp_area.iterdir()) == []


def test_a_stalled_url_download_holds_neither_the_model_nor_other_requests(
    jfk: Clip, temp_area: Path
) -> None:
    """A ``/v1/jobs`` URL whose server stalls (issue 21: it held the only decode slot) runs its
    download in its own place; an upload sent meanwhile is answered, then the stalled job too."""
    origin = LocalServer(jfk.path.read_bytes(), "audio/flac", "/stalled.flac", held=True)
    url = origin.url
    try:
        with serving(max_concurrent_jobs=2, allow_private=True) as server:
            server.wait_ready()
            with ThreadPoolExecutor(1) as pool:
                stalled = pool.submit(
                    httpx.post,
                    f"{server.api}/jobs",
                    json={"input": {"audio": {"url": url}}},
                    timeout=300,
                )
                assert origin.asked.wait(60)
                assert wer(jfk.text, transcribe(server, jfk)) < 0.15
                assert not stalled.done()  # still waiting on its download
                origin.release.set()
                reply = stalled.result(timeout=300)
            assert reply.status_code == 200, reply.text
            assert wer(jfk.text, reply.json()["transcription"]["text"]) < 0.15
            server.wait_idle()
    finally:
        origin.close()
    assert list(temp_area.iterdir()) == []
