"""Where a batch writes each result, what goes in each file, and writing it atomically.

Outputs mirror the input tree: ``talks/monday.wav`` gives ``OUT/talks/monday.json``, ``.srt``,
``.vtt`` and ``.txt``, so a video player finds ``monday.srt`` beside ``monday.mp4``. When two inputs
in one folder share a stem (``monday.wav`` and ``monday.mp3``) both keep their extension instead
(``monday.wav.srt``), so that neither overwrites the other.

The contents come from the worker's answer as they are: its ``srt`` and ``vtt`` strings, its
``text``, and the whole answer as JSON; no formatting is redone here. Each file is written to a
hidden temporary file in the same folder, synced, then renamed over the target: a reader, or a
run interrupted half way, sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from whisper_client.errors import ClientError

Format = Literal["json", "srt", "vtt", "txt"]
FORMATS: tuple[str, ...] = get_args(Format)


def output_bases(rels: Iterable[str]) -> dict[str, str]:
    """For each input's relative path, the relative path its outputs share, before ``.{format}``."""
    rels = list(rels)

    def key(rel: str) -> tuple[str, str]:
        p = PurePosixPath(rel)
        return str(p.parent), p.stem.lower()

    shared = Counter(key(rel) for rel in rels)
    return {
        rel: rel if shared[key(rel)] > 1 else str(PurePosixPath(rel).with_suffix(""))
        for rel in rels
    }


def output_names(base: str, formats: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{base}.{fmt}" for fmt in formats)


def worker_output_format(formats: Iterable[str]) -> str:
    """The ``output_format`` to ask the worker for: ``all`` brings its srt and vtt strings."""
    return "all" if {"srt", "vtt"} & set(formats) else "json"


def render(output: dict[str, Any], fmt: str) -> str:
    """The text of one output file, taken from the worker's answer."""
    if fmt == "json":
        return json.dumps(output, ensure_ascii=False, indent=2) + "\n"
    transcription = output.get("transcription")
    if not isinstance(transcription, dict):
        raise ClientError("the worker's answer holds no transcription")
    key = "text" if fmt == "txt" else fmt
    value = transcription.get(key)
    if not isinstance(value, str):
        raise ClientError(f"the worker's answer holds no {key!r} (an older worker?)")
    return value.strip() + "\n" if fmt == "txt" else value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader ever sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
