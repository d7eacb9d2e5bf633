"""The job model: what a RunPod job's ``input`` may hold, parsed and validated once.

Two input shapes are accepted:

* the native one, ``{"audio": {"url"|"base64": ...}, "options": {...}}``;
* the flat shape of RunPod's official ``worker-faster_whisper`` (``"audio": "<url>"`` or
  ``"audio_base64"``, ``"transcription": "plain_text"|...``, ``"translate"``, ``"enable_vad"``,
  ...), so that its clients can switch to this worker unchanged. Such a request is converted to
  the native model with ``compat`` set, and its response keeps the official worker's shape.

``parse_request`` is the only entry point; every failure is an ``InvalidRequest`` whose message
names the field and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from src.engines.base import DECODE_DEFAULTS, DecodeOptions, Task, VadParameters
from src.errors import InvalidRequest
from src.formats import CueLayout
from src.languages import LANGUAGES

OutputFormat = Literal["all", "text", "json", "srt", "vtt"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)

#: what a job asks for: the engine tasks, or only the language of the audio
JobTask = Literal["transcribe", "translate", "detect_language"]

#: the official worker's ``transcription`` / ``translation`` formats
CompatFormat = Literal["plain_text", "formatted_text", "srt", "vtt"]

MAX_PROMPT_CHARS = 2000
MAX_VOCABULARY_ENTRIES = 500
MAX_TERM_CHARS = 100
#: most files one job may carry in ``audios``
MAX_FILES = 20

_STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

#: the decode defaults (one place: ``src.engines.base.DecodeOptions``)
_D = DECODE_DEFAULTS
#: the step of the default temperature schedule (0.0, 0.2, ... 1.0)
_FALLBACK_STEP = round(_D.temperatures[1] - _D.temperatures[0], 6)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class AudioInput(BaseModel):
    """Where the audio comes from: exactly one of ``url`` or ``base64``."""

    model_config = _STRICT

    url: Annotated[str, Field(min_length=1, max_length=8192)] | None = None
    base64: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AudioInput:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("give exactly one of 'url' or 'base64'")
        return self

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.lower().startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return url


class NamedAudio(AudioInput):
    """One file of a several-files job: the audio and a name that labels its result."""

    name: Annotated[str, Field(min_length=1, max_length=255)]


class SubtitleLayout(BaseModel):
    """How SRT/VTT cues are cut from word timings so that people can read them."""

    model_config = _STRICT

    max_chars_per_line: Annotated[int, Field(ge=10, le=200)] = 42
    max_lines_per_cue: Annotated[int, Field(ge=1, le=4)] = 2
    max_cue_duration: Annotated[float, Field(ge=0.5, le=30.0)] = 6.0

    def layout(self) -> CueLayout:
        return CueLayout(
            max_chars_per_line=self.max_chars_per_line,
            max_lines_per_cue=self.max_lines_per_cue,
            max_cue_duration=self.max_cue_duration,
        )


class TranscribeOptions(BaseModel):
    """Decoding and output options of one job."""

    model_config = _STRICT

    task: JobTask = "transcribe"
    language: str | None = None
    #: with task "detect_language": how many of the most likely languages to return
    top_languages: Annotated[int, Field(ge=1, le=100)] = 5
    temperature: Probability | Annotated[list[Probability], Field(min_length=1, max_length=10)] = (
        _D.temperatures[0]
    )
    temperature_increment_on_fallback: Annotated[float, Field(gt=0.0, le=1.0)] | None = (
        _FALLBACK_STEP
    )
    #: None: 5, or 3 on the batched long-audio path (README "Long audio")
    beam_size: Annotated[int, Field(ge=1, le=10)] | None = _D.beam_size
    best_of: Annotated[int, Field(ge=1, le=10)] = _D.best_of
    patience: Annotated[float, Field(gt=0.0, le=10.0)] = _D.patience
    length_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = _D.length_penalty
    compression_ratio_threshold: Annotated[float, Field(gt=0.0, le=100.0)] | None = (
        _D.compression_ratio_threshold
    )
    log_prob_threshold: Annotated[float, Field(ge=-100.0, le=0.0)] | None = _D.log_prob_threshold
    no_speech_threshold: Probability | None = _D.no_speech_threshold
    condition_on_previous_text: bool = _D.condition_on_previous_text
    initial_prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = _D.initial_prompt
    #: words to bias the decoder toward (faster-whisper's ``hotwords``; OpenAI's ``keywords``)
    hotwords: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = _D.hotwords
    word_timestamps: bool = _D.word_timestamps
    vad_filter: bool = _D.vad_filter
    vad_parameters: VadParameters = _D.vad
    output_format: OutputFormat = "all"
    custom_vocabulary: dict[str, str] | None = None
    denoise: bool = False
    #: cut SRT/VTT cues from word timings with these limits (implies word timestamps)
    subtitles: SubtitleLayout | None = None
    #: label each segment and word with a speaker
    diarize: bool = False
    num_speakers: Annotated[int, Field(ge=1, le=20)] | None = None
    max_speakers: Annotated[int, Field(ge=1, le=20)] = 8

    @field_validator("language", mode="before")
    @classmethod
    def _known_language(cls, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        code = value.strip().lower()
        if code in LANGUAGES:
            return code
        by_name = {name: c for c, name in LANGUAGES.items()}
        if code in by_name:
            return by_name[code]
        raise ValueError(
            f"unsupported language {value[:20]!r}: expected a Whisper language code such as "
            "'en', 'de', 'fr' or 'ja' (see README), or null to detect it"
        )

    @field_validator("custom_vocabulary")
    @classmethod
    def _vocabulary_bounds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_VOCABULARY_ENTRIES:
            raise ValueError(f"at most {MAX_VOCABULARY_ENTRIES} entries allowed")
        for heard, wanted in value.items():
            if not heard.strip() or len(heard) > MAX_TERM_CHARS or len(wanted) > MAX_TERM_CHARS:
                raise ValueError(
                    "expected a mapping of heard term to corrected term, each non-empty "
                    f"and at most {MAX_TERM_CHARS} characters"
                )
        return value

    def temperatures(self) -> tuple[float, ...]:
        """The temperature schedule: a list as given, or start..1.0 by the increment."""
        if isinstance(self.temperature, list):
            return tuple(self.temperature)
        if self.temperature_increment_on_fallback is None:
            return (self.temperature,)
        steps = math.floor((1.0 - self.temperature) / self.temperature_increment_on_fallback + 1e-6)
        return tuple(
            round(self.temperature + i * self.temperature_increment_on_fallback, 6)
            for i in range(steps + 1)
        )

    def decode_options(self) -> DecodeOptions:
        """What the engine needs; word timings also when subtitles or speakers need them."""
        task: Task = "translate" if self.task == "translate" else "transcribe"
        return DecodeOptions(
            task=task,
            language=self.language,
            temperatures=self.temperatures(),
            beam_size=self.beam_size,
            best_of=self.best_of,
            patience=self.patience,
            length_penalty=self.length_penalty,
            compression_ratio_threshold=self.compression_ratio_threshold,
            log_prob_threshold=self.log_prob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            condition_on_previous_text=self.condition_on_previous_text,
            initial_prompt=self.initial_prompt,
            hotwords=self.hotwords,
            word_timestamps=self.word_timestamps or self.subtitles is not None or self.diarize,
            vad_filter=self.vad_filter,
            vad=self.vad_parameters,
        )


class CompatOutput(BaseModel):
    """How the official worker's response is to be shaped (only set for compat requests)."""

    model_config = _STRICT

    transcription: CompatFormat = "plain_text"
    translate: bool = False
    translation: CompatFormat = "plain_text"


