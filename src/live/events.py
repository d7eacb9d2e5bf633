"""What a live session tells its client, as typed records (the door gives them their wire shape).

One turn (an "item") goes: ``SpeechStarted`` (server VAD only), ``TranscriptDelta``s while it is
spoken, ``SpeechStopped`` (server VAD only), ``Committed``, maybe one more ``TranscriptDelta``
with the words the final decode adds, then ``TranscriptCompleted`` (or ``TranscriptFailed``).
Joined, an item's deltas are its committed words; ``TranscriptCompleted.transcript`` is the
final decode of the whole turn and is what a client should keep (it may differ slightly).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    #: session audio time (ms) where the turn's audio begins, prefix padding included
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    #: session audio time (ms) where the end was decided (silence waited for included)
    audio_end_ms: int


@dataclass(frozen=True)
class Committed:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class BufferCleared:
    pass


@dataclass(frozen=True)
class TranscriptDelta:
    item_id: str
    #: words newly agreed on, with a leading space unless they are the item's first
    delta: str


@dataclass(frozen=True)
class TokenLogprob:
    """One word of a final transcript and the log of its probability (the engine's word
    probability: the product of its tokens')."""

    token: str
    logprob: float


@dataclass(frozen=True)
class TranscriptCompleted:
    item_id: str
    transcript: str
    #: seconds of audio the item holds
    audio_seconds: float
    #: per word, when the session asked for logprobs
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class TimeoutTriggered:
    """Server VAD's ``idle_timeout_ms`` passed without speech: the silent stretch is committed
    as an (empty) item of its own."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True)
class TranscriptFailed:
    item_id: str
    message: str


LiveEvent = (
    SpeechStarted
    | SpeechStopped
    | Committed
    | BufferCleared
    | TranscriptDelta
    | TranscriptCompleted
    | TranscriptFailed
    | TimeoutTriggered
)
