"""``GET /v1/realtime?intent=transcription``: live transcription over a WebSocket, speaking OpenAI's
Realtime API in transcription mode (wire format: ``src/server/realtime_events.py``; policy:
``src.live.session``).

A connection, in order of what happens:

1. The handshake is accepted (choosing the ``realtime`` subprotocol when offered). With
   ``API_KEY`` set the key must come as ``Authorization: Bearer`` or the
   ``openai-insecure-api-key.<key>`` subprotocol browsers use (never a query parameter: proxies
   log those); otherwise an ``error`` event (code ``invalid_api_key``) is sent and the socket
   closed with 1008. Over ``LIVE_MAX_SESSIONS`` open sessions, or
   ``LIVE_MAX_SESSIONS_PER_CLIENT`` for the client's address (``state.client_key``), an
   ``error`` (code ``session_limit``) and 1013.
   These refusals come after the handshake, as OpenAI's own server sends them (an ``error``
   event, then the close): the ``openai`` SDK yields that event to its user as any other
   (``conn.recv()``) and retries a 1013 close when asked to reconnect, and a browser's
   WebSocket shows the message, where a refused handshake shows a status at most (a browser:
   nothing). Refusals before the route (a head over the limit, a path with no socket) are HTTP
   answers in OpenAI's error shape (``src/server/edge.py``).
2. ``session.created`` with the defaults: 24 kHz PCM16, server VAD (threshold 0.5, 300 ms
   prefix padding, 500 ms silence), the worker's model, language detected.
3. The client's events are read as they come, at most ``FRAME_RATE`` bytes a second after a
   first burst of one full frame (``MAX_FRAME_BYTES``, room for one 15 MiB append as base64),
   and frames of ``LARGE_FRAME`` bytes or more of all sessions together at ``LARGE_RATE``:
   past that pace the socket is not read until the pace allows (TCP slows the client; uvicorn
   holds one received message a socket), and a frame that would wait over ``MAX_PACE_WAIT``
   is dropped with an ``error`` (code ``rate_limit_exceeded``) instead, the socket then left
   unread for ``MAX_PACE_WAIT`` (within the keepalive's 20 s). The work of each
   event (JSON parsing, base64, conversion, the VAD) runs in threads, never on the event loop,
   so no number of busy sockets can stall ``/ping`` or other requests: frames of
   ``LARGE_FRAME`` bytes or more one at a time across all sessions (``_large``, which bounds
   the memory they take), smaller ones and the session's own steps in ``_small``
   (``SMALL_THREADS``), so a session streaming at real time never waits behind another's
   huge append. One decode at a time runs in a worker thread
   through
   ``processor.decode_samples`` (live decodes go before file decodes at the model's gate), and
   its results go out as soon as they are in. Events go out in the order they were made.
4. The session ends when the client closes or vanishes (everything it held is dropped; a decode
   under way finishes in its thread and is thrown away), after ``LIVE_IDLE_TIMEOUT`` seconds
   without a client event while no committed turn awaits its transcript (an ``error`` with code
   ``idle_timeout``, then 1000), or when the model
   cannot be loaded (an ``error``, then 1011).

A session holds the model (``AppState.model.use()``) for its whole life, so an idle unload
waits for open sessions. ``AppState.live`` (``LiveSessions``) counts the open ones.

Client mistakes get an ``error`` event and the connection stays up: bad JSON (or JSON nested
deeper than the parser goes: code ``invalid_json``, the message never quoting it), unknown event
types or fields (``param`` names the field), bad base64, an empty commit (code
``input_audio_buffer_commit_empty``), audio over the session's buffer cap (code
``input_audio_buffer_full``; the chunk is dropped).

For a client (the web page's ``#record``, the SDK), one turn with server VAD reads:

    input_audio_buffer.speech_started    {item_id, audio_start_ms}
    conversation.item.input_audio_transcription.delta   {item_id, delta}   (0 or more, while
                                          the turn is spoken: words two decodes agreed on;
                                          joined, they are the turn's text so far)
    input_audio_buffer.speech_stopped    {item_id, audio_end_ms}
    input_audio_buffer.committed         {item_id, previous_item_id}
    ...delta                             (maybe one more: the words the final decode adds)
    ...completed                         {item_id, transcript}: the final text of the turn,
                                          to show in place of its deltas (it may differ a little)

``completed`` events come in commit order. To end a recording while someone is still speaking,
send ``input_audio_buffer.commit`` only when a ``speech_started`` has had no ``committed`` yet
(the turn being spoken is then committed at once, without ``speech_stopped``); once every item
is committed, a commit is answered with an ``input_audio_buffer_commit_empty`` error instead.
With ``turn_detection: null`` there are no VAD events: deltas come for the uncommitted buffer
(their ``item_id`` is the one ``committed`` will carry) and ``commit`` ends the item.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from src.errors import InvalidRequest, ModelError, WorkerError
from src.live.events import LiveEvent, TranscriptCompleted
from src.live.session import BufferFull, DecodeJob, EmptyCommit, LiveSession
from src.live.settings import LiveSettings
from src.server.auth import check_websocket, key_matches
from src.server.edge import MAX_FRAME_BYTES
from src.server.errors import log_unexpected
from src.server.realtime_events import (
    BufferAppend,
    BufferClear,
    BufferCommit,
    ClientEvent,
    ProtocolError,
    RealtimeSession,
    SessionUpdate,
    decode_audio,
    error_event,
    parse_client_event,
    protocol_error_event,
    session_event,
    wire_event,
)
from src.server.state import AppState, SessionLimit, client_key
from src.service.processor import WhisperProcessor

logger = logging.getLogger(__name__)

router = APIRouter()

SUBPROTOCOL = "realtime"
#: how browsers pass the API key (they cannot set headers on a WebSocket)
KEY_SUBPROTOCOL = "openai-insecure-api-key."
#: how long the last events (an error, a completed) may take to go out before the close
FLUSH_SECONDS = 5.0

#: the pace of one session's client frames, in bytes a second after a burst of one full frame:
#: 4 times real time for 24 kHz PCM16 as base64 (64 KiB a second)
FRAME_RATE = 256 * 1024
#: a frame at least this large is parsed and its audio run through the VAD in ``_large``
LARGE_FRAME = 1024 * 1024
#: threads for small frames and the sessions' own steps, all sessions together
SMALL_THREADS = 2

T = TypeVar("T")

_large = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realtime-large")
_small = ThreadPoolExecutor(max_workers=SMALL_THREADS, thread_name_prefix="realtime-small")

#: WebSocket close codes
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
INTERNAL_ERROR = 1011
NORMAL = 1000


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    await websocket.accept(subprotocol=_chosen_subprotocol(offered))
    if not _authorized(websocket, offered):
        await _refuse(
            websocket,
            error_event(
                "invalid or missing API key: send it as 'Authorization: Bearer <key>' or the "
                "'openai-insecure-api-key.<key>' subprotocol",
                code="invalid_api_key",
            ),
            POLICY_VIOLATION,
            "invalid API key",
        )
        return
    intent = websocket.query_params.get("intent")
    if intent not in (None, "transcription"):
        await _refuse(
            websocket,
            error_event(
                f"{intent!r}: this server serves transcription sessions only "
                "(allowed: 'transcription')",
                code="invalid_value",
                param="intent",
            ),
            POLICY_VIOLATION,
            "transcription only",
        )
        return
    sessions = AppState.of(websocket).live
    client = client_key(websocket.client.host if websocket.client else None)
    refused = sessions.try_open(client)
    if refused is not None:
        logger.debug("live session refused: %s limit", refused)
        reason = "too many live sessions" + (" of this client" if refused == "client" else "")
        await _refuse(websocket, _limit_event(refused, sessions.settings), TRY_AGAIN_LATER, reason)
        return
    try:
        await _Connection(websocket, sessions.settings).run()
    finally:
        sessions.close(client)


def _limit_event(refused: SessionLimit, settings: LiveSettings) -> dict[str, Any]:
    if refused == "server":
        message = (
            f"this server already has {settings.max_sessions} live sessions open "
            "(LIVE_MAX_SESSIONS); try again later"
        )
    else:
        message = (
            f"this client already has {settings.per_client} live sessions open "
            "(LIVE_MAX_SESSIONS_PER_CLIENT); close one or try again later"
        )
    return error_event(message, type="server_error", code="session_limit")


def _chosen_subprotocol(offered: list[str]) -> str | None:
    """``realtime`` when offered, else any offered one but a key (never echoed back)."""
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if not p.startswith(KEY_SUBPROTOCOL)), None)


def _authorized(websocket: WebSocket, offered: list[str]) -> bool:
    if check_websocket(websocket):
        return True
    expected = AppState.of(websocket).settings.api_key
    if expected is None:
        return True
    return any(
        key_matches(p[len(KEY_SUBPROTOCOL) :], expected)
        for p in offered
        if p.startswith(KEY_SUBPROTOCOL)
    )


async def _refuse(websocket: WebSocket, event: dict[str, Any], code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await websocket.send_text(json.dumps(event))
        await websocket.close(code, reason)


class FramePace:
    """A token bucket over a socket's frame bytes: ``burst`` at once, then ``rate`` a second."""

    def __init__(self, rate: float = FRAME_RATE, burst: float = MAX_FRAME_BYTES) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def delay(self, size: int) -> float:
        """Take ``size`` bytes; the seconds to wait before the frame may be handled."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= size
        return max(0.0, -self.tokens / self.rate)

    def give_back(self, size: int) -> None:
        """Return what ``delay`` took for a frame that was dropped instead."""
        self.tokens = min(self.burst, self.tokens + size)


#: all sessions' large frames together, in bytes a second (about 22 s of audio a second)
LARGE_RATE = 1024 * 1024
#: a frame that would have to wait longer than this for its pace is dropped (an ``error``,
#: code ``rate_limit_exceeded``), so no socket goes unread long enough to miss its keepalive
MAX_PACE_WAIT = 10.0
_large_pace = FramePace(LARGE_RATE, MAX_FRAME_BYTES)


def _parse(text: str) -> tuple[ClientEvent, bytes | None]:
    """A frame's event and, for an append, its audio bytes (run in a CPU thread)."""
    try:
        event = parse_client_event(text)
    except RecursionError:
        raise ProtocolError("the event is nested too deeply", code="invalid_json") from None
    return event, decode_audio(event) if isinstance(event, BufferAppend) else None