class TranscriptionRequest(BaseModel):
    """One job, native shape: one file in ``audio``, or several in ``audios``."""

    model_config = _STRICT

    audio: AudioInput | None = None
    audios: Annotated[list[NamedAudio], Field(min_length=1, max_length=MAX_FILES)] | None = None
    options: TranscribeOptions = TranscribeOptions()

    @model_validator(mode="after")
    def _one_source(self) -> TranscriptionRequest:
        if (self.audio is None) == (self.audios is None):
            raise ValueError("give exactly one of 'audio' (one file) or 'audios' (a list)")
        if self.audios is not None:
            names = [a.name for a in self.audios]
            if len(set(names)) != len(names):
                raise ValueError("audios: every name must be unique")
        return self


@dataclass(frozen=True)
class Job:
    """A parsed job: the request, and the official worker's response shape if it came so."""

    request: TranscriptionRequest
    compat: CompatOutput | None = None


#: the model names the official worker accepts (its ``AVAILABLE_MODELS``, plus faster-whisper's
#: own names); ``model`` is checked against them and then ignored: this worker serves the model it
#: was built with
COMPAT_MODELS = frozenset(
    {
        "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
        "large", "large-v1", "large-v2", "large-v3", "large-v3-turbo", "turbo",
        "distil-small.en", "distil-medium.en", "distil-large-v2", "distil-large-v3",
        "distil-large-v3.5",
    }
)  # fmt: skip
#: ``suppress_tokens`` as the official worker (and Whisper's CLI) spells it: "-1" or "-1,50363"
_TOKEN_LIST = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


