"""An OpenAI audio request's form fields, validated once into the worker's own request model.

OpenAI's fields map onto ``TranscribeOptions``: ``prompt`` is ``initial_prompt``, ``language``
and ``temperature`` keep their names, ``timestamp_granularities[]`` containing ``word`` turns
on word timings, the route decides ``task``, and ``response_format=diarized_json`` asks for
speakers. The worker's own options (``beam_size``, ``vad_filter``, ``diarize``,
``custom_vocabulary``, ``subtitles``, ...) are accepted as further form fields and validated by
the same model: objects and lists as JSON text (``vad_parameters='{"threshold": 0.4}'``),
numbers and booleans as their text. A field nobody defines is refused, as OpenAI does, with its
name in the error's ``param``.

The fields of OpenAI's 2026 reference (``openai`` SDK 3.5x, ``TranscriptionCreateParams``):

- ``model``: any name is served by the worker's model; a name ending in ``-diarize``
  (``gpt-4o-transcribe-diarize``) turns speakers on and makes ``diarized_json`` the default
  format, as OpenAI's does (``MODELS`` lists the names clients send);
- ``languages[]``: candidate languages. One is that language; several restrict the detection
  to them (``src.server.openai_policy``); the ``json`` reply then carries ``languages``;
- ``keywords[]``: the decoder is biased toward them: they open the prompt (``"Frere, Sintra."``
  before any ``prompt``). faster-whisper's ``hotwords`` (the worker's own option, prompting
  every window) was measured too: both spelled all five rare names of ``bench/keywords.py``
  right, but with ``hotwords`` one 3 s clip came back with its sentence twice (the decoder
  echoed the prompt into the clip's last 60 ms);
- ``include[]=logprobs``: per-word log probabilities (``src.live.logprobs``) in ``json``,
  ``verbose_json`` and the stream's deltas and ``done``;
- ``chunking_strategy``: ``auto`` is the VAD with its defaults; ``server_vad`` maps
  ``threshold``, ``silence_duration_ms`` (the VAD's ``min_silence_duration_ms``) and
  ``prefix_padding_ms`` (its ``speech_pad_ms``) onto the VAD;
- ``known_speaker_names[]`` + ``known_speaker_references[]``: up to 4 named data-URL clips of
  2 to 10 s; with speakers on, a speaker whose voice matches a clip takes its name
  (``src.server.known_speakers``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from src.engines.base import VadParameters
from src.request import TranscribeOptions
from src.server.errors import InvalidField
from src.server.uploads import Form, UploadedFile, parse_json

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)
Granularity = Literal["word", "segment"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
Route = Literal["transcriptions", "translations"]

#: the model names OpenAI's clients send (any other name is served the same way)
MODELS = (
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe-diarize",
    "gpt-transcribe",
)
Include = Literal["logprobs"]
INCLUDES: tuple[str, ...] = get_args(Include)
MAX_KNOWN_SPEAKERS = 4
MAX_KEYWORDS = 100
MAX_SPEAKER_NAME_CHARS = 64
#: OpenAI fields read here rather than passed on as options (lists arrive as ``name[]``,
#: ``chunking_strategy`` as text or as ``chunking_strategy[field]``)
_OPENAI_LISTS = (
    "include",
    "languages",
    "keywords",
    "known_speaker_names",
    "known_speaker_references",
)
_OPENAI_FIELDS = frozenset(
    {"model", "response_format", "stream", "chunking_strategy"}
    | set(_OPENAI_LISTS)
    | {f"{name}[]" for name in _OPENAI_LISTS}
)
#: OpenAI's names for options of the worker's model
_RENAMED = {"prompt": "initial_prompt"}
#: options of the worker's model that the OpenAI fields (or the route) decide here
_NOT_FORM_FIELDS = frozenset({"task", "output_format", "initial_prompt", "top_languages"})
_OPTION_FIELDS = frozenset(TranscribeOptions.model_fields) - _NOT_FORM_FIELDS


@dataclass(frozen=True)
class AudioRequest:
    """One parsed OpenAI audio request."""

    upload: UploadedFile
    options: TranscribeOptions
    response_format: ResponseFormat
    granularities: frozenset[Granularity]
    stream: bool
    #: the ``model`` the caller named (answered back; the baked model serves)
    model: str | None
    #: ``languages[]``: candidate languages (several: detection restricted to them)
    languages: tuple[str, ...] = ()
    #: ``include[]=logprobs``
    logprobs: bool = False
    #: ``known_speaker_names[]`` with their ``known_speaker_references[]`` (data URLs)
    known_speakers: tuple[tuple[str, str], ...] = ()


def _is_structured(annotation: Any) -> bool:
    """Whether a field's type holds an object or a list (given as JSON text in a form)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_structured(a) for a in get_args(annotation))
    if origin in (list, dict, tuple):
        return True
    if dataclasses.is_dataclass(annotation):  # vad_parameters: the engines' VadParameters
        return True
    return isinstance(annotation, type) and issubclass(annotation, (BaseModel, dict, list))


