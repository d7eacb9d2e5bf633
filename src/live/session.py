"""One live transcription session: audio in, turns and their words out. No transport, no model.

``LiveSession`` is a synchronous state machine driven by its door (``src/server/realtime.py``):

    events = session.append(pcm_bytes)          # also: commit(), clear(), update(config)
    job = session.next_decode()                 # what the model should decode now, or None
    events = session.apply(job, transcript)     # after running job.samples with job.options
    events = session.fail(job, error)           # when that decode raised

``append`` only converts the audio and runs the VAD (cheap, about 0.1 ms per 32 ms window), so
the door may call it on its event loop while a decode runs elsewhere; the decode works on a
copy of the samples, and a result that comes back for a turn cleared meanwhile is dropped.

The policy, with server VAD (``turn_detection`` set; ``src.live.turns`` says where turns are):

- while a turn is spoken, its audio from the start is decoded again once ``decode_every_s`` more
  of it has arrived (greedy, one temperature: fast), and the words two successive decodes agree
  on go out as deltas (``src.live.agreement``, LocalAgreement-2). Not while the last window
  scored under the threshold: a pause may be opening, and its decode should not wait;
- when a pause opens and lasts ``end_padding_s``, the turn up to there is decoded at once with
  the final decode's settings (beam search, temperature fallback). If the pause goes on to end
  the turn, that decode *is* the final one and ``completed`` follows the end of the turn without
  another decode; if speech resumes, it served as one more hypothesis;
- a turn cut for length (30 s) is committed at the cut and the rest goes on as the next item.

Without server VAD (``turn_detection`` null) the whole uncommitted buffer is the turn: deltas
while it holds speech and is at most 30 s long, one final decode (with ``vad_filter``) on
``commit()``. Each decode is prompted with the session's ``prompt`` (and, with
``LivePolicy.context_chars``, the end of the transcript so far, as Whisper-Streaming prompts with
the text before its buffer).

Errors a client can cause are raised as ``EmptyCommit`` and ``BufferFull``; the door turns them
into its protocol's error events and the session goes on.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from src.engines.base import DecodeOptions, Transcript
from src.errors import InvalidRequest, TooLarge
from src.live.agreement import LocalAgreement, words_of
from src.live.buffer import AudioBuffer
from src.live.events import (
    BufferCleared,
    Committed,
    LiveEvent,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
    TokenLogprob,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
)
from src.live.logprobs import word_logprobs
from src.live.pcm import TARGET_RATE, AudioFormat, PcmDecoder
from src.live.turns import IdleTimeout, TurnDetection, TurnDetector, TurnEnded, TurnStarted
from src.live.vad import WINDOW, StreamingVad

SAMPLE_RATE = TARGET_RATE
#: the shortest buffer a manual commit accepts (OpenAI's own minimum)
MIN_COMMIT_SECONDS = 0.1
#: the VAD score that counts as speech in a manually committed buffer
MANUAL_SPEECH_THRESHOLD = 0.5
#: silence after which the VAD's recurrent state starts afresh (``src.live.vad``)
VAD_RESET_AFTER_SILENCE_S = 0.3


class EmptyCommit(InvalidRequest):
    """``commit`` with nothing (or under 100 ms) to commit."""


class BufferFull(TooLarge):
    """More audio than ``max_buffer_seconds`` would be waiting to be transcribed."""


@dataclass(frozen=True)
class LivePolicy:
    """How often and how to decode; the defaults are what the benchmark measured."""

    #: audio a turn must grow by before it is decoded again. 0.3 s since hypotheses run on a
    #: window fitted to the turn (``src.engines.window``: tiny.en's greedy hypothesis of a few
    #: seconds costs a tenth of a 30 s window's): the first delta comes 0.9 s after speech
    #: begins instead of 2.4 s at 1.0 s (bench/README.md, "Live on fitted windows")
    decode_every_s: float = 0.3
    #: a pause this long starts the speculative final decode; the final audio ends this far
    #: into the closing pause
    end_padding_s: float = 0.2
    #: the longest turn (Whisper's window); longer ones are cut at a pause
    max_turn_s: float = 30.0
    #: characters of the transcript so far given to each decode as its prompt (as
    #: Whisper-Streaming does, with 200). Off: over the benchmark's 40 clips streamed in one
    #: session, tiny.en's WER was 5.8% without, 6.0% with 200 and 5.8% with 1000 characters,
    #: no gain beyond the run-to-run spread; the session's own ``prompt`` is always given
    context_chars: int = 0
    #: after a hypothesis, the next waits for at least this many times the audio that arrived
    #: while it was decoded (its lag, in stream time: no clock needed). When several sessions
    #: share the model, hypotheses queue; backing off keeps each session's share of the model
    #: bounded, so that finals (which never back off) do not wait behind a queue of hypotheses
    busy_backoff: float = 2.0
    interim_beam_size: int = 1
    #: None: the engine's default (5)
    final_beam_size: int | None = None


@dataclass(frozen=True)
class SessionConfig:
    audio_format: AudioFormat = field(default_factory=AudioFormat)
    #: None: the client commits turns itself
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    #: False: turns are detected and committed but not transcribed
    transcribe: bool = True
    language: str | None = None
    prompt: str | None = None
    #: words to bias the decoder toward (``DecodeOptions.hotwords``)
    hotwords: str | None = None
    #: give each completed transcript its words' log probabilities
    logprobs: bool = False


DecodeKind = Literal["interim", "candidate", "final"]


class _Turn:
    """One item: its audio span, its agreed words and its decodes."""

    def __init__(self, item_id: str, start: int) -> None:
        self.item_id = item_id
        self.start = start
        self.agreement = LocalAgreement()
        #: end of the audio of the latest decode asked for
        self.decoded_until = start
        #: (audio end, transcript) of the latest speculative final decode
        self.candidate: tuple[int, Transcript] | None = None
        self.candidate_tried: int | None = None
        #: manual turns: whether the VAD has heard speech in it
        self.speech = False
        self.vad_filter = False
        self.in_flight = False
        #: set when committed
        self.end: int | None = None
        self.samples: np.ndarray | None = None
        self.final: Transcript | None = None


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """One decode the session wants: ``samples`` (16 kHz float32) with ``options``."""

    kind: DecodeKind
    item_id: str
    samples: np.ndarray = field(repr=False)
    options: DecodeOptions
    #: stream position where the samples end
    end: int
    turn: _Turn = field(repr=False)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def new_item_id() -> str:
    return "item_" + secrets.token_hex(12)


def _ms(position: int) -> int:
    return position * 1000 // SAMPLE_RATE


class LiveSession:
    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        policy: LivePolicy | None = None,
        max_buffer_seconds: float = 300.0,
        item_ids: Callable[[], str] = new_item_id,
    ) -> None:
        self._config = config or SessionConfig()
        self.policy = policy or LivePolicy()
        self._max_buffer_seconds = max_buffer_seconds
        self._item_ids = item_ids
        self._decoder = PcmDecoder(self._config.audio_format)
        self._vad = StreamingVad(reset_after_silence_s=VAD_RESET_AFTER_SILENCE_S)
        self._buffer = AudioBuffer()
        self._detector = self._new_detector()
        self._open: _Turn | None = None
        #: committed turns whose ``completed`` is not out yet, oldest first
        self._closed: deque[_Turn] = deque()
        self._previous_item: str | None = None
        self._context = ""
        #: audio that arrived while the latest hypothesis was decoded (``busy_backoff``)
        self._lag = 0

    # -- what the client does ----------------------------------------------------------------

    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def position(self) -> int:
        """Samples (16 kHz) received so far."""
        return self._buffer.end

    @property
    def buffered_seconds(self) -> float:
        """Audio held that has not been transcribed to the end yet."""
        held = len(self._buffer) + sum(
            len(t.samples) for t in self._closed if t.samples is not None
        )
        return held / SAMPLE_RATE

    @property
    def busy(self) -> bool:
        """Whether committed turns still wait for their transcript."""
        return bool(self._closed)

    def update(self, config: SessionConfig) -> None:
        """Apply a new configuration from the next audio on. Switching to manual commits keeps
        a turn being spoken as the buffer to commit; switching to server VAD drops an
        uncommitted buffer (commit it first to keep it)."""
        old, self._config = self._config, config
        if config.audio_format != old.audio_format:
            self._take(self._decoder.flush())
            self._decoder = PcmDecoder(config.audio_format)
        was_manual, manual = old.turn_detection is None, config.turn_detection is None
        if was_manual != manual:
            if manual and self._open is not None:
                self._open.speech = True
            else:
                self._open = None
                self._buffer.drop_before(self._buffer.end)
            self._restart_vad()
        elif config.turn_detection is not None:
            self._detector.settings = config.turn_detection

    def append(self, pcm: bytes) -> list[LiveEvent]:
        """Take a chunk of raw audio in the session's format. Raises ``BufferFull``."""
        incoming = self._config.audio_format.seconds(len(pcm))
        if self.buffered_seconds + incoming > self._max_buffer_seconds:
            raise BufferFull(
                f"input_audio_buffer: {self.buffered_seconds + incoming:.0f} s of audio would "
                f"be waiting, over this server's limit of {self._max_buffer_seconds:.0f} s "
                "(LIVE_MAX_BUFFER_SECONDS); this chunk was dropped: commit or clear the buffer"
            )
        return self._take(self._decoder.decode(pcm))

    def commit(self) -> list[LiveEvent]:
        """Commit the buffer (manual turns) or the turn being spoken. Raises ``EmptyCommit``."""
        events = self._take(self._decoder.flush())
        turn = self._open
        end = self._buffer.end
        if self._config.turn_detection is not None:
            if turn is None:
                raise EmptyCommit(
                    "input_audio_buffer: nothing to commit: no speech since the last turn "
                    "(with server_vad, turns are committed when they end)"
                )
            self._detector.interrupt(end)
        else:
            held = 0 if turn is None else end - turn.start
            if turn is None or held < MIN_COMMIT_SECONDS * SAMPLE_RATE:
                raise EmptyCommit(
                    "input_audio_buffer: buffer too small: expected at least "
                    f"{MIN_COMMIT_SECONDS * 1000:.0f} ms of audio, got {held * 1000 // SAMPLE_RATE}"
                    " ms"
                )
            turn.vad_filter = True
        events += self._close(turn, end, decided=None)
        self._buffer.drop_before(end)
        return events

    def clear(self) -> list[LiveEvent]:
        """Drop the uncommitted audio and the turn being spoken (committed turns go on)."""
        self._decoder.flush()
        self._open = None
        self._buffer.drop_before(self._buffer.end)
        self._restart_vad()
        return [BufferCleared()]

    # -- what the model does -----------------------------------------------------------------

    def next_decode(self) -> DecodeJob | None:
        """The most urgent decode now: a committed turn's final, a speculative final, or a new
        hypothesis of the turn being spoken; None when nothing needs the model."""
        if not self._config.transcribe:
            return None
        for closed in self._closed:
            if closed.final is None:
                if closed.in_flight or closed.samples is None or closed.end is None:
                    return None
                return self._job("final", closed, closed.end, closed.samples)
        turn = self._open
        if turn is None or turn.in_flight:
            return None
        end = self._buffer.end
        pause = self._detector.pause_start if self._config.turn_detection else None
        if pause is not None:
            candidate_end = pause + int(self._end_padding() * SAMPLE_RATE)
            if candidate_end <= end and turn.candidate_tried != candidate_end:
                turn.candidate_tried = candidate_end
                samples = self._buffer.slice(turn.start, candidate_end)
                return self._job("candidate", turn, candidate_end, samples)
        if self._config.turn_detection is None and not turn.speech:
            return None
        if end - turn.start > self.policy.max_turn_s * SAMPLE_RATE:
            return None
        if self._config.turn_detection is not None and self._detector.quiet:
            # speech fading: a pause and its speculative final may come next, and a hypothesis
            # started now would hold that decode up
            return None
        every = max(self.policy.decode_every_s * SAMPLE_RATE, self.policy.busy_backoff * self._lag)
        if end - turn.decoded_until >= every:
            return self._job("interim", turn, end, self._buffer.slice(turn.start, end))
        return None

    def apply(self, job: DecodeJob, transcript: Transcript) -> list[LiveEvent]:
        """Take a decode's result: deltas for newly agreed words, and ``completed`` events for
        committed turns whose final transcript is now known (in commit order)."""
        turn = job.turn
        turn.in_flight = False
        if not self._alive(turn):
            return []
        events: list[LiveEvent] = []
        if job.kind == "final":
            turn.final = transcript
        else:
            if job.kind == "interim":
                self._lag = self._buffer.end - job.end
            before = bool(turn.agreement.committed)
            new = turn.agreement.insert(words_of(transcript.text))
            if new:
                events.append(_delta(turn.item_id, new, before))
            if turn is self._open and self._config.turn_detection is not None:
                self._detector.hypothesis(transcript.text, job.end)
            if job.kind == "candidate":
                turn.candidate = (job.end, transcript)
                if turn.end == job.end and turn.final is None:
                    turn.final = transcript
        return events + self._drain()

    def fail(self, job: DecodeJob, message: str) -> list[LiveEvent]:
        """A decode raised: a final one fails its item (``TranscriptFailed``); a hypothesis is
        skipped and tried again once more audio has come."""
        turn = job.turn
        turn.in_flight = False
        if not self._alive(turn):
            return []
        if job.kind != "final":
            return []
        self._closed.remove(turn)
        turn.samples = None
        return [TranscriptFailed(turn.item_id, message), *self._drain()]

    # -- inside ------------------------------------------------------------------------------

    def _new_detector(self) -> TurnDetector:
        return TurnDetector(
            self._config.turn_detection or TurnDetection(),
            max_turn_seconds=self.policy.max_turn_s,
            origin=self._buffer.end,
        )

    def _restart_vad(self) -> None:
        self._vad.reset()
        self._detector = self._new_detector()

    def _end_padding(self) -> float:
        detection = self._config.turn_detection
        silence = detection.silence_duration_ms / 1000 if detection else self.policy.end_padding_s
        return min(self.policy.end_padding_s, silence)

    def _take(self, samples: np.ndarray) -> list[LiveEvent]:
        if samples.size == 0:
            return []
        start = self._buffer.end
        self._buffer.append(samples)
        probabilities = self._vad.process(samples)
        detection = self._config.turn_detection
        if detection is None:
            if self._open is None:
                self._open = _Turn(self._item_ids(), start)
            if probabilities.size and probabilities.max() >= MANUAL_SPEECH_THRESHOLD:
                self._open.speech = True
            return []
        events: list[LiveEvent] = []
        for turn_event in self._detector.push(probabilities):
            if isinstance(turn_event, IdleTimeout):
                events += self._idle_item(turn_event)
            elif isinstance(turn_event, TurnStarted):
                self._open = _Turn(self._item_ids(), turn_event.start)
                events.append(SpeechStarted(self._open.item_id, _ms(turn_event.start)))
            elif self._open is not None:
                events += self._end_turn(self._open, turn_event)
        if self._open is not None:
            self._buffer.drop_before(self._open.start)
        else:
            preroll = detection.prefix_padding_ms * SAMPLE_RATE // 1000 + 2 * WINDOW
            self._buffer.drop_before(self._buffer.end - preroll)
        return events

    def _idle_item(self, timeout: IdleTimeout) -> list[LiveEvent]:
        """The silent stretch committed as an item of its own, with an empty transcript (the
        VAD heard no speech in it; its audio is not kept, so it is not decoded)."""
        item_id = self._item_ids()
        events: list[LiveEvent] = [
            TimeoutTriggered(item_id, _ms(timeout.start), _ms(timeout.end)),
            Committed(item_id, self._previous_item),
        ]
        self._previous_item = item_id
        if self._config.transcribe:
            turn = _Turn(item_id, timeout.start)
            turn.end = timeout.end
            turn.final = Transcript("", self._config.language or "", 0.0, 0.0, ())
            self._closed.append(turn)  # completed in commit order, after any turn before it
            events += self._drain()
        return events

    def _logprobs(self, transcript: Transcript | None) -> tuple[TokenLogprob, ...] | None:
        if not self._config.logprobs:
            return None
        return () if transcript is None else word_logprobs(transcript)

    def _end_turn(self, turn: _Turn, ended: TurnEnded) -> list[LiveEvent]:
        end = ended.end
        if not ended.cut:
            end = min(ended.end, ended.speech_end + int(self._end_padding() * SAMPLE_RATE))
        return self._close(turn, end, decided=ended.end)

    def _close(self, turn: _Turn, end: int, *, decided: int | None) -> list[LiveEvent]:
        """Commit ``turn`` with its audio up to ``end``; ``decided``: where server VAD ended it."""
        turn.end = end
        turn.samples = self._buffer.slice(turn.start, end)
        events: list[LiveEvent] = []
        if decided is not None:
            events.append(SpeechStopped(turn.item_id, _ms(decided)))
        events.append(Committed(turn.item_id, self._previous_item))
        self._previous_item = turn.item_id
        if self._open is turn:
            self._open = None
        if not self._config.transcribe:
            turn.samples = None
            return events
        if turn.candidate is not None and turn.candidate[0] == end:
            turn.final = turn.candidate[1]
        self._closed.append(turn)
        return events + self._drain()

    def _drain(self) -> list[LiveEvent]:
        """``completed`` for each committed turn, in order, whose final transcript is known."""
        events: list[LiveEvent] = []
        while self._closed and self._closed[0].final is not None:
            turn = self._closed.popleft()
            final = turn.final
            assert final is not None
            text = final.text.strip()
            tail = turn.agreement.tail(words_of(text))
            if tail:
                events.append(_delta(turn.item_id, tail, bool(turn.agreement.committed)))
            seconds = 0.0 if turn.samples is None else len(turn.samples) / SAMPLE_RATE
            events.append(TranscriptCompleted(turn.item_id, text, seconds, self._logprobs(final)))
            turn.samples = None
            if text:
                self._context = _tail_words(f"{self._context} {text}", self.policy.context_chars)
        return events

    def _alive(self, turn: _Turn) -> bool:
        return turn is self._open or turn in self._closed

    def _job(self, kind: DecodeKind, turn: _Turn, end: int, samples: np.ndarray) -> DecodeJob:
        turn.in_flight = True
        if kind == "interim":
            turn.decoded_until = end
        return DecodeJob(kind, turn.item_id, samples, self._options(kind, turn), end, turn)

    def _options(self, kind: DecodeKind, turn: _Turn) -> DecodeOptions:
        config = self._config
        prompt = " ".join(p for p in (config.prompt, self._context) if p) or None
        if kind == "interim":
            return DecodeOptions(
                language=config.language,
                temperatures=(0.0,),
                beam_size=self.policy.interim_beam_size,
                initial_prompt=prompt,
                hotwords=config.hotwords,
                condition_on_previous_text=False,
                vad_filter=False,
                fill_gaps=False,  # a partial: speed over completeness
            )
        return DecodeOptions(
            language=config.language,
            beam_size=self.policy.final_beam_size,
            initial_prompt=prompt,
            hotwords=config.hotwords,
            word_timestamps=config.logprobs,
            vad_filter=turn.vad_filter,
            # one turn, cut by the live VAD: the policy's own guarantee, no coverage re-decode
            fill_gaps=False,
        )


def _delta(item_id: str, words: list[str], after_words: bool) -> TranscriptDelta:
    text = " ".join(words)
    return TranscriptDelta(item_id, f" {text}" if after_words else text)


def _tail_words(text: str, limit: int) -> str:
    """The last words of ``text`` that fit in ``limit`` characters."""
    text = text.strip()
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    space = cut.find(" ")
    return cut[space + 1 :] if space >= 0 else cut
