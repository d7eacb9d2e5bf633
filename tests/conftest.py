"""Shared fixtures: paths anchored to this file, the benchmark manifest, real models once."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    speaker: str | None = None


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
                        speaker=row.get("speaker"),
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


# The worker under test loads the small English model unless a test builds its own processor.
os.environ.setdefault("WHISPER_MODEL", "tiny.en")
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")


def b64_file(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode("ascii")


def wav_bytes(samples: np.ndarray, sample_rate: int = 16000) -> bytes:
    """16-bit PCM WAV of a float waveform, written with the standard library."""
    import io
    import wave

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buffer.getvalue()


def load_waveform(path: Path) -> np.ndarray:
    """The clip as 16 kHz mono float32, decoded with ffmpeg independently of the worker."""
    import subprocess

    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            "16000",
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


@functools.cache
def english_normaliser() -> Callable[[str], str]:
    """Whisper's English text normaliser, built once.

    Its constructor leaves a JSON file open (``whisper/normalizers/english.py``); the file is
    closed here, inside this block, so the ResourceWarning never reaches the tests.
    """
    from whisper.normalizers import EnglishTextNormalizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        normaliser = EnglishTextNormalizer()
        gc.collect()
    return normaliser


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English normaliser on both sides (as the benchmark does)."""
    import jiwer

    normalise = english_normaliser()
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def pooled_wer(pairs: list[tuple[str, str]]) -> float:
    """WER pooled over clips (total errors / total reference words), normalised as above."""
    import jiwer

    normalise = english_normaliser()
    refs = [normalise(r) for r, _ in pairs]
    hyps = [normalise(h) for _, h in pairs]
    return float(jiwer.wer(refs, hyps))


@pytest.fixture(scope="session")
def handler_module():
    """``handler.py`` imported once; its processor loads tiny.en on first use."""
    import handler

    return handler


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temp area, so what a job leaves behind is counted without the files of
    other processes that share /tmp."""
    import tempfile

    area = tmp_path / "tmp"
    area.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(area))
    return area


class LocalServer:
    """A local HTTP server that answers every GET with ``body`` (URL jobs without a network).

    With ``held`` each answer waits until ``release`` is set (a stalled download); ``asked``
    is set once a request has come. ``url`` is the server's address plus ``path``.
    """

    def __init__(self, body: bytes, content_type: str, path: str = "", held: bool = False):
        import http.server
        import threading

        self.release = threading.Event()
        self.asked = threading.Event()
        if not held:
            self.release.set()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.set()
                owner.release.wait(120)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def serve_bytes(
    body: bytes, content_type: str, path: str = "", held: bool = False
) -> Iterator[LocalServer]:
    """A ``LocalServer`` for the block, closed after it."""
    server = LocalServer(body, content_type, path, held)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def audio_server(jfk: Clip) -> Iterator[str]:
    """A local HTTP server that serves the JFK clip at any path (URL jobs without a network)."""
    with serve_bytes(jfk.path.read_bytes(), "audio/flac") as server:
        yield server.url
