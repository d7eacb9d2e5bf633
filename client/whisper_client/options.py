"""The worker's job options, checked on this machine before anything is sent.

The client never imports the worker: it shares one file with it, ``options.schema.json`` (a
JSON Schema generated from the worker's request model by ``scripts/options_schema.py``, and
checked against it by the worker's tests). A typo then costs an error message, not a paid job:

    invalid option: options.langauge: unknown field
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from whisper_client.errors import ConfigError

SCHEMA_FILE = "options.schema.json"


@functools.cache
def options_schema() -> dict[str, Any]:
    """The shared schema, as shipped inside this package."""
    text = resources.files("whisper_client").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(options_schema())


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as they will be sent; ``ConfigError`` naming every bad field otherwise."""
    value = dict(options)
    errors = sorted(_validator().iter_errors(value), key=lambda e: [str(p) for p in e.path])
    problems: list[str] = []
    for error in errors:
        for problem in _describe(error):
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise ConfigError("invalid option: " + "; ".join(problems))
    return value


def _where(error: ValidationError, name: str | None = None) -> str:
    path = [str(p) for p in error.absolute_path] + ([name] if name is not None else [])
    return ".".join(["options", *path])


def _describe(error: ValidationError) -> list[str]:
    """``options.field: what was expected``, in the worker's own words where they differ."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = [str(k) for k in error.instance if k not in known]
        if error.schema.get("additionalProperties") is False:
            return [f"{_where(error, name)}: unknown field" for name in unknown]
    if error.validator in ("anyOf", "oneOf") and error.context:
        # the branch of the right type says what is wrong ("2 is greater than the maximum");
        # when no branch has the right type, list the types allowed
        fitting = [e for e in error.context if e.validator != "type"]
        if fitting:
            chosen = best_match(fitting)
            return [f"{_where(chosen)}: {_message(chosen)}"]
        kinds = [str(e.validator_value) for e in error.context]
        return [f"{_where(error)}: expected {' or '.join(dict.fromkeys(kinds))}"]
    return [f"{_where(error)}: {_message(error)}"]


def _message(error: ValidationError) -> str:
    """The schema's own words for a pattern (the raw regex helps nobody), else jsonschema's."""
    if error.validator == "pattern":
        expected = error.schema.get("description") or "an allowed value"
        return f"unsupported value {str(error.instance)[:40]!r}: expected {expected}"
    return error.message if len(error.message) <= 200 else error.message[:200] + "..."
