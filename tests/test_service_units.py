"""The model service's sharing logic in seconds, without a model: the gate (live first, then
file steps in arrival order), the audio budget, the HTTP places (admission, FIFO, cancel), the
thread bridge (closing a generator whose reader stopped), the holder (load, idle unload,
reload) and the settings' one dialect."""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest

from src.audio.source import UploadedAudio
from src.config import Environment, Settings
from src.engines import sharing
from src.engines.base import (
    SAMPLE_RATE,
    DecodeInfo,
    DecodeOptions,
    Decoding,
    ModelInfo,
    Segment,
    Transcript,
)
from src.request import TranscribeOptions
from src.server.settings import ServerSettings
from src.service.budget import AudioBudget
from src.service.gate import ModelGate, Priority
from src.service.holder import ModelHolder
from src.service.processor import SegmentDecoded, WhisperProcessor
from src.service.slots import JobSlots, QueueFull
from src.service.threads import iterate_in_thread


def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the expected state was not reached"
        time.sleep(0.005)


# -- the gate -----------------------------------------------------------------------------------


def test_a_waiting_live_decode_goes_before_file_steps_that_came_earlier() -> None:
    gate = ModelGate()
    order: list[str] = []
    waiting: list[str] = []
    lock = threading.Lock()

    def use(name: str, priority: Priority) -> None:
        with lock:
            waiting.append(name)
        with gate.hold(priority):
            order.append(name)

    with gate.hold("file"):  # a file step holds the model
        threads = []
        for name, priority in [("file-1", "file"), ("file-2", "file"), ("live-1", "live")]:
            thread = threading.Thread(target=use, args=(name, priority))
            thread.start()
            threads.append(thread)
            _wait_for(lambda n=name: n in waiting)  # type: ignore[misc]
            time.sleep(0.02)  # and it is inside the gate's wait
        assert order == []
    for thread in threads:
        thread.join(5)
    assert order == ["live-1", "file-1", "file-2"]


def test_file_steps_go_by_their_jobs_arrival_not_by_the_steps() -> None:
    """A later job's step that waits longer still goes after an earlier job's step."""
    gate = ModelGate()
    early, late = gate.arrival(), gate.arrival()
    order: list[str] = []
    waiting: list[str] = []

    def step(name: str, rank: int) -> None:
        waiting.append(name)
        with gate.hold("file", rank):
            order.append(name)

    with gate.hold("file"):
        threads = []
        for name, rank in [("late-step", late), ("early-step", early), ("new-job", None)]:
            thread = threading.Thread(target=step, args=(name, rank))
            thread.start()
            threads.append(thread)
            _wait_for(lambda n=name: n in waiting)  # type: ignore[misc]
            time.sleep(0.02)
    for thread in threads:
        thread.join(5)
    assert order == ["early-step", "late-step", "new-job"]


#: one pass of a fake file decode on the model (a batched window, a coverage re-decode), and the
#: passes in one of its steps; the file's VAD, which does not use the model
PASS_S = 0.15
PASSES_PER_STEP = 6
VAD_S = 1.0


class SteppedEngine:
    """A file decode as the faster-whisper engine makes it, without a model: VAD off the model,
    then steps of several passes, each pass preceded by a step boundary (``sharing.let_in``);
    a live decode is one pass."""

    def __init__(self, steps: int, device: str = "cuda") -> None:
        self.info = ModelInfo("faster-whisper", "fake", device, "int8", multilingual=False)
        self.steps = steps
        self.passes = 0

    def decode(self, audio: Any, options: DecodeOptions) -> Decoding:
        with sharing.off_model():
            time.sleep(VAD_S)
        info = DecodeInfo("en", 1.0, len(audio) / SAMPLE_RATE, "batched", 3, (0.0,))
        return Decoding(info, self._segments())

    def _segments(self) -> Iterator[Segment]:
        for step in range(self.steps):
            for _ in range(PASSES_PER_STEP):
                sharing.let_in()
                time.sleep(PASS_S)
                self.passes += 1
            yield Segment(step, float(step), step + 1.0, " words", -0.1, 0.01, 1.0, 0.0)

    def transcribe(self, audio: Any, options: DecodeOptions) -> Transcript:
        time.sleep(PASS_S)
        return Transcript("", "en", 1.0, len(audio) / SAMPLE_RATE, ())


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_live_decode_waits_at_most_one_pass_while_a_file_decodes(
    tmp_path: Any, device: str
) -> None:
    """The file's VAD runs with the model free, and a live decode that comes while one of the
    file's steps runs goes in at the step's next boundary, not at its end (on a GPU); on a CPU
    it runs beside the step at once."""
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(bytes(2 * SAMPLE_RATE * 2))
    engine = SteppedEngine(steps=3, device=device)
    settings = Settings.from_env({"WHISPER_MODEL": "tiny.en", "WARM_UP": "false"})
    processor = WhisperProcessor(cast(Any, engine), settings)
    segments: list[SegmentDecoded] = []

    def file_job() -> None:
        for event in processor.events(UploadedAudio(path), TranscribeOptions(language="en")):
            if isinstance(event, SegmentDecoded):
                segments.append(event)

    job = threading.Thread(target=file_job)
    job.start()
    live = DecodeOptions(language="en", vad_filter=False)
    samples = np.zeros(SAMPLE_RATE, dtype=np.float32)
    time.sleep(0.5)  # the file is in its VAD (off the model)
    processor.decode_samples(samples, live)
    _wait_for(lambda: engine.passes >= 2)  # the file's first step is under way
    for _ in range(4):
        processor.decode_samples(samples, live)
        time.sleep(PASS_S * 1.7)  # the next one comes in the middle of a pass
    job.join(30)
    assert len(segments) == 3  # the file decoded to its end
    waits = [w.waited for w in processor.gate.live_waits]
    assert len(waits) == 5
    assert waits[0] < 0.1, f"the live decode waited for the file's VAD: {waits}"
    # one pass at most (a whole step is six passes), with a margin for a loaded machine
    assert max(waits) < (PASS_S if device == "cuda" else 0.0) + 0.1, waits
    # behind the file's steps (the hold it came in), never behind its start
    behind = {label for w in processor.gate.live_waits for label, _ in w.behind}
    assert behind <= {"file step"}, behind
    assert processor.gate.live_beside_files == (device == "cpu")


