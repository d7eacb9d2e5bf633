"""Segments flow as they are decoded, on every path: streaming and progress on long audio.

These are the pipeline's promises, checked on the real model and real speech: the first
streamed segment and a progress report arrive while most of the job is still ahead (ratios of
the same run's wall time, not timings), the one-shot result equals the last streamed item,
closing the stream stops the decode, and no timestamp in any output shape lies outside the
audio.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from src.engines.base import DecodeOptions
from src.engines.faster import FasterWhisperEngine
from src.request import parse_request
from src.service.processor import JobResult, SegmentDecoded, WhisperProcessor
from tests.conftest import Clip, b64_file, load_waveform, wer
from tests.service_helpers import transcribe

#: no temperature fallback: a fallback decode samples, and two samplings differ
DETERMINISTIC = {"temperature_increment_on_fallback": None}


@pytest.fixture(scope="module")
def long_form(manifest: list[Clip], handler_module: ModuleType) -> Clip:
    # the worker loads its model before it takes jobs (handler.main): so do the tests, or the
    # first job timed here would count the model's load as part of the job
    handler_module.get_processor()
    return next(c for c in manifest if c.long_form)


def timed(items: Any) -> list[tuple[float, Any]]:
    """Each item of an iterator with the seconds since the iteration began."""
    started = time.perf_counter()
    return [(time.perf_counter() - started, item) for item in items]


def test_stream_of_long_audio_starts_early_and_ends_with_the_one_shot_result(
    handler_module: ModuleType, long_form: Clip
) -> None:
    job = {"audio": {"base64": b64_file(long_form.path)}, "options": DETERMINISTIC}
    items = timed(handler_module.stream_handler({"id": "flow", "input": job}))
    total = items[-1][0]
    first_segment = next(t for t, item in items if item.get("type") == "segment")
    assert first_segment < 0.6 * total, (first_segment, total)
    segments = [item["segment"] for _, item in items if item.get("type") == "segment"]
    ends = [s["end"] for s in segments]
    assert ends == sorted(ends)  # released in timeline order whatever the decode order
    streamed = items[-1][1]["output"]
    assert streamed["transcription"]["segments"] == segments
    one_shot = handler_module.handler({"id": "flow-2", "input": job})
    assert one_shot["transcription"] == streamed["transcription"]
    assert streamed["metadata"]["decode"]["path"] == "batched"
    assert streamed["metadata"]["decode"]["chunks"] >= 8
    assert wer(long_form.text, streamed["transcription"]["text"]) < 0.1


def test_progress_of_long_audio_shows_a_fraction_early(
    handler_module: ModuleType, long_form: Clip
) -> None:
    job = {"id": "progress", "input": {"audio": {"base64": b64_file(long_form.path)}}}
    updates = timed(handler_module.job_updates(job))
    total = updates[-1][0]
    early = [
        (t, u["progress"]["fraction"])
        for t, u in updates
        if "progress" in u and 0 < u["progress"]["fraction"] < 0.9
    ]
    assert early and early[0][0] < 0.7 * total, (early, total)


def test_closing_the_stream_stops_the_decode(handler_module: ModuleType, long_form: Clip) -> None:
    processor: WhisperProcessor = handler_module.get_processor()
    job = parse_request({"audio": {"base64": b64_file(long_form.path)}})
    assert job.request.audio is not None
    started = time.perf_counter()
    events = processor.events(job.request.audio, job.request.options)
    first = next(events)
    assert isinstance(first, SegmentDecoded)
    events.close()  # what a door does when its client goes away
    stopped = time.perf_counter() - started
    # the model is free again at once, and the next job runs whole
    result = transcribe(processor, job.request)
    assert isinstance(result, JobResult) and result.transcript.segments
    whole = time.perf_counter() - started - stopped
    assert stopped < whole


def test_no_timestamp_outside_the_audio_in_any_shape(
    handler_module: ModuleType, manifest: list[Clip]
) -> None:
    clip = next(c for c in manifest if c.path.name == "en_ls-test-clean_1089-134686-0002.wav")
    audio_b64 = b64_file(clip.path)
    native = handler_module.handler(
        {"id": "n", "input": {"audio": {"base64": audio_b64}, "options": {"word_timestamps": True}}}
    )
    compat = handler_module.handler(
        {"id": "c", "input": {"audio_base64": audio_b64, "word_timestamps": True}}
    )
    duration = native["transcription"]["duration"]
    times = []
    for segment in native["transcription"]["segments"]:
        times += [segment["start"], segment["end"]]
        times += [t for w in segment["words"] for t in (w["start"], w["end"])]
    for segment in compat["segments"]:
        times += [segment["start"], segment["end"]]
    times += [t for w in compat["word_timestamps"] for t in (w["start"], w["end"])]
    assert times and all(0.0 <= t <= duration + 1e-6 for t in times), (max(times), duration)


def test_the_batched_path_releases_chunks_in_order_while_decoding(
    handler_module: ModuleType, long_form: Clip
) -> None:
    engine = handler_module.get_processor().engine
    assert isinstance(engine, FasterWhisperEngine)
    audio = load_waveform(long_form.path)
    decoding = engine.decode(audio, DecodeOptions(language="en"))
    assert decoding.info.path == "batched" and decoding.info.chunks
    items = timed(decoding.segments)
    starts = np.array([s.start for _, s in items])
    assert (np.diff(starts) >= 0).all()
    release_times = sorted({round(t, 3) for t, _ in items})
    assert len(release_times) >= 3  # several releases, not one at the end
