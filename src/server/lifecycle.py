"""One file request's life in the HTTP door, the same for the OpenAI routes and the native job
(``handle``); each route gives only how it reads its body and how its events become its reply.

1. ``received``: a request id and a temp directory of the request's own for its upload, removed
   when the request ends however it ends; the body is read (under the upload limits) before the
   request counts against the queue, so a client that drips its body holds no place;
2. ``JobSlots.admit``: a place among the admitted (or 503), then ``decode_events``: one of the
   ``MAX_CONCURRENT_JOBS`` places, a lease on the model, and the model service's blocking event
   generator read in worker threads (``iterate_in_thread``): downloads and ffmpeg of one request
   run while the model decodes another's steps;
3. ``unless_disconnected``: a reply computed while the client is watched; when the client goes
   away the work is cancelled (a waiting request leaves the line, a running decode stops at the
   next segment) and ``ClientGone`` is raised;
4. ``sse_response``: a stream whose first event has already arrived (so that a request that
   fails before any output gets a proper status), which owns the request's resources until the
   stream ends or the client leaves.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from fastapi import Request, Response
from sse_starlette import EventSourceResponse, JSONServerSentEvent
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from src.server.errors import api_error, error_response, log_unexpected
from src.server.state import AppState
from src.service.holder import ModelHolder
from src.service.processor import WhisperProcessor
from src.service.slots import Ticket
from src.service.threads import iterate_in_thread

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
P = TypeVar("P")

#: seconds between keep-alive comments on an idle stream (a long first segment, a long queue)
SSE_PING_SECONDS = 10
#: what a request without a reply answers (nobody reads it: the client has gone)
GONE = 499


class ClientGone(Exception):
    """The client disconnected before its reply was ready; nobody is left to answer."""


@dataclass(frozen=True)
class Call:
    """A received request: its id (for logs and the ``X-Request-Id`` header) and its own temp
    directory (its upload)."""

    request_id: str
    workdir: Path


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


@asynccontextmanager
async def received(request: Request) -> AsyncIterator[Call]:
    """The request's id and temp directory for the block's duration (no place in the queue).
    The directory (an upload of up to the body cap) is removed in a worker thread, not on the
    event loop, and even when the request is cancelled."""
    workdir = Path(tempfile.mkdtemp(prefix="whisper-http-"))
    try:
        yield Call(new_request_id(), workdir)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(functools.partial(shutil.rmtree, workdir, True))


async def decode_events(
    call: Call,
    ticket: Ticket,
    model: ModelHolder,
    make: Callable[[WhisperProcessor], Iterator[E]],
) -> AsyncGenerator[E, None]:
    """The events of ``make(processor)``, once the request holds a place and the model is
    loaded. Closing this generator stops the decode (at its next step) and frees the place."""
    async with (
        ticket.turn(),
        model.use() as processor,
        aclosing(iterate_in_thread(make(processor))) as events,
    ):
        async for event in events:
            yield event


@dataclass(frozen=True)
class Door(Generic[P, E]):
    """What one route adds to ``handle``: how it reads its body into a parsed request (before
    admission), the model service's events for it, whether it streams, and how the events
    become its Server-Sent Events or its one reply."""

    receive: Callable[[Request, Call], Awaitable[P]]
    events: Callable[[P, WhisperProcessor, Call], Iterator[E]]
    streams: Callable[[P], bool]
    items: Callable[[P, AsyncIterator[E]], AsyncIterator[dict[str, Any]]]
    reply: Callable[[P, AsyncIterator[E], Call], Awaitable[Response]]


async def handle(request: Request, door: Door[P, E]) -> Response:
    """One file request from its body to its reply; every error in OpenAI's shape."""
    state = AppState.of(request)
    stack = AsyncExitStack()
    request_id = "-"
    try:
        call = await stack.enter_async_context(received(request))
        request_id = call.request_id
        parsed = await door.receive(request, call)
        ticket = stack.enter_context(state.slots.admit())
        events = await stack.enter_async_context(
            aclosing(
                decode_events(
                    call,
                    ticket,
                    state.model,
                    lambda processor: door.events(parsed, processor, call),
                )
            )
        )
        if door.streams(parsed):
            items = door.items(parsed, events)
            first = await unless_disconnected(request, items.__anext__)
            return sse_response(first, items, stack.pop_all(), request_id)
        return await unless_disconnected(request, lambda: door.reply(parsed, events, call))
    except (ClientGone, ClientDisconnect):
        logger.info("request %s: the client left before the reply", request_id)
        return Response(status_code=GONE)
    except Exception as e:
        return error_response(e, request_id)
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, cancelled (raising ``ClientGone``) if the client disconnects first.

    The request's body must have been read already: what arrives next is its disconnect.
    """
    results: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await _wait_for_disconnect(request)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            results.append(await work())
        except Exception as e:  # re-raised below, outside the task group (no ExceptionGroup)
            errors.append(e)
        group.cancel_scope.cancel()
    if errors:
        raise errors[0]
    if not results:
        raise ClientGone()
    return results[0]


def sse_response(
    first: dict[str, Any],
    rest: AsyncIterator[dict[str, Any]],
    resources: AsyncExitStack,
    request_id: str,
) -> EventSourceResponse:
    """A Server-Sent Events reply: ``first``, then each event of ``rest``.

    ``resources`` (the request's place, temp directory and decode) is closed when the stream
    ends, fails or the client leaves. An error after the stream began is sent as a last event
    ``{"error": {...}}`` in OpenAI's shape (the ``openai`` SDK raises it as ``APIError``).
    """

    async def events() -> AsyncIterator[JSONServerSentEvent]:
        try:
            yield JSONServerSentEvent(first)
            async for event in rest:
                yield JSONServerSentEvent(event)
        except Exception as e:
            error = api_error(e)
            if error.status >= 500:
                log_unexpected(e, request_id)
            yield JSONServerSentEvent(error.body())
        finally:
            with anyio.CancelScope(shield=True):
                await resources.aclose()

    return EventSourceResponse(
        events(),
        ping=SSE_PING_SECONDS,
        headers={"X-Request-Id": request_id},
        # the request's resources go even if the stream never started (closing twice is a no-op)
        background=BackgroundTask(resources.aclose),
    )