_STRUCTURED = frozenset(
    name for name, info in TranscribeOptions.model_fields.items() if _is_structured(info.annotation)
)


def _one(form: Form, name: str) -> str | None:
    values = form.fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidField("expected one value, got several", param=name)
    return values[0] if values[0] != "" else None


def _json_value(name: str, raw: str) -> Any:
    if name in _STRUCTURED and raw.lstrip()[:1] in ("{", "["):
        return parse_json(raw, param=_FORM_NAME.get(name, name))
    if name in _STRUCTURED and raw.strip() == "null":
        return None
    return raw


def _flag(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidField("expected true or false", param=name)


def parse_audio_request(form: Form, route: Route) -> AudioRequest:
    """The request in ``form`` (a file already on disk) as one validated ``AudioRequest``."""
    upload = form.files.get("file")
    if upload is None:
        other = next(iter(form.files), None)
        if other is not None:
            raise InvalidField("unexpected file; the audio goes in the 'file' field", param=other)
        raise InvalidField("missing the audio file (multipart field 'file')", param="file")

    model = _one(form, "model")
    diarize_model = model is not None and model.strip().endswith("-diarize")
    default_format = "diarized_json" if diarize_model and route == "transcriptions" else "json"
    response_format = _one(form, "response_format") or default_format
    if response_format not in RESPONSE_FORMATS or (
        route == "translations" and response_format == "diarized_json"
    ):
        allowed = RESPONSE_FORMATS if route == "transcriptions" else RESPONSE_FORMATS[:-1]
        raise InvalidField(
            f"unsupported value {response_format[:30]!r}: expected one of {', '.join(allowed)}",
            param="response_format",
        )

    granularities = _granularities(form)
    if granularities and response_format != "verbose_json":
        raise InvalidField(
            "timestamp granularities need response_format 'verbose_json'",
            param="timestamp_granularities[]",
        )

    options: dict[str, Any] = {"task": "transcribe" if route == "transcriptions" else "translate"}
    for name in form.fields:
        if (
            name in _OPENAI_FIELDS
            or name.startswith("chunking_strategy[")
            or name.startswith("timestamp_granularities")
        ):
            continue
        target = _RENAMED.get(name, name)
        if target not in _OPTION_FIELDS and target != "initial_prompt":
            raise InvalidField("unknown field", param=name)
        raw = _one(form, name)
        if raw is not None:
            options[target] = _json_value(target, raw)
    if "word" in granularities:
        options["word_timestamps"] = True
    if response_format == "diarized_json" or (diarize_model and route == "transcriptions"):
        options["diarize"] = True

    logprobs = _includes(form)
    if logprobs and response_format not in ("json", "verbose_json"):
        raise InvalidField(
            f"logprobs come with response_format 'json' or 'verbose_json', not {response_format!r}",
            param="include[]",
        )
    if logprobs:
        options["word_timestamps"] = True
    languages = _languages(form)
    if languages:
        given = options.get("language")
        if given is not None:
            raise InvalidField(
                "give either 'language' or 'languages[]', not both", param="language"
            )
        if len(languages) == 1:
            options["language"] = languages[0]
    keywords = _list(form, "keywords")
    if keywords:
        if len(keywords) > MAX_KEYWORDS or any(len(k) > 200 for k in keywords):
            raise InvalidField(
                f"at most {MAX_KEYWORDS} keywords of at most 200 characters each",
                param="keywords[]",
            )
        terms = ", ".join(k.strip() for k in keywords if k.strip())
        if terms:
            prompt = options.get("initial_prompt")
            options["initial_prompt"] = f"{terms}. {prompt}" if prompt else f"{terms}."
    vad = _chunking_strategy(form)
    if vad is not None:
        options["vad_filter"] = True
        options["vad_parameters"] = {**vad, **(options.get("vad_parameters") or {})}
    known = _known_speakers(form)
    if known and not options.get("diarize"):
        raise InvalidField(
            "known speakers need speaker labels: response_format 'diarized_json' or a "
            "'-diarize' model",
            param="known_speaker_names[]",
        )

    return AudioRequest(
        upload=upload,
        options=_validate(options),
        response_format=response_format,  # type: ignore[arg-type]
        granularities=frozenset(granularities),  # type: ignore[arg-type]
        stream=_flag("stream", _one(form, "stream")),
        model=model,
        languages=languages,
        logprobs=logprobs,
        known_speakers=known,
    )


def _list(form: Form, name: str) -> list[str]:
    """A list field's values, sent as ``name[]`` (the SDKs) or ``name`` (repeated, or one
    JSON array)."""
    values: list[str] = []
    for raw in [*form.fields.get(f"{name}[]", []), *form.fields.get(name, [])]:
        if raw.lstrip().startswith("["):
            try:
                parsed = json.loads(raw)
            except (json.JSONDecodeError, RecursionError):
                raise InvalidField("expected a JSON array of strings", param=f"{name}[]") from None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise InvalidField("expected a JSON array of strings", param=f"{name}[]")
            values.extend(parsed)
        elif raw != "":
            values.append(raw)
    return values


def _includes(form: Form) -> bool:
    values = _list(form, "include")
    for value in values:
        if value not in INCLUDES:
            raise InvalidField(
                f"unsupported value {value[:30]!r}: expected 'logprobs'", param="include[]"
            )
    return bool(values)


def _languages(form: Form) -> tuple[str, ...]:
    codes: list[str] = []
    for i, raw in enumerate(_list(form, "languages")):
        try:
            option = TranscribeOptions.model_validate({"language": raw})
        except ValidationError as e:
            message = e.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise InvalidField(f"languages[{i}]: {message}", param="languages[]") from None
        assert option.language is not None
        codes.append(option.language)
    return tuple(dict.fromkeys(codes))


_CHUNKING_FIELDS = {
    "threshold": "threshold",
    "silence_duration_ms": "min_silence_duration_ms",
    "prefix_padding_ms": "speech_pad_ms",
}


def _chunking_strategy(form: Form) -> dict[str, Any] | None:
    """``chunking_strategy`` as the VAD's parameters: ``auto`` (its defaults) or a
    ``server_vad`` object (JSON text, or ``chunking_strategy[field]`` form fields)."""
    param = "chunking_strategy"
    raw = _one(form, param)
    parts = {
        name[len(param) + 1 : -1]: values[-1]
        for name, values in form.fields.items()
        if name.startswith(f"{param}[") and name.endswith("]") and values
    }
    if raw is None and not parts:
        return None
    if raw is not None and parts:
        raise InvalidField("give the strategy once", param=param)
    if raw is not None and raw.strip() == "auto":
        return {}
    given: Any = parts
    if raw is not None:
        try:
            given = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise InvalidField(
                "expected 'auto' or a server_vad object as JSON", param=param
            ) from None
    if not isinstance(given, dict) or given.get("type") != "server_vad":
        raise InvalidField('expected \'auto\' or {"type": "server_vad", ...}', param=param)
    vad: dict[str, Any] = {}
    for name, value in given.items():
        if name == "type":
            continue
        if name not in _CHUNKING_FIELDS:
            raise InvalidField("unknown field", param=f"{param}.{name}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidField("expected a number", param=f"{param}.{name}") from None
        vad[_CHUNKING_FIELDS[name]] = number if name == "threshold" else round(number)
    try:
        TypeAdapter(VadParameters).validate_python(vad)
    except ValidationError as e:
        item = e.errors(include_url=False)[0]
        target = str(item["loc"][0]) if item["loc"] else ""
        field = {v: k for k, v in _CHUNKING_FIELDS.items()}.get(target, target)
        raise InvalidField(item["msg"], param=f"{param}.{field}") from None
    return vad


def _known_speakers(form: Form) -> tuple[tuple[str, str], ...]:
    names = _list(form, "known_speaker_names")
    references = _list(form, "known_speaker_references")
    if len(names) != len(references):
        raise InvalidField(
            f"{len(names)} names for {len(references)} references: give one name per clip",
            param="known_speaker_names[]",
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidField(
            f"at most {MAX_KNOWN_SPEAKERS} known speakers", param="known_speaker_names[]"
        )
    for name in names:
        if not name.strip() or len(name) > MAX_SPEAKER_NAME_CHARS:
            raise InvalidField(
                f"a name is 1 to {MAX_SPEAKER_NAME_CHARS} characters", param="known_speaker_names[]"
            )
    if len(set(names)) != len(names):
        raise InvalidField("every name must be unique", param="known_speaker_names[]")
    for reference in references:
        if not reference.startswith("data:") or ";base64," not in reference[:100]:
            raise InvalidField(
                "expected a data URL of audio (data:audio/wav;base64,...)",
                param="known_speaker_references[]",
            )
    return tuple(zip(names, references, strict=True))


def _granularities(form: Form) -> set[str]:
    values = [
        *form.fields.get("timestamp_granularities[]", []),
        *form.fields.get("timestamp_granularities", []),
    ]
    chosen: set[str] = set()
    for value in values:
        # a client may send the list as JSON text or comma-separated in one field
        for item in re.split(r"[\s,\[\]\"']+", value):
            if not item:
                continue
            if item not in GRANULARITIES:
                raise InvalidField(
                    f"unsupported value {item[:20]!r}: expected 'word' or 'segment'",
                    param="timestamp_granularities[]",
                )
            chosen.add(item)
    return chosen


_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|none)$|[\[\]-]")
_FORM_NAME = {target: name for name, target in _RENAMED.items()}


def _validate(options: dict[str, Any]) -> TranscribeOptions:
    try:
        return TranscribeOptions.model_validate(options)
    except ValidationError as e:
        problems: dict[str, list[str]] = {}
        param: str | None = None
        for item in e.errors(include_url=False, include_input=False):
            parts = [str(p) for p in item["loc"] if not _UNION_TAG.search(str(p))]
            if parts:
                parts[0] = _FORM_NAME.get(parts[0], parts[0])
            where = ".".join(parts) or "options"
            param = param or (parts[0] if parts else None)
            message = item["msg"].removeprefix("Value error, ")
            if message not in problems.setdefault(where, []):
                problems[where].append(message)
        clauses = [f"{where}: {' or '.join(messages)}" for where, messages in problems.items()]
        error = InvalidField("; ".join(clauses))
        error.param = param
        raise error from None
