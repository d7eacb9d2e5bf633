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

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from src.formats import segment_dict
from src.jobs import JobEvent, JobOutput, SegmentEvent, job_events
from src.processor import WhisperProcessor
from src.request import Job, parse_request
from src.server.auth import require_api_key
from src.server.errors import InvalidField, error_response
from src.server.lifecycle import (
    ClientGone,
    admitted,
    decode_events,
    sse_response,
    unless_disconnected,
)
from src.server.settings import ServerSettings
from src.server.uploads import read_body

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])

#: room for the JSON around a base64 payload
_JSON_OVERHEAD = 1024 * 1024


def _parse(body: bytes) -> Job:
    try:
        job = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidField(f"the body is not valid JSON ({e})") from None
    if not isinstance(job, dict) or "input" not in job:
        raise InvalidField('expected a queue job: {"input": {...}}', param="input")
    unknown = sorted(set(job) - {"input", "id"})
    if unknown:
        raise InvalidField("unknown field (a job holds 'input')", param=unknown[0])
    return parse_request(job["input"])


def _item(event: JobEvent) -> dict[str, Any]:
    if isinstance(event, SegmentEvent):
        return {"type": "segment", "file": event.file, "segment": segment_dict(event.segment)}
    return {"type": "result", "output": event.output}


@router.post("/v1/jobs", response_model=None)
async def run(request: Request, stream: bool = False) -> Response:
    settings: ServerSettings = request.app.state.settings
    # base64 grows audio by a third; the decoded bytes meet the download cap again below
    limit = settings.worker.download.max_bytes * 4 // 3 + _JSON_OVERHEAD
    stack = AsyncExitStack()
    request_id = "-"
    try:
        call = await stack.enter_async_context(admitted(request))
        request_id = call.request_id
        job = _parse(await read_body(request, limit, "input"))

        def make(processor: WhisperProcessor) -> Any:
            return job_events(processor, job, job_id=call.request_id)

        events = await stack.enter_async_context(
            aclosing(decode_events(call, request.app.state.model, make))
        )
        if stream:
            first = await unless_disconnected(request, events.__anext__)
            return sse_response(_item(first), _items(events), stack.pop_all(), request_id)
        output = await unless_disconnected(request, lambda: _output(events))
        logger.info("request %s: job done", request_id)
        return JSONResponse(output, headers={"X-Request-Id": request_id})
    except (ClientGone, ClientDisconnect):
        logger.info("request %s: the client left before the reply", request_id)
        return Response(status_code=499)
    except Exception as e:
        return error_response(e, request_id)
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()


async def _output(events: AsyncIterator[JobEvent]) -> dict[str, Any]:
    async for event in events:
        if isinstance(event, JobOutput):
            return event.output
    raise RuntimeError("the job ended without an output")


async def _items(events: AsyncIterator[JobEvent]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        yield _item(event)
