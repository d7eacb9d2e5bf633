"""OpenAI's Realtime API in transcription mode: the client events parsed, the server events built.

Only the wire format lives here; ``src/server/realtime.py`` runs the socket and
``src.live.session`` the policy. Field names follow OpenAI's API reference (client events
``session.update``, ``input_audio_buffer.append`` / ``.commit`` / ``.clear``; server events
``session.created`` / ``.updated``, ``input_audio_buffer.speech_started`` / ``speech_stopped`` /
``committed`` / ``cleared``, ``conversation.item.input_audio_transcription.delta`` /
``completed`` / ``failed``, ``error``) and the official ``openai`` SDK's types
(``openai/types/realtime/``).

A transcription session here:

- ``session.type`` must be ``"transcription"``;
- ``audio.input.format``: ``audio/pcm`` (16-bit little-endian mono) at ``rate`` 24000, the API's
  only rate, or any other rate from 8000 to 96000 Hz, resampled; ``audio/pcmu`` and
  ``audio/pcma`` (G.711, 8 kHz);
- ``audio.input.transcription``: ``language`` (an ISO-639-1 code, null to detect),
  ``languages`` (candidates: one is that language; several leave the language to Whisper's
  detection over all its languages, reported back as given), ``prompt`` (vocabulary or style,
  at most 2000 characters), ``keywords`` (they open the prompt, as on the files route),
  ``model`` (any name; the worker's own model serves and is what the session reports; the
  realtime-only ``gpt-realtime-whisper`` and ``gpt-live-transcribe`` take no server-side turn
  detection, as OpenAI's do: the session switches to client commits and refuses a
  ``turn_detection``), ``delay`` (accepted and reported back; no effect: deltas come as two
  decodes agree); null turns transcription off (turns are still detected);
- ``audio.input.turn_detection``: ``server_vad`` with ``threshold``, ``prefix_padding_ms``,
  ``silence_duration_ms``, ``idle_timeout_ms`` (``input_audio_buffer.timeout_triggered``, then
  the silent stretch committed as an item with an empty transcript); ``semantic_vad`` with
  ``eagerness`` (``src.live.semantic``: the pause that ends a turn depends on whether the
  running hypothesis reads as finished); ``create_response`` and ``interrupt_response``
  (accepted: there are no responses in a transcription session); or null for client commits;
- ``include: ["item.input_audio_transcription.logprobs"]``: each ``completed`` carries
  ``logprobs``, one entry per word (``src.live.logprobs``); deltas carry none;
- ``audio.input.noise_reduction`` (``near_field``/``far_field``) is accepted and reported back
  and filters nothing: Whisper was trained on noisy audio, and a denoiser before it costs WER
  on clean speech (the files route's ``denoise`` option is ffmpeg's ``afftdn`` for those who
  want one).

Every client error is answered with an ``error`` event (``param`` naming the field as sent,
``event_id`` the client's) and the connection stays up.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from src.errors import InvalidRequest
from src.languages import LANGUAGES
from src.live.events import (
    BufferCleared,
    Committed,
    LiveEvent,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
)
from src.live.logprobs import wire as logprobs_wire
from src.live.pcm import G711_RATE, MAX_RATE, MIN_RATE, AudioFormat
from src.live.semantic import Eagerness
from src.live.session import SessionConfig
from src.live.turns import TurnDetection

#: OpenAI's limit on the audio of one ``input_audio_buffer.append``
MAX_APPEND_BYTES = 15 * 1024 * 1024
MAX_PROMPT_CHARS = 2000
#: model names OpenAI serves only over the realtime socket, with no server-side turn detection
REALTIME_ONLY_MODELS = frozenset({"gpt-realtime-whisper", "gpt-live-transcribe"})
LOGPROBS_INCLUDE = "item.input_audio_transcription.logprobs"
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)

ErrorType = Literal["invalid_request_error", "server_error"]


class ProtocolError(InvalidRequest):
    """A client event this session cannot take: answered with an ``error`` event."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str = "invalid_value",
        event_id: str | None = None,
    ) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param
        self.code = code
        self.event_id = event_id


# -- client events ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormatIn(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] | None = None
    rate: Annotated[int, Field(ge=MIN_RATE, le=MAX_RATE)] | None = None


class NoiseReductionIn(_Strict):
    type: Literal["near_field", "far_field"] | None = None
    strength: Annotated[float, Field(ge=0)] | None = None