def test_a_file_step_gives_way_to_live_only_at_its_boundaries() -> None:
    """Between boundaries a file step keeps the model: a live decode never enters mid-pass,
    and with no live decode waiting a step is never cut (batched throughput stays)."""
    gate = ModelGate()
    log: list[str] = []
    in_step = threading.Event()

    def file_step() -> None:
        with gate.hold("file"):
            in_step.set()
            for k in range(4):
                sharing.let_in()
                log.append(f"pass {k} start")
                time.sleep(0.05)
                log.append(f"pass {k} end")

    thread = threading.Thread(target=file_step)
    thread.start()
    assert in_step.wait(5)
    time.sleep(0.02)
    with gate.hold("live"):
        log.append("live")
    thread.join(5)
    at = log.index("live")
    assert log[at - 1].endswith("end") and log[at + 1].endswith("start")
    assert log.count("live") == 1 and len(log) == 9
    assert not sharing.wanted()  # outside a held gate the engine's marks do nothing


def test_beside_files_a_live_decode_enters_at_once_but_one_live_and_one_file_at_a_time() -> None:
    gate = ModelGate(live_beside_files=True)
    log: list[str] = []
    file_in = threading.Event()
    file_out = threading.Event()

    def file_step(name: str) -> None:
        with gate.hold("file"):
            log.append(f"{name} in")
            file_in.set()
            file_out.wait(5)
            log.append(f"{name} out")

    first = threading.Thread(target=file_step, args=("file-1",))
    first.start()
    assert file_in.wait(5)
    second = threading.Thread(target=file_step, args=("file-2",))
    second.start()
    time.sleep(0.05)
    asked = time.perf_counter()
    with gate.hold("live"):  # beside file-1's step, at once
        assert time.perf_counter() - asked < 0.05
        log.append("live in")
        other_waits = threading.Event()

        def second_live() -> None:
            other_waits.set()
            with gate.hold("live"):
                log.append("live-2 in")

        other = threading.Thread(target=second_live)
        other.start()
        assert other_waits.wait(5)
        time.sleep(0.05)
        assert "live-2 in" not in log  # live decodes one at a time
        file_out.set()
        first.join(5)
        time.sleep(0.05)
        assert "file-2 in" not in log  # a file step never starts beside a live decode
        log.append("live out")
    other.join(5)
    second.join(5)
    assert log.index("live-2 in") < log.index("file-2 in")
    assert log[:3] == ["file-1 in", "live in", "file-1 out"]


# -- the audio budget ---------------------------------------------------------------------------


def test_the_audio_budget_holds_a_job_back_until_the_others_give_back() -> None:
    budget = AudioBudget(100.0)
    entered = threading.Event()
    with budget.reserve(80.0) as first:
        assert budget.held == 80.0

        def second() -> None:
            with budget.reserve(50.0):
                entered.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.05)
        assert not entered.is_set()  # 80 + 50 > 100: it waits
        first.shrink(30.0)  # the file was shorter than declared: 30 + 50 fits
        assert entered.wait(5)
        thread.join(5)
    assert budget.held == 0.0


def test_a_lone_job_longer_than_the_budget_still_runs() -> None:
    budget = AudioBudget(10.0)
    with budget.reserve(1000.0) as reservation:
        assert reservation.seconds == 10.0 and budget.held == 10.0
    assert budget.held == 0.0


# -- the HTTP places ----------------------------------------------------------------------------