class _Connection:
    """One accepted socket: its live session, a reader, a decoder and a writer task.

    The session is touched under ``lock``, in a CPU thread, one call at a time: the reader's
    appends and the decoder's next job and results never interleave.
    """

    def __init__(self, websocket: WebSocket, settings: LiveSettings) -> None:
        self.ws = websocket
        self.settings = settings
        app = AppState.of(websocket)
        self.model = app.model
        self.state = RealtimeSession.new(app.settings.worker.model)
        self.session = LiveSession(
            self.state.config(), max_buffer_seconds=settings.max_buffer_seconds
        )
        self.processor: WhisperProcessor | None = None
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.items = 0
        #: when a client event came or a decode ended last (the idle clock)
        self.active_at = time.monotonic()
        self.decoding = False
        self.lock = asyncio.Lock()
        self.pace = FramePace()

    async def _cpu(self, work: Callable[[], T], large: bool = False) -> T:
        """``work()`` in the realtime threads, off the event loop."""
        pool = _large if large else _small
        return await asyncio.get_running_loop().run_in_executor(pool, work)

    async def _in_session(self, work: Callable[[], T], large: bool = False) -> T:
        async with self.lock:
            return await self._cpu(work, large)

    async def run(self) -> None:
        started = time.monotonic()
        logger.info("live session %s opened", self.state.id)
        self.emit(session_event("session.created", self.state))
        sender = asyncio.create_task(self._send_loop())
        tasks = [
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._decode_loop()),
            asyncio.create_task(self._watch_idle()),
        ]
        close: tuple[int, str] | None = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            close = next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.outbox.put_nowait(None)
            if close is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), FLUSH_SECONDS)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if close is not None and self.ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await self.ws.close(*close)
            logger.info(
                "live session %s closed after %.0f s: %d items, %.0f s of audio",
                self.state.id,
                time.monotonic() - started,
                self.items,
                self.session.position / 16000,
            )

    def emit(self, event: dict[str, Any]) -> None:
        self.outbox.put_nowait(event)

    def emit_live(self, events: list[LiveEvent]) -> None:
        for event in events:
            if isinstance(event, TranscriptCompleted):
                self.items += 1
            self.emit(wire_event(event))

    async def _send_loop(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(event))
            except Exception:  # the client is gone; the reader sees it too
                logger.debug("live session %s: send failed", self.state.id)
                return

    async def _receive_loop(self) -> None:
        """Read client events until the client leaves."""
        while True:
            message = await self.ws.receive()
            self.active_at = time.monotonic()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            size = len(text if text is not None else message.get("bytes") or b"")
            if not await self._paced(size):
                continue
            if text is None:
                self.emit(
                    error_event(
                        "expected JSON events in text frames, got a binary frame",
                        code="invalid_event",
                    )
                )
                continue
            await self._handle(text)

    async def _paced(self, size: int) -> bool:
        """Wait until the frame's pace allows it (the session's, and for a large frame all
        sessions'); ``False`` when that would take over ``MAX_PACE_WAIT`` (the frame is
        dropped with an error event)."""
        paces = [self.pace, _large_pace] if size >= LARGE_FRAME else [self.pace]
        delay = max(pace.delay(size) for pace in paces)
        if delay > MAX_PACE_WAIT:
            for pace in paces:
                pace.give_back(size)
            self.emit(
                error_event(
                    f"the event was dropped: this session's events may come at "
                    f"{FRAME_RATE // 1024} KiB a second after a burst of {MAX_FRAME_BYTES} "
                    "bytes, and large ones share the server's pace; send audio in smaller "
                    "appends, at most a few times real time",
                    code="rate_limit_exceeded",
                )
            )
            # and the socket rests unread for a while: a sender that keeps flooding costs the
            # event loop one frame per MAX_PACE_WAIT, not every frame it can push
            await asyncio.sleep(MAX_PACE_WAIT)
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def _handle(self, text: str) -> None:
        event_id = None
        try:
            large = len(text) >= LARGE_FRAME
            event, pcm = await self._cpu(functools.partial(_parse, text), large)
            event_id = event.event_id
            if isinstance(event, SessionUpdate):
                update = event
                await self._in_session(lambda: self._update(update))
                self.emit(session_event("session.updated", self.state))
            elif isinstance(event, BufferAppend):
                audio = pcm or b""
                self.emit_live(await self._in_session(lambda: self.session.append(audio), large))
            elif isinstance(event, BufferCommit):
                self.emit_live(await self._in_session(self.session.commit))
            elif isinstance(event, BufferClear):
                self.emit_live(await self._in_session(self.session.clear))
        except ProtocolError as e:
            self.emit(protocol_error_event(e))
        except EmptyCommit as e:
            self.emit(
                error_event(
                    str(e), code="input_audio_buffer_commit_empty", client_event_id=event_id
                )
            )
        except BufferFull as e:
            self.emit(error_event(str(e), code="input_audio_buffer_full", client_event_id=event_id))
        except InvalidRequest as e:
            self.emit(error_event(str(e), code="invalid_value", client_event_id=event_id))
        except Exception as e:  # its frames are logged, never its message (it may quote audio)
            log_unexpected(e, f"live session {self.state.id}")
            self.emit(
                error_event(
                    "the server could not handle this event",
                    type="server_error",
                    code="server_error",
                    client_event_id=event_id,
                )
            )
        self.wake.set()

    def _update(self, event: SessionUpdate) -> None:
        state = self.state.updated(event)
        processor = self.processor
        if state.language not in (None, "en") and processor and not processor.info.multilingual:
            raise ProtocolError(
                f"the loaded model {processor.info.model!r} is English-only (allowed: 'en' or "
                "null)",
                param="session.audio.input.transcription.language",
                event_id=event.event_id,
            )
        self.state = state
        self.session.update(state.config())

    async def _watch_idle(self) -> tuple[int, str]:
        """Close the session once neither side has done anything for ``idle_timeout`` s: no
        client event, no decode under way, no committed turn waiting for its transcript."""
        idle = self.settings.idle_timeout
        while True:
            wait = self.active_at + idle - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif self.decoding or self.session.busy:
                self.active_at = time.monotonic()
            else:
                self.emit(
                    error_event(
                        f"session closed: no client event for {idle:.0f} s (LIVE_IDLE_TIMEOUT)",
                        code="idle_timeout",
                    )
                )
                return NORMAL, "idle timeout"

    async def _decode_loop(self) -> tuple[int, str]:
        """Run the session's decodes one at a time, for as long as the connection lasts."""
        try:
            async with self.model.use() as processor:
                self.processor = processor
                while True:
                    # cleared before looking, so an append that lands meanwhile wakes the wait
                    self.wake.clear()
                    job = await self._in_session(self.session.next_decode)
                    if job is None:
                        await self.wake.wait()
                        continue
                    self.decoding = True
                    try:
                        events = await self._decode(processor, job)
                    finally:
                        self.decoding = False
                        self.active_at = time.monotonic()
                    self.emit_live(events)
        except ModelError as e:
            self.emit(
                error_event(
                    f"the model could not be loaded: {e}",
                    type="server_error",
                    code="model_unavailable",
                )
            )
            return INTERNAL_ERROR, "model unavailable"

    async def _decode(self, processor: WhisperProcessor, job: DecodeJob) -> list[LiveEvent]:
        """One decode in a worker thread, and what the session makes of its result."""
        started = time.perf_counter()
        try:
            transcript = await asyncio.to_thread(processor.decode_samples, job.samples, job.options)
        except Exception as e:
            level = logging.WARNING if isinstance(e, WorkerError) else logging.ERROR
            logger.log(
                level,
                "live session %s: %s decode failed: %s",
                self.state.id,
                job.kind,
                type(e).__name__,
            )
            message = str(e) if isinstance(e, WorkerError) else "transcription failed"
            return await self._in_session(lambda: self.session.fail(job, message))
        logger.debug(
            "live session %s: %s decode of %.1f s in %.2f s",
            self.state.id,
            job.kind,
            job.seconds,
            time.perf_counter() - started,
        )
        return await self._in_session(lambda: self.session.apply(job, transcript))
