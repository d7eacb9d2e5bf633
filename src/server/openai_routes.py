"""OpenAI's speech-to-text routes: ``POST /v1/audio/transcriptions``, ``POST
/v1/audio/translations`` (multipart, as OpenAI defines them) and ``GET /v1/models``.

A request is admitted (or 503), its file streamed to its own temp directory under the byte cap
(413), its fields validated into the worker's request model (400, ``param`` naming the field),
then it waits its turn and is decoded. ``stream=true`` answers Server-Sent Events as segments are
decoded; otherwise the reply comes in ``response_format`` once the file is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import ClientDisconnect

from src.audio.source import UploadedAudio
from src.processor import JobResult, ProcessorEvent, SegmentDecoded, WhisperProcessor
from src.server.auth import require_api_key
from src.server.errors import error_response
from src.server.lifecycle import (
    Call,
    ClientGone,
    admitted,
    decode_events,
    sse_response,
    unless_disconnected,
)
from src.server.model import ModelHolder
from src.server.openai_request import AudioRequest, Route, parse_audio_request
from src.server.openai_responses import delta_event, done_event, response_body
from src.server.settings import ServerSettings
from src.server.uploads import read_form

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])

#: the reply's media type for each text response format
_TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}

#: when this process started (a model card's ``created``)
_STARTED = int(time.time())

#: what a request without a reply answers (nobody reads it: the client has gone)
_GONE = 499


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(request: Request) -> Response:
    return await _audio(request, "transcriptions")


@router.post("/v1/audio/translations", response_model=None)
async def translations(request: Request) -> Response:
    return await _audio(request, "translations")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The one served model (whatever ``model`` a request names, this one answers)."""
    settings: ServerSettings = request.app.state.settings
    holder: ModelHolder = request.app.state.model
    return {"object": "list", "data": [model_card(settings, holder)]}


@router.get("/v1/models/{model_id:path}")
async def model(request: Request, model_id: str) -> dict[str, Any]:
    settings: ServerSettings = request.app.state.settings
    return model_card(settings, request.app.state.model)


def model_card(settings: ServerSettings, holder: ModelHolder) -> dict[str, Any]:
    name = settings.worker.model
    info = holder.info
    return {
        "id": name,
        "object": "model",
        "created": _STARTED,
        "owned_by": "whisper-worker",
        # beyond OpenAI's fields: what the web page and clients may want to know
        "engine": settings.worker.engine,
        "multilingual": info.multilingual if info is not None else not name.endswith(".en"),
        "ready": holder.ready,
    }


async def _audio(request: Request, route: Route) -> Response:
    stack = AsyncExitStack()
    request_id = "-"
    try:
        call = await stack.enter_async_context(admitted(request))
        request_id = call.request_id
        settings: ServerSettings = request.app.state.settings
        form = await read_form(request, call.workdir, settings.worker.download.max_bytes)
        parsed = parse_audio_request(form, route)
        events = await stack.enter_async_context(
            aclosing(_events(call, request.app.state.model, parsed))
        )
        if parsed.stream:
            first = await unless_disconnected(request, events.__anext__)
            return sse_response(
                _first_stream_event(first, parsed),
                _stream(events, parsed),
                stack.pop_all(),
                request_id,
            )
        result = await unless_disconnected(request, lambda: _collect(events))
        return _reply(result, parsed, call)
    except (ClientGone, ClientDisconnect):
        logger.info("request %s: the client left before the reply", request_id)
        return Response(status_code=_GONE)
    except Exception as e:
        return error_response(e, request_id)
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()


def _events(
    call: Call, model: ModelHolder, parsed: AudioRequest
) -> AsyncGenerator[ProcessorEvent, None]:
    def make(processor: WhisperProcessor) -> Any:
        return processor.events(
            UploadedAudio(parsed.upload.path),
            parsed.options,
            job_id=call.request_id,
        )

    return decode_events(call, model, make)


async def _collect(events: AsyncIterator[ProcessorEvent]) -> JobResult:
    async for event in events:
        if isinstance(event, JobResult):
            return event
    raise RuntimeError("the decode ended without a result")


def _body(result: JobResult, parsed: AudioRequest) -> dict[str, Any] | str:
    return response_body(
        result.transcript, parsed.options, parsed.response_format, parsed.granularities
    )


def _reply(result: JobResult, parsed: AudioRequest, call: Call) -> Response:
    body = _body(result, parsed)
    headers = {"X-Request-Id": call.request_id}
    logger.info(
        "request %s: %s, %.1f s of audio in %.2f s",
        call.request_id,
        parsed.response_format,
        result.transcript.duration,
        result.timings.total,
    )
    if isinstance(body, str):
        media = _TEXT_TYPES.get(parsed.response_format, "text/plain")
        return PlainTextResponse(body, media_type=media, headers=headers)
    return JSONResponse(body, headers=headers)


def _first_stream_event(first: ProcessorEvent, parsed: AudioRequest) -> dict[str, Any]:
    if isinstance(first, SegmentDecoded):
        return delta_event(first.segment, first.duration, first=True)
    return _done(first, parsed)


async def _stream(
    events: AsyncIterator[ProcessorEvent], parsed: AudioRequest
) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        if isinstance(event, SegmentDecoded):
            yield delta_event(event.segment, event.duration, first=False)
        else:
            yield _done(event, parsed)


def _done(result: JobResult, parsed: AudioRequest) -> dict[str, Any]:
    return done_event(_body(result, parsed), result.transcript.text)
