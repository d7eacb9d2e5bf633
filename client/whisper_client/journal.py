"""What a batch has finished, so that a second run skips it: an append-only JSON-lines journal.

One line per finished file: its relative path, size, mtime and SHA-256, a fingerprint of the
settings it was transcribed with, and the output files written. Appending one line is cheap and
safe with many worker threads (a lock) and against crashes: a torn last line is ignored when the
journal is read back, and a file is journaled only after all its outputs are in place.

A file counts as done when its entry's settings and outputs match and the source is unchanged:
same size and mtime, or (after a ``touch`` or a copy that kept the bytes) the same SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    rel: str
    size: int
    mtime_ns: int
    sha256: str
    settings: str
    outputs: tuple[str, ...]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_fingerprint(options: dict[str, Any], formats: tuple[str, ...]) -> str:
    """Changes when anything that shapes the outputs changes: options or formats."""
    canonical = json.dumps({"options": options, "formats": sorted(formats)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        if path.exists():
            self._load()

    def lookup(self, rel: str) -> Entry | None:
        with self._lock:
            return self._entries.get(rel)

    def record(self, entry: Entry) -> None:
        line = json.dumps(asdict(entry), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._entries[entry.rel] = entry

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    entry = Entry(**{**row, "outputs": tuple(row["outputs"])})
                except (ValueError, TypeError, KeyError):
                    logger.warning("%s:%d: unreadable line ignored", self.path, number)
                    continue
                self._entries[entry.rel] = entry