class TranscriptionIn(_Strict):
    model: Annotated[str, Field(max_length=200)] | None = None
    language: Annotated[str, Field(max_length=20)] | None = None
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = None
    keywords: (
        Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=100)] | None
    ) = None
    languages: (
        Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=100)] | None
    ) = None
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


class ServerVadIn(_Strict):
    type: Literal["server_vad"]
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=5000)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=100, le=10000)] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: Annotated[int, Field(ge=1000, le=3_600_000)] | None = None


class SemanticVadIn(_Strict):
    type: Literal["semantic_vad"]
    eagerness: Eagerness | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class AudioInputIn(_Strict):
    format: FormatIn | None = None
    noise_reduction: NoiseReductionIn | None = None
    transcription: TranscriptionIn | None = None
    turn_detection: Annotated[ServerVadIn | SemanticVadIn, Field(discriminator="type")] | None = (
        None
    )


class AudioIn(_Strict):
    input: AudioInputIn | None = None


class SessionIn(_Strict):
    type: str
    audio: AudioIn | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None


class SessionUpdate(_Strict):
    type: Literal["session.update"]
    event_id: str | None = None
    session: SessionIn


class BufferAppend(_Strict):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str


class BufferCommit(_Strict):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class BufferClear(_Strict):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = SessionUpdate | BufferAppend | BufferCommit | BufferClear
_MODELS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": BufferAppend,
    "input_audio_buffer.commit": BufferCommit,
    "input_audio_buffer.clear": BufferClear,
}


