"""An OpenAI audio request's form fields, validated once into the worker's own request model.

OpenAI's fields map onto ``TranscribeOptions``: ``prompt`` is ``initial_prompt``, ``language``
and ``temperature`` keep their names, ``timestamp_granularities[]`` containing ``word`` turns
on word timings, the route decides ``task``, and ``response_format=diarized_json`` asks for
speakers. The worker's own options (``beam_size``, ``vad_filter``, ``diarize``,
``custom_vocabulary``, ``subtitles``, ...) are accepted as further form fields and validated by
the same model: objects and lists as JSON text (``vad_parameters='{"threshold": 0.4}'``),
numbers and booleans as their text. A field nobody defines is refused, as OpenAI does, with its
name in the error's ``param``.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from src.request import TranscribeOptions
from src.server.errors import InvalidField
from src.server.uploads import Form, UploadedFile

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)
Granularity = Literal["word", "segment"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
Route = Literal["transcriptions", "translations"]

#: OpenAI fields accepted and left without effect: the baked model serves whatever ``model``
#: names; ``include[]=logprobs`` and ``chunking_strategy`` belong to other OpenAI models
_IGNORED = frozenset({"model", "include[]", "include", "chunking_strategy"})
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


def _is_structured(annotation: Any) -> bool:
    """Whether a field's type holds an object or a list (given as JSON text in a form)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_structured(a) for a in get_args(annotation))
    if origin in (list, dict, tuple):
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
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise InvalidField(f"expected JSON ({e.msg} at {e.pos})", param=name) from None
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

    response_format = _one(form, "response_format") or "json"
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
            name in _IGNORED
            or name in ("response_format", "stream")
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
    if response_format == "diarized_json":
        options["diarize"] = True

    return AudioRequest(
        upload=upload,
        options=_validate(options),
        response_format=response_format,  # type: ignore[arg-type]
        granularities=frozenset(granularities),  # type: ignore[arg-type]
        stream=_flag("stream", _one(form, "stream")),
        model=_one(form, "model"),
    )


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
