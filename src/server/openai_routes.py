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
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from src.server.auth import require_api_key
from src.server.lifecycle import Call, Door, handle
from src.server.openai_policy import file_events
from src.server.openai_request import AudioRequest, Route, parse_audio_request
from src.server.openai_responses import openai_body, stream_events
from src.server.settings import ServerSettings
from src.server.state import AppState
from src.server.uploads import read_form
from src.service.holder import ModelHolder
from src.service.processor import JobResult, ProcessorEvent, WhisperProcessor

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)])

#: the reply's media type for each text response format
_TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}

#: when this process started (a model card's ``created``)
_STARTED = int(time.time())


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(request: Request) -> Response:
    return await _audio(request, "transcriptions")


@router.post("/v1/audio/translations", response_model=None)
async def translations(request: Request) -> Response:
    return await _audio(request, "translations")


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The one served model (whatever ``model`` a request names, this one answers)."""
    state = AppState.of(request)
    return {"object": "list", "data": [model_card(state.settings, state.model)]}


@router.get("/v1/models/{model_id:path}")
async def model(request: Request, model_id: str) -> dict[str, Any]:
    state = AppState.of(request)
    return model_card(state.settings, state.model)


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


def _door(route: Route) -> Door[AudioRequest, ProcessorEvent]:
    async def receive(request: Request, call: Call) -> AudioRequest:
        settings = AppState.of(request).settings
        form = await read_form(request, call.workdir, settings.worker.download.max_bytes)
        return parse_audio_request(form, route)

    return Door(
        receive=receive,
        events=_events,
        streams=lambda parsed: parsed.stream,
        items=_stream,
        reply=_reply,
    )


async def _audio(request: Request, route: Route) -> Response:
    return await handle(request, _door(route))


def _events(
    parsed: AudioRequest, processor: WhisperProcessor, call: Call
) -> Iterator[ProcessorEvent]:
    return file_events(processor, parsed, call.request_id)


async def _collect(events: AsyncIterator[ProcessorEvent]) -> JobResult:
    async for event in events:
        if isinstance(event, JobResult):
            return event
    raise RuntimeError("the decode ended without a result")


def _body(result: JobResult, parsed: AudioRequest) -> dict[str, Any] | str:
    return openai_body(result.transcript, parsed)


async def _reply(
    parsed: AudioRequest, events: AsyncIterator[ProcessorEvent], call: Call
) -> Response:
    result = await _collect(events)
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


async def _stream(
    parsed: AudioRequest, events: AsyncIterator[ProcessorEvent]
) -> AsyncIterator[dict[str, Any]]:
    first = True
    async for event in events:
        for item in stream_events(event, parsed, first=first):
            yield item
        first = False