def test_places_run_several_at_once_then_in_arrival_order_and_admission_is_bounded() -> None:
    async def scenario() -> None:
        slots = JobSlots(max_queue=2, slots=2)
        started: list[int] = []
        release = asyncio.Event()

        async def request(n: int) -> None:
            with slots.admit() as ticket:
                async with ticket.turn():
                    started.append(n)
                    await release.wait()

        tasks = []
        for n in range(4):
            tasks.append(asyncio.create_task(request(n)))
            await asyncio.sleep(0.01)
        assert started == [0, 1] and slots.running == 2 and slots.waiting == 2
        with pytest.raises(QueueFull) as full:
            slots.admit()
        assert full.value.retry_after >= 1 and slots.stats.rejected == 1
        tasks[2].cancel()  # a waiting client leaves: its place goes to the next
        await asyncio.sleep(0.01)
        assert slots.waiting == 1 and slots.stats.cancelled == 1
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert started == [0, 1, 3]
        assert (slots.running, slots.waiting, slots.stats.completed) == (0, 0, 3)

    asyncio.run(scenario())


# -- the thread bridge --------------------------------------------------------------------------


def test_a_cancelled_reader_closes_the_generator_after_its_current_step() -> None:
    closed = threading.Event()
    steps: list[int] = []

    def events() -> Iterator[int]:
        try:
            for n in range(100):
                time.sleep(0.02)  # one blocking step (a decode step, a download)
                steps.append(n)
                yield n
        finally:
            closed.set()

    async def scenario() -> list[int]:
        got: list[int] = []

        async def read() -> None:
            async for item in iterate_in_thread(events()):
                got.append(item)

        task = asyncio.create_task(read())
        while len(got) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(scenario())
    assert closed.is_set()  # the finally ran: temp directory gone, decode stopped
    assert len(steps) <= len(got) + 1  # at most the step under way when cancelled


def test_the_thread_bridge_hands_on_the_generators_error() -> None:
    def events() -> Iterator[int]:
        yield 1
        raise ValueError("bad audio")

    async def scenario() -> list[int]:
        got: list[int] = []
        async for item in iterate_in_thread(events()):
            got.append(item)
        return got

    with pytest.raises(ValueError, match="bad audio"):
        asyncio.run(scenario())


# -- the holder ---------------------------------------------------------------------------------


def test_the_holder_loads_once_unloads_when_idle_and_loads_again() -> None:
    made: list[object] = []

    def factory() -> WhisperProcessor:
        made.append(object())
        return cast(WhisperProcessor, made[-1])

    async def scenario() -> None:
        holder = ModelHolder(factory, idle_timeout=0.05)
        assert holder.state == "unloaded"
        async with holder.use() as first, holder.use() as second:
            assert first is second and holder.leases == 2
            await asyncio.sleep(0.1)
            assert holder.state == "ready"  # never unloaded while leased
        await asyncio.sleep(0.15)
        assert holder.state == "unloaded" and holder.unloads == 1
        async with holder.use() as again:
            assert again is made[1]
        assert holder.loads == 2
        await holder.close()

    asyncio.run(scenario())


def test_a_failed_load_is_reported_and_tried_again() -> None:
    attempts: list[int] = []

    def factory() -> WhisperProcessor:
        attempts.append(1)
        raise OSError("no model here")

    async def scenario() -> None:
        from src.errors import ModelError

        holder = ModelHolder(factory)
        for _ in range(2):
            with pytest.raises(ModelError):
                async with holder.use():
                    pass
        assert holder.state == "failed" and len(attempts) == 2

    asyncio.run(scenario())


# -- settings: one dialect ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAM_SEGMENTS", "ture"),
        ("WARM_UP", "ture"),
        ("ALLOW_PRIVATE_URLS", "maybe"),
        ("HF_HUB_OFFLINE", "sure"),
        ("MAX_CONCURRENT_JOBS", "0"),
        ("MAX_BUFFERED_AUDIO_SECONDS", "-1"),
        ("LIVE_MAX_SESSIONS", "0"),
        ("WORKER_MODE", "grpc"),
    ],
)
def test_a_value_that_cannot_be_read_stops_start_up_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ValueError, match=rf"{name}={value!r}"):
        Environment.read({name: value})


def test_every_number_and_boolean_is_read_the_same_way() -> None:
    env = Environment.read({"MAX_QUEUE": "+3", "CPU_THREADS": "+3", "WARM_UP": "Off"})
    assert (env.max_queue, env.cpu_threads, env.warm_up) == (3, 3, False)
    for name in ("STREAM_SEGMENTS", "WARM_UP", "ALLOW_PRIVATE_URLS", "HF_HUB_OFFLINE"):
        field = name.lower()
        for word, meaning in [("yes", True), ("ON", True), ("1", True), ("no", False)]:
            assert getattr(Environment.read({name: word}), field) is meaning
    settings = Settings.from_env({"MAX_CONCURRENT_JOBS": "6", "STREAM_SEGMENTS": "true"})
    assert (settings.max_concurrent_jobs, settings.stream_segments) == (6, True)
    assert ServerSettings.from_env({"PORT": "8000"}).port_health == 8000


def test_the_process_environment_is_read_by_pydantic_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "3")
    monkeypatch.setenv("LIVE_IDLE_TIMEOUT", " 7.5 ")
    env = Environment.read()
    assert (env.max_concurrent_jobs, env.live_idle_timeout) == (3, 7.5)
    monkeypatch.setenv("MAX_QUEUE", "many")
    with pytest.raises(ValueError, match="MAX_QUEUE='many'"):
        Environment.read()
