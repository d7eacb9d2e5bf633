"""One file request's life in the HTTP door, the same for the OpenAI routes and the native job:

1. ``admitted``: a place in the scheduler (or 503), a request id, and a temp directory of the
   request's own for its upload, removed when the request ends however it ends;
2. ``decode_events``: its turn in the FIFO, a lease on the model, and the processor's blocking
   event generator run in a thread, its events read here as they come;
3. ``unless_disconnected``: a reply computed while the client is watched; when the client goes
   away the work is cancelled (a waiting request leaves the line, a running decode stops at the
   next segment) and ``ClientGone`` is raised;
4. ``sse_response``: a stream whose first event has already arrived (so that a request that
   fails before any output gets a proper status), which owns the request's resources until the
   stream ends or the client leaves.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import Request
from sse_starlette import EventSourceResponse, JSONServerSentEvent
from starlette.background import BackgroundTask

from src.processor import WhisperProcessor
from src.server.errors import api_error, log_unexpected
from src.server.model import ModelHolder
from src.server.scheduler import Scheduler, ThreadedIterator, Ticket

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")

#: seconds between keep-alive comments on an idle stream (a long first segment, a long queue)
SSE_PING_SECONDS = 10


class ClientGone(Exception):
    """The client disconnected before its reply was ready; nobody is left to answer."""


@dataclass(frozen=True)
class Call:
    """An admitted request: its id (for logs and the ``X-Request-Id`` header), its place in the
    scheduler, and its own temp directory."""

    request_id: str
    ticket: Ticket
    workdir: Path


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


@asynccontextmanager
async def admitted(request: Request) -> AsyncIterator[Call]:
    """Admit the request (``QueueFull`` when there is no place) for the block's duration."""
    scheduler: Scheduler = request.app.state.scheduler
    ticket = scheduler.admit()
    with ticket, tempfile.TemporaryDirectory(prefix="whisper-http-") as workdir:
        yield Call(new_request_id(), ticket, Path(workdir))


async def decode_events(
    call: Call, model: ModelHolder, make: Callable[[WhisperProcessor], Iterator[E]]
) -> AsyncGenerator[E, None]:
    """The events of ``make(processor)``, once it is this request's turn and the model is
    loaded. Closing this generator stops the decode and frees the turn."""
    name = f"decode-{call.request_id}"
    async with (
        call.ticket.turn(),
        model.use() as processor,
        ThreadedIterator(lambda: make(processor), name=name) as events,
    ):
        async for event in events:
            yield event


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