def parse_client_event(text: str) -> ClientEvent:
    """One client frame as its typed event; raises ``ProtocolError`` saying what was wrong."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolError("the event is not valid JSON", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise ProtocolError("an event is a JSON object with a 'type'", code="invalid_json")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(
            f"unknown event type {kind!r}; this server takes {', '.join(CLIENT_EVENTS)}",
            param="type",
            code="invalid_event",
            event_id=event_id,
        )
    try:
        event = model.model_validate(raw)
    except ValidationError as e:
        raise _validation_error(e, event_id) from None
    assert isinstance(event, SessionUpdate | BufferAppend | BufferCommit | BufferClear)
    return event


def decode_audio(event: BufferAppend) -> bytes:
    """The raw bytes of an ``input_audio_buffer.append``; raises ``ProtocolError``."""
    try:
        pcm = base64.b64decode(event.audio, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "expected base64-encoded audio bytes", param="audio", event_id=event.event_id
        ) from None
    if len(pcm) > MAX_APPEND_BYTES:
        raise ProtocolError(
            f"{len(pcm)} bytes in one append; the limit is {MAX_APPEND_BYTES} (15 MiB)",
            param="audio",
            event_id=event.event_id,
        )
    return pcm


def _validation_error(error: ValidationError, event_id: str | None) -> ProtocolError:
    first = error.errors(include_url=False)[0]
    param = ""
    previous = None
    for part in first["loc"]:
        if isinstance(part, int):
            param += f"[{part}]"
        elif not (previous == "turn_detection" and part in ("server_vad", "semantic_vad")):
            param += f".{part}" if param else str(part)
        previous = part
    kind = first["type"]
    code = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}.get(
        kind, "invalid_value"
    )
    message = {
        "extra_forbidden": "unknown parameter",
        "missing": "missing required parameter",
    }.get(kind, first["msg"])
    return ProtocolError(message, param=param or None, code=code, event_id=event_id)


# -- the session's effective configuration ---------------------------------------------------


@dataclass(frozen=True)
class RealtimeSession:
    """What ``session.created`` / ``session.updated`` report, and the live policy's config."""

    id: str
    model: str
    audio_format: AudioFormat = field(default_factory=AudioFormat)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcribe: bool = True
    language: str | None = None
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    #: the transcription model the client named (None: not named)
    requested_model: str | None = None
    delay: str | None = None
    logprobs: bool = False
    noise_reduction: str | None = None

    @property
    def client_commits(self) -> bool:
        """Whether the named model is a realtime-only one (no server-side turn detection)."""
        return self.requested_model in REALTIME_ONLY_MODELS

    @classmethod
    def new(cls, model: str) -> RealtimeSession:
        return cls(id="sess_" + secrets.token_hex(12), model=model)

    def config(self) -> SessionConfig:
        return SessionConfig(
            audio_format=self.audio_format,
            turn_detection=self.turn_detection,
            transcribe=self.transcribe,
            language=self.language,
            prompt=" ".join(p for p in (_terms(self.keywords), self.prompt) if p) or None,
            logprobs=self.logprobs,
        )

    def updated(self, update: SessionUpdate) -> RealtimeSession:
        """This session with the fields ``update`` carries changed (absent ones unchanged);
        raises ``ProtocolError`` for a value this server does not serve."""
        session = update.session
        event_id = update.event_id
        if session.type != "transcription":
            raise ProtocolError(
                f"{session.type!r}: this server serves transcription sessions only "
                "(allowed: 'transcription')",
                param="session.type",
                event_id=event_id,
            )
        new = self
        if "include" in session.model_fields_set:
            new = replace(new, logprobs=LOGPROBS_INCLUDE in (session.include or ()))
        audio_input = session.audio.input if session.audio is not None else None
        if audio_input is None:
            return new
        given = audio_input.model_fields_set
        if "format" in given and audio_input.format is not None:
            new = replace(new, audio_format=_audio_format(audio_input.format, event_id))
        if "noise_reduction" in given:
            noise = audio_input.noise_reduction
            new = replace(new, noise_reduction=noise.type if noise is not None else None)
        if "transcription" in given:
            was_client_commits = new.client_commits
            new = _with_transcription(new, audio_input.transcription, event_id)
            if new.client_commits and not was_client_commits:
                # OpenAI's realtime-only models take no server-side turn detection
                new = replace(new, turn_detection=None)
        if "turn_detection" in given:
            if new.client_commits and audio_input.turn_detection is not None:
                raise ProtocolError(
                    f"{new.requested_model!r} takes no server-side turn detection, as OpenAI's "
                    "does not (allowed: null; commit each turn with input_audio_buffer.commit)",
                    param="session.audio.input.turn_detection",
                    event_id=event_id,
                )
            new = replace(new, turn_detection=_turn_detection(audio_input.turn_detection, event_id))
        return new

    def wire(self) -> dict[str, Any]:
        audio_format: dict[str, Any] = {"type": "audio/pcm", "rate": self.audio_format.rate}
        if self.audio_format.encoding != "pcm16":
            audio_format = {"type": f"audio/{self.audio_format.encoding}"}
        transcription: dict[str, Any] | None = None
        if self.transcribe:
            transcription = {"model": self.model, "language": self.language, "prompt": self.prompt}
            if self.keywords:
                transcription["keywords"] = list(self.keywords)
            if self.languages:
                transcription["languages"] = list(self.languages)
            if self.delay is not None:
                transcription["delay"] = self.delay
        turn_detection: dict[str, Any] | None = None
        detection = self.turn_detection
        if detection is not None and detection.eagerness is not None:
            turn_detection = {"type": "semantic_vad", "eagerness": detection.eagerness}
        elif detection is not None:
            turn_detection = {
                "type": "server_vad",
                "threshold": detection.threshold,
                "prefix_padding_ms": detection.prefix_padding_ms,
                "silence_duration_ms": detection.silence_duration_ms,
                "idle_timeout_ms": detection.idle_timeout_ms,
            }
        return {
            "id": self.id,
            "object": "realtime.transcription_session",
            "type": "transcription",
            "audio": {
                "input": {
                    "format": audio_format,
                    "noise_reduction": (
                        {"type": self.noise_reduction} if self.noise_reduction else None
                    ),
                    "transcription": transcription,
                    "turn_detection": turn_detection,
                }
            },
            "include": [LOGPROBS_INCLUDE] if self.logprobs else None,
        }


def _terms(keywords: tuple[str, ...]) -> str:
    return f"{', '.join(keywords)}." if keywords else ""


def _audio_format(given: FormatIn, event_id: str | None) -> AudioFormat:
    param = "session.audio.input.format"
    kind = given.type or "audio/pcm"
    if kind == "audio/pcm":
        return AudioFormat("pcm16", given.rate or 24000)
    if given.rate not in (None, G711_RATE):
        raise ProtocolError(
            f"{kind} is {G711_RATE} Hz audio (allowed rate: {G711_RATE} or absent)",
            param=f"{param}.rate",
            event_id=event_id,
        )
    return AudioFormat("pcmu" if kind == "audio/pcmu" else "pcma", G711_RATE)


