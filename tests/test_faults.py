"""Faults inside a job: the model failing mid-decode, running out of memory, the disk failing.

Faults are injected at the lowest level the worker does not own: the CTranslate2 model's
``generate``, called lazily while faster-whisper's segment generator is consumed, raises the
error the real runtime raises. Each failing job gets an error; the next job works.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from types import ModuleType
from typing import Any

import pytest
import torch

from src.errors import ModelError, OutOfMemory, is_out_of_memory
from tests.conftest import Clip, b64_file, wer

JOB_TEMP_GLOB = os.path.join(tempfile.gettempdir(), "whisper-job-*")

#: what CTranslate2 raises on CUDA allocation failure (ctranslate2/src/cuda/allocator.cc)
CT2_OOM = "CUDA failed with error out of memory"


class FaultyModel:
    """The CTranslate2 model; ``generate`` raises ``errors`` in turn (``None``: a real call)."""

    def __init__(
        self,
        real: Any,
        errors: list[BaseException | None],
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        self._real = real
        self._errors = errors  # shared by the models of one engine: one sequence of calls
        self.generate_calls: list[dict[str, Any]] = [] if calls is None else calls

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.generate_calls.append(kwargs)
        error = self._errors.pop(0) if self._errors else None
        if error is not None:
            raise error
        return self._real.generate(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def inject(handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Any:
    engine = handler_module.get_processor().engine
    # the short-audio model and the long-audio path's own (on a multi-core CPU, a second one)
    models = list({id(m): m for m in (engine._model, engine.batched._model._model)}.values())

    def install(*errors: BaseException | None) -> FaultyModel:
        queue, calls = list(errors), []
        faulty = [FaultyModel(m.model, queue, calls) for m in models]
        for model, wrapper in zip(models, faulty, strict=True):
            monkeypatch.setattr(model, "model", wrapper)
        return faulty[0]

    return install


def jfk_job(jfk: Clip, **options: Any) -> dict[str, Any]:
    return {
        "id": "fault-job-0123456789abcdef",
        "input": {
            "audio": {"base64": b64_file(jfk.path)},
            "options": {"output_format": "text", **options},
        },
    }


def transcript_text(out: dict[str, Any]) -> str:
    assert "error" not in out, out
    text: str = out["transcription"]["text"]
    return text


@pytest.mark.parametrize(
    "oom",
    [
        RuntimeError(CT2_OOM),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    ],
    ids=["ctranslate2", "torch"],
)
def test_out_of_memory_is_retried_once_with_beam_size_1(
    oom: BaseException,
    inject: Any,
    handler_module: ModuleType,
    jfk: Clip,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faulty = inject(oom)
    with caplog.at_level(logging.WARNING, logger="src.service.processor"):
        out = handler_module.handler(jfk_job(jfk, beam_size=5, best_of=5))
    assert wer(jfk.text, transcript_text(out)) <= 0.05
    beams = [call["beam_size"] for call in faulty.generate_calls]
    assert beams[0] == 5 and set(beams[1:]) == {1}
    assert "out of memory" in caplog.text and "retrying once" in caplog.text


def test_out_of_memory_twice_fails_the_job_and_the_next_job_works(
    inject: Any, handler_module: ModuleType, jfk: Clip
) -> None:
    before = set(glob.glob(JOB_TEMP_GLOB))
    faulty = inject(RuntimeError(CT2_OOM), RuntimeError(CT2_OOM))
    out = handler_module.handler(jfk_job(jfk))
    assert set(out) == {"error"}
    assert "out of memory" in out["error"] and "beam_size 1" in out["error"]
    assert "Traceback" not in out["error"]
    assert len(faulty.generate_calls) == 2
    assert wer(jfk.text, transcript_text(handler_module.handler(jfk_job(jfk)))) <= 0.05
    assert set(glob.glob(JOB_TEMP_GLOB)) == before


def test_other_model_failures_are_not_retried(
    inject: Any, handler_module: ModuleType, jfk: Clip
) -> None:
    faulty = inject(RuntimeError("unsupported device configuration"))
    out = handler_module.handler(jfk_job(jfk))
    assert out == {"error": "transcription failed: RuntimeError"}
    assert len(faulty.generate_calls) == 1
    assert wer(jfk.text, transcript_text(handler_module.handler(jfk_job(jfk)))) <= 0.05


def test_a_failure_in_the_middle_of_a_long_decode(
    inject: Any, handler_module: ModuleType, manifest: list[Clip]
) -> None:
    """The second decode call fails after the first window decoded: no partial transcript."""
    long_clip = next(c for c in manifest if c.long_form and c.language == "en")
    faulty = inject(None, ValueError("corrupt state"))
    out = handler_module.handler(jfk_job(long_clip))
    assert out == {"error": "transcription failed: ValueError"}
    assert len(faulty.generate_calls) == 2


def test_an_unexpected_failure_leaves_no_files_and_no_message_text(
    handler_module: ModuleType, jfk: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fails while the audio is written: an internal error, nothing left behind."""
    import src.audio.source as source

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device: /secret/path")

    before = set(glob.glob(JOB_TEMP_GLOB))
    with monkeypatch.context() as m:
        m.setattr(source.os, "fdopen", disk_full)
        out = handler_module.handler(jfk_job(jfk))
    assert out == {"error": "internal error (OSError); the job was not completed"}
    assert set(glob.glob(JOB_TEMP_GLOB)) == before
    assert wer(jfk.text, transcript_text(handler_module.handler(jfk_job(jfk)))) <= 0.05


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError(CT2_OOM), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED"), True),
        (torch.cuda.OutOfMemoryError("CUDA out of memory."), True),
        (OutOfMemory("x"), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),  # only runtime errors are the runtime's words
        (MemoryError(), False),
        (None, False),
    ],
)
def test_out_of_memory_is_recognised(error: BaseException | None, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


def test_out_of_memory_is_recognised_through_an_engine_wrapper() -> None:
    """openai-whisper's engine wraps torch's error as ModelError ``from e``: still an OOM."""
    try:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        except RuntimeError as e:
            raise ModelError("transcription failed: OutOfMemoryError") from e
    except ModelError as wrapped:
        assert is_out_of_memory(wrapped)


def test_a_live_decode_that_runs_out_of_memory_is_retried_once(
    inject: Any, handler_module: ModuleType, jfk: Clip
) -> None:
    """The live sessions' contract (``decode_samples``) has the file decode's retry too."""
    from src.audio.decode import decode_audio
    from src.engines.base import DecodeOptions

    samples = decode_audio(jfk.path)
    faulty = inject(RuntimeError(CT2_OOM))
    options = DecodeOptions(language="en", beam_size=5, vad_filter=False)
    transcript = handler_module.get_processor().decode_samples(samples, options)
    assert wer(jfk.text, transcript.text) <= 0.05
    assert all(s.end <= len(samples) / 16000 for s in transcript.segments)
    beams = [call["beam_size"] for call in faulty.generate_calls]
    assert beams[0] == 5 and set(beams[1:]) == {1}
