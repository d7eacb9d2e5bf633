"""The worker's native job over HTTP: ``POST /v1/jobs`` with a queue job's body.

The body is what a RunPod queue job sends, ``{"input": {...}}`` (either input shape: the
native one or the official worker's), parsed by the same ``parse_request``; the reply is the
output the queue handler returns, so nothing the queue worker does is missing here (several
files, URL inputs behind the SSRF guard, detect_language, diarization, every output format).

``?stream=true`` answers Server-Sent Events with the streaming queue worker's items:
``{"type": "segment", "file", "segment"}`` per decoded segment, then ``{"type": "result",
"output"}``. Errors come in OpenAI's error shape, with their status, like every HTTP route.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from src.formats import segment_dict
from src.jobs import JobOutput, JobProgress, SegmentEvent, job_events
from src.request import Job, parse_request
from src.server.auth import require_api_key
from src.server.errors import InvalidField
from src.server.lifecycle import Call, Door, handle
from src.server.state import AppState
from src.server.uploads import parse_json, read_body
from src.service.processor import WhisperProcessor

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])

#: room for the JSON around a base64 payload
_JSON_OVERHEAD = 1024 * 1024


def _parse(body: bytes) -> Job:
    job = parse_json(body)  # 400 when not JSON or nested too deep
    if not isinstance(job, dict) or "input" not in job:
        raise InvalidField('expected a queue job: {"input": {...}}', param="input")
    unknown = sorted(set(job) - {"input", "id"})
    if unknown:
        raise InvalidField("unknown field (a job holds 'input')", param=unknown[0])
    return parse_request(job["input"])


def _item(event: JobProgress) -> dict[str, Any]:
    if isinstance(event, SegmentEvent):
        return {"type": "segment", "file": event.file, "segment": segment_dict(event.segment)}
    return {"type": "result", "output": event.output}


async def _receive(request: Request, call: Call) -> Job:
    settings = AppState.of(request).settings
    # base64 grows audio by a third; the decoded bytes meet the download cap again below
    limit = settings.worker.download.max_bytes * 4 // 3 + _JSON_OVERHEAD
    return _parse(await read_body(request, limit, "input"))


def _events(job: Job, processor: WhisperProcessor, call: Call) -> Iterator[JobProgress]:
    return job_events(processor, job, job_id=call.request_id)


async def _items(job: Job, events: AsyncIterator[JobProgress]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        yield _item(event)


async def _reply(job: Job, events: AsyncIterator[JobProgress], call: Call) -> Response:
    async for event in events:
        if isinstance(event, JobOutput):
            logger.info("request %s: job done", call.request_id)
            return JSONResponse(event.output, headers={"X-Request-Id": call.request_id})
    raise RuntimeError("the job ended without an output")


@router.post("/v1/jobs", response_model=None)
async def run(request: Request, stream: bool = False) -> Response:
    door: Door[Job, JobProgress] = Door(
        receive=_receive,
        events=_events,
        streams=lambda _: stream,
        items=_items,
        reply=_reply,
    )
    return await handle(request, door)