def _with_transcription(
    session: RealtimeSession, given: TranscriptionIn | None, event_id: str | None
) -> RealtimeSession:
    if given is None:
        return replace(session, transcribe=False)
    param = "session.audio.input.transcription"
    language = _language(given.language, f"{param}.language", event_id)
    languages = tuple(
        dict.fromkeys(
            code
            for i, raw in enumerate(given.languages or ())
            if (code := _language(raw, f"{param}.languages[{i}]", event_id)) is not None
        )
    )
    if given.languages is not None and not languages:
        raise ProtocolError(
            "expected at least one language code", param=f"{param}.languages", event_id=event_id
        )
    if language is None and len(languages) == 1:
        language = languages[0]
    return replace(
        session,
        transcribe=True,
        language=language,
        languages=languages,
        prompt=given.prompt or "",
        keywords=tuple(k.strip() for k in given.keywords or () if k.strip()),
        requested_model=given.model,
        delay=given.delay,
    )


def _language(raw: str | None, param: str, event_id: str | None) -> str | None:
    language = raw.strip().lower() if raw else None
    if language is not None and language not in LANGUAGES:
        raise ProtocolError(
            f"{raw!r} is not a language code Whisper knows (ISO-639-1, e.g. 'en', "
            "'de'; null to detect it)",
            param=param,
            event_id=event_id,
        )
    return language


def _turn_detection(
    given: ServerVadIn | SemanticVadIn | None, event_id: str | None
) -> TurnDetection | None:
    if given is None:
        return None
    defaults = TurnDetection()
    if isinstance(given, SemanticVadIn):
        return TurnDetection(eagerness=given.eagerness or "auto")
    return TurnDetection(
        threshold=defaults.threshold if given.threshold is None else given.threshold,
        prefix_padding_ms=(
            defaults.prefix_padding_ms
            if given.prefix_padding_ms is None
            else given.prefix_padding_ms
        ),
        silence_duration_ms=(
            defaults.silence_duration_ms
            if given.silence_duration_ms is None
            else given.silence_duration_ms
        ),
        idle_timeout_ms=given.idle_timeout_ms,
    )


# -- server events ---------------------------------------------------------------------------


def event_id() -> str:
    return "event_" + secrets.token_hex(12)


def session_event(
    kind: Literal["session.created", "session.updated"], session: RealtimeSession
) -> dict[str, Any]:
    return {"type": kind, "event_id": event_id(), "session": session.wire()}


def error_event(
    message: str,
    *,
    type: ErrorType = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": event_id(),
        "error": {
            "type": type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


def protocol_error_event(error: ProtocolError) -> dict[str, Any]:
    message = str(error.args[0]) if error.args else str(error)
    return error_event(message, code=error.code, param=error.param, client_event_id=error.event_id)


def wire_event(event: LiveEvent) -> dict[str, Any]:
    """A live session's event as the Realtime API's server event."""
    base: dict[str, Any] = {"event_id": event_id()}
    match event:
        case SpeechStarted(item_id=item_id, audio_start_ms=start):
            return {
                **base,
                "type": "input_audio_buffer.speech_started",
                "item_id": item_id,
                "audio_start_ms": start,
            }
        case SpeechStopped(item_id=item_id, audio_end_ms=end):
            return {
                **base,
                "type": "input_audio_buffer.speech_stopped",
                "item_id": item_id,
                "audio_end_ms": end,
            }
        case Committed(item_id=item_id, previous_item_id=previous):
            return {
                **base,
                "type": "input_audio_buffer.committed",
                "item_id": item_id,
                "previous_item_id": previous,
            }
        case BufferCleared():
            return {**base, "type": "input_audio_buffer.cleared"}
        case TranscriptDelta(item_id=item_id, delta=delta):
            return {
                **base,
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id,
                "content_index": 0,
                "delta": delta,
            }
        case TranscriptCompleted(
            item_id=item_id, transcript=transcript, audio_seconds=seconds, logprobs=logprobs
        ):
            completed: dict[str, Any] = {
                **base,
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": round(seconds, 3)},
            }
            if logprobs is not None:
                completed["logprobs"] = logprobs_wire(logprobs)
            return completed
        case TimeoutTriggered(item_id=item_id, audio_start_ms=start, audio_end_ms=end):
            return {
                **base,
                "type": "input_audio_buffer.timeout_triggered",
                "item_id": item_id,
                "audio_start_ms": start,
                "audio_end_ms": end,
            }
        case TranscriptFailed(item_id=item_id, message=message):
            return {
                **base,
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item_id,
                "content_index": 0,
                "error": {
                    "type": "server_error",
                    "code": "transcription_failed",
                    "message": message,
                    "param": None,
                },
            }
    raise TypeError(f"not a live event: {event!r}")