class CompatRequest(BaseModel):
    """The flat input of RunPod's official ``worker-faster_whisper``, accepted as it accepts it.

    That worker checks its input with runpod's ``rp_validator`` against ``src/rp_schema.py``:
    unknown keys are refused, ints pass for floats, and the formats are free strings (its own
    Hub test sends ``"transcription": "plain text"``; an unknown one silently becomes plain
    text). Here the formats' spellings that clients send (any case, a space or hyphen for the
    underscore) are accepted, and anything else is refused with the allowed values: a typo
    should not be hidden. ``audio``/``audio_base64`` given empty or null count as absent, as
    there. ``suppress_tokens`` is checked (token ids separated by commas) and ignored, as there
    (it always suppresses the default set, ``-1``).
    """

    model_config = _STRICT

    audio: Annotated[str, Field(min_length=1, max_length=8192)] | None = None
    audio_base64: Annotated[str, Field(min_length=1)] | None = None
    model: str | None = None
    transcription: CompatFormat = "plain_text"
    translate: bool = False
    translation: CompatFormat = "plain_text"
    language: str | None = None
    temperature: Probability = _D.temperatures[0]
    best_of: Annotated[int, Field(ge=1, le=10)] = _D.best_of
    beam_size: Annotated[int, Field(ge=1, le=10)] | None = _D.beam_size
    patience: Annotated[float, Field(gt=0.0, le=10.0)] = _D.patience
    length_penalty: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    suppress_tokens: str | list[int] = "-1"
    initial_prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = None
    condition_on_previous_text: bool = True
    temperature_increment_on_fallback: Annotated[float, Field(gt=0.0, le=1.0)] | None = (
        _FALLBACK_STEP
    )
    compression_ratio_threshold: Annotated[float, Field(gt=0.0, le=100.0)] | None = (
        _D.compression_ratio_threshold
    )
    logprob_threshold: Annotated[float, Field(ge=-100.0, le=0.0)] | None = _D.log_prob_threshold
    no_speech_threshold: Probability | None = _D.no_speech_threshold
    enable_vad: bool = True
    word_timestamps: bool = False

    @field_validator("audio", "audio_base64", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("transcription", "translation", mode="before")
    @classmethod
    def _format_spelling(cls, value: Any) -> Any:
        """``"plain text"``, ``"Plain-Text"``, ``"SRT"``: the canonical ``plain_text``, ``srt``."""
        if isinstance(value, str):
            return re.sub(r"[\s-]+", "_", value.strip().lower())
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None and value.strip() not in COMPAT_MODELS:
            raise ValueError(
                f"unknown model {value[:40]!r}: expected a Whisper model name such as 'turbo', "
                "'large-v3' or 'base' (accepted and ignored: this worker serves the model it "
                "was built with)"
            )
        return value

    @field_validator("suppress_tokens")
    @classmethod
    def _token_ids(cls, value: str | list[int]) -> str | list[int]:
        if isinstance(value, str) and not _TOKEN_LIST.match(value):
            raise ValueError(
                f"expected token ids separated by commas, such as '-1' or '-1,50363', not "
                f"{value[:40]!r}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> CompatRequest:
        if (self.audio is None) == (self.audio_base64 is None):
            raise ValueError("give exactly one of 'audio' (a URL) or 'audio_base64'")
        return self

    def to_job(self) -> Job:
        audio = AudioInput(url=self.audio) if self.audio else AudioInput(base64=self.audio_base64)
        options = TranscribeOptions(
            task="transcribe",
            language=self.language,
            temperature=self.temperature,
            temperature_increment_on_fallback=self.temperature_increment_on_fallback,
            beam_size=self.beam_size,
            best_of=self.best_of,
            patience=self.patience,
            length_penalty=self.length_penalty if self.length_penalty is not None else 1.0,
            compression_ratio_threshold=self.compression_ratio_threshold,
            log_prob_threshold=self.logprob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            condition_on_previous_text=self.condition_on_previous_text,
            initial_prompt=self.initial_prompt,
            word_timestamps=self.word_timestamps,
            vad_filter=self.enable_vad,
            output_format="json",
        )
        compat = CompatOutput(
            transcription=self.transcription,
            translate=self.translate,
            translation=self.translation,
        )
        return Job(TranscriptionRequest(audio=audio, options=options), compat)


def _is_compat_shape(job_input: dict[str, Any]) -> bool:
    if isinstance(job_input.get("audio"), str) or "audio_base64" in job_input:
        return True
    compat_only = set(CompatRequest.model_fields) - set(TranscriptionRequest.model_fields)
    return bool(compat_only & set(job_input)) and "options" not in job_input


_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|none)$|[\[\]-]")


def _describe(error: ValidationError, prefix: str | None = None) -> str:
    """One readable clause per field: ``field.path: what was expected``.

    Pydantic reports each branch of a union under a type tag (``temperature.constrained-float``);
    the tags are dropped and the branches' messages joined with "or".
    """
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False, include_input=False):
        parts = [str(p) for p in item["loc"] if not _UNION_TAG.search(str(p))]
        if prefix is not None:
            parts.insert(0, prefix)
        where = ".".join(parts) or "input"
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.setdefault(where, [])
        if message not in problems[where]:
            problems[where].append(message)
    return "invalid input: " + "; ".join(
        f"{where}: {' or '.join(messages)}" for where, messages in problems.items()
    )


def parse_options(options: Any) -> TranscribeOptions:
    """Validate the worker's own options alone (another door's extra fields) into
    ``TranscribeOptions``; failures are ``InvalidRequest`` naming ``options.<field>``."""
    if not isinstance(options, dict):
        raise InvalidRequest(
            f"invalid input: options: expected a JSON object, got {type(options).__name__}"
        )
    try:
        return TranscribeOptions.model_validate(options)
    except ValidationError as e:
        raise InvalidRequest(_describe(e, prefix="options")) from None


def parse_request(job_input: Any) -> Job:
    """Validate a job's ``input`` (either shape) into a ``Job``."""
    if not isinstance(job_input, dict):
        raise InvalidRequest(
            f"invalid input: expected a JSON object, got {type(job_input).__name__}"
        )
    try:
        if _is_compat_shape(job_input):
            return CompatRequest.model_validate(job_input).to_job()
        return Job(TranscriptionRequest.model_validate(job_input))
    except ValidationError as e:
        raise InvalidRequest(_describe(e)) from None
