"""One transcription through an endpoint: validate the options, build the input, run, interpret.

Shared by ``whisper-client run`` and the batch transcriber. The options are checked against
the worker's own schema (``whisper_client.options``, a JSON Schema generated from the worker's
request model) before anything is sent, so a typo costs an error message rather than a paid job.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisper_client.api import (
    RUN_MAX_BODY_BYTES,
    RUNSYNC_MAX_BODY_BYTES,
    JobStatus,
    RunPodClient,
    encode_body,
)
from whisper_client.errors import JobError
from whisper_client.options import check_options
from whisper_client.payload import PreparedAudio, prepare_audio
from whisper_client.policy import ExecutionPolicy

logger = logging.getLogger(__name__)


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as they will be sent, once the worker's schema has accepted them."""
    return check_options(options)


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class Transcription:
    """A completed job: the worker's output (``transcription`` + ``metadata``) and its id."""

    job_id: str
    output: dict[str, Any]

    @property
    def transcription(self) -> dict[str, Any]:
        body = self.output.get("transcription")
        return body if isinstance(body, dict) else {}

    @property
    def text(self) -> str:
        return str(self.transcription.get("text", ""))


def build_input(
    source: str | Path,
    options: Mapping[str, Any],
    *,
    body_limit: int = RUN_MAX_BODY_BYTES,
    transcode: bool = True,
    duration: float | None = None,
    webhook: str | None = None,
    policy: ExecutionPolicy | None = None,
) -> tuple[dict[str, Any], PreparedAudio | None]:
    """The job input for a URL (sent as is) or a local file (inline base64, within the limit)."""
    if is_url(source):
        return {"audio": {"url": str(source)}, "options": dict(options)}, None
    path = Path(source)
    # everything in the body but the audio, to know how many audio bytes are left
    skeleton = encode_body(
        {"audio": {"base64": ""}, "options": dict(options)}, webhook=webhook, policy=policy
    )
    max_bytes = (body_limit - len(skeleton)) * 3 // 4
    audio = prepare_audio(path, max_bytes=max_bytes, transcode=transcode, duration=duration)
    encoded = base64.b64encode(audio.data).decode("ascii")
    return {"audio": {"base64": encoded}, "options": dict(options)}, audio


def result_of(status: JobStatus) -> dict[str, Any]:
    """The output of a terminal job, or the ``JobError`` that says how it ended."""
    if status.status == "COMPLETED":
        if isinstance(status.output, dict) and "transcription" in status.output:
            return status.output
        raise JobError(status.id, "FAILED", f"job {status.id} completed without a transcription")
    reason = status.error or "no reason given"
    raise JobError(status.id, status.status, f"job {status.id} {status.status}: {reason[:500]}")


def run_job(
    client: RunPodClient,
    job_input: Mapping[str, Any],
    *,
    sync: bool = False,
    timeout: float | None = None,
    webhook: str | None = None,
    policy: ExecutionPolicy | None = None,
    on_status: Callable[[JobStatus], None] | None = None,
) -> Transcription:
    """Submit a built input and wait for it, within ``timeout`` seconds in all; ``on_status``
    sees every status polled (a running job's ``output`` is its progress report)."""
    started = time.monotonic()
    if sync:
        wait_s = 90.0 if timeout is None else min(timeout, 300.0)
        status = client.run_sync(job_input, wait_s=wait_s, webhook=webhook, policy=policy)
    else:
        status = client.run(job_input, webhook=webhook, policy=policy)
    if not status.terminal:
        remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
        status = client.wait(status.id, timeout=remaining, on_status=on_status)
    return Transcription(job_id=status.id, output=result_of(status))


def stream_job(
    client: RunPodClient,
    job_input: Mapping[str, Any],
    on_segment: Callable[[dict[str, Any]], None],
    *,
    timeout: float | None = None,
    webhook: str | None = None,
    policy: ExecutionPolicy | None = None,
) -> Transcription:
    """Submit to a streaming worker and hand each segment to ``on_segment`` as it arrives.

    The worker yields ``{"type": "segment", ...}`` items and last ``{"type": "result",
    "output": ...}``, which holds the same output a one-shot worker returns.
    """
    status = client.run(job_input, webhook=webhook, policy=policy)
    output: Any = None
    for item in client.stream(status.id, timeout=timeout):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "segment":
            on_segment(item)
        elif item.get("type") == "result":
            output = item.get("output")
    final = JobStatus(id=status.id, status="COMPLETED", output=output)
    return Transcription(job_id=status.id, output=result_of(final))


def transcribe(
    client: RunPodClient,
    source: str | Path,
    options: Mapping[str, Any] | None = None,
    *,
    sync: bool = False,
    timeout: float | None = None,
    transcode: bool = True,
    duration: float | None = None,
    webhook: str | None = None,
    policy: ExecutionPolicy | None = None,
    on_segment: Callable[[dict[str, Any]], None] | None = None,
) -> Transcription:
    """Transcribe a local file or a URL; raises a ``ClientError`` for every way it can fail."""
    options = validate_options(options or {})
    job_input, _ = build_input(
        source,
        options,
        body_limit=RUNSYNC_MAX_BODY_BYTES if sync else RUN_MAX_BODY_BYTES,
        transcode=transcode,
        duration=duration,
        webhook=webhook,
        policy=policy,
    )
    if on_segment is not None:
        return stream_job(
            client, job_input, on_segment, timeout=timeout, webhook=webhook, policy=policy
        )
    return run_job(client, job_input, sync=sync, timeout=timeout, webhook=webhook, policy=policy)
