"""Shared fixtures: paths anchored to this file, the benchmark manifest, real models once per session."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("WHISPER_WORKER_SHARED", REPO_ROOT.parent / "shared"))
BENCHMARK_DIR = SHARED_DIR / "benchmark"


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    language: str
    duration_s: float
    long_form: bool


def load_manifest() -> list[Clip]:
    clips = []
    with open(BENCHMARK_DIR / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                clips.append(
                    Clip(
                        path=BENCHMARK_DIR / row["file"],
                        text=row["text"],
                        language=row["language"],
                        duration_s=float(row["duration_s"]),
                        long_form=bool(row.get("long_form", False)),
                    )
                )
    return clips


@pytest.fixture(scope="session")
def manifest() -> list[Clip]:
    if not (BENCHMARK_DIR / "manifest.jsonl").is_file():
        pytest.fail(f"benchmark audio not found at {BENCHMARK_DIR} (set WHISPER_WORKER_SHARED)")
    return load_manifest()


@pytest.fixture(scope="session")
def jfk(manifest: list[Clip]) -> Clip:
    return next(c for c in manifest if c.path.name == "en_jfk.flac")
