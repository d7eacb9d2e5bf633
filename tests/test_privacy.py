"""Logs at every level hold no transcript text, no audio or base64, no URL secrets.

Two writers are checked: Python ``logging`` with the root logger at DEBUG, and the RunPod SDK's
own logger (it prints to stdout) at its DEBUG, where by itself it prints every job's input and
output. Jobs run through the SDK's ``run_job``, as the real worker loop runs them, and through
``python handler.py`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from src.config import Settings
from src.logging_setup import RedactingFilter, quiet_runpod_sdk, redact_text
from src.service.processor import WhisperProcessor
from tests.conftest import REPO_ROOT, Clip, b64_file

SECRET = "s3cr3tSIGxyz"
CREDENTIAL = "AKIDPRIVATE42"
PASSWORD = "hunter2pw"
QUERY = f"?X-Amz-Signature={SECRET}&X-Amz-Credential={CREDENTIAL}%2F20261121"
#: words of the JFK transcript that no log line may carry
TRANSCRIPT_WORDS = ("fellow", "Americans", "country")
OPUS_12K = ["-c:a", "libopus", "-b:a", "12k"]


@pytest.fixture(scope="module")
def short_opus(jfk: Clip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK as low-bitrate Opus: small enough to pass as a command-line argument."""
    path = tmp_path_factory.mktemp("privacy") / "jfk.ogg"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(jfk.path), *OPUS_12K, str(path)],
        check=True,
    )
    return path


def assert_private(logs: str, secrets: list[str]) -> None:
    for word in (*TRANSCRIPT_WORDS, *secrets):
        leaked = [line for line in logs.splitlines() if word.lower() in line.lower()]
        assert leaked == [], f"{word!r} reached the logs: {leaked[:3]}"


def run_jobs_like_the_worker(handler_module: ModuleType, jobs: list[dict[str, Any]]) -> list[Any]:
    """Each job through the SDK's ``run_job``, the function the worker loop calls."""
    from runpod.serverless.modules.rp_job import run_job

    return [asyncio.run(run_job(handler_module.handler, job)) for job in jobs]


def test_a_full_run_logs_no_transcript_audio_or_secret(
    handler_module: ModuleType,
    jfk: Clip,
    audio_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from runpod.serverless.modules.rp_logger import RunPodLogger

    settings = Settings.from_env(
        {"WHISPER_MODEL": "tiny.en", "WARM_UP": "false", "ALLOW_PRIVATE_URLS": "true"}
    )
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    monkeypatch.setattr(handler_module, "get_processor", lambda: processor)
    quiet_runpod_sdk()
    sdk = RunPodLogger()
    monkeypatch.setattr(sdk, "level", sdk.level)
    sdk.set_level("DEBUG")  # as RUNPOD_LOG_LEVEL=DEBUG or --rp_log_level DEBUG would
    caplog.set_level(logging.DEBUG)  # the root logger and every library's logger

    audio_b64 = b64_file(jfk.path)
    garbage_b64 = base64.b64encode(b"not audio, but secret bytes " * 200).decode()
    host = audio_server.split("://", 1)[1]
    jobs = [
        {"audio": {"url": f"{audio_server}/talk.flac{QUERY}"}},
        {"audio": {"base64": audio_b64}, "options": {"word_timestamps": True}},
        {"audio": {"base64": garbage_b64}},
        {"audio": {"url": f"http://user:{PASSWORD}@{host}/talk.flac{QUERY}"}},
        {"audio": {"url": f"http://169.254.169.254/latest/meta-data/{QUERY}"}},
        {"audio": {"url": f"{audio_server}/talk.flac{QUERY}"}, "options": {"beam_size": 99}},
    ]
    results = run_jobs_like_the_worker(
        handler_module,
        [{"id": f"privacy-{i}-{'f' * 40}", "input": job} for i, job in enumerate(jobs)],
    )

    # the jobs did what they should: two transcripts, then four clear errors
    assert [("output" in r, "error" in r) for r in results] == [(True, False)] * 2 + [
        (False, True)
    ] * 4
    assert all("fellow" in r["output"]["transcription"]["text"] for r in results[:2])

    out, err = capfd.readouterr()
    logs = "\n".join([caplog.text, out, err])
    assert "downloaded http://127.0.0.1:" in caplog.text  # the worker did log, at DEBUG too
    assert "Started." in out  # and so did the SDK
    assert_private(logs, [SECRET, CREDENTIAL, PASSWORD, audio_b64[100:140], garbage_b64[:40]])
    assert "f" * 40 not in caplog.text  # job ids are shortened in the worker's lines


def run_handler_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "handler.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done.stdout + done.stderr


DEBUG_EVERYWHERE = {
    "RUNPOD_LOG_LEVEL": "DEBUG",
    "RUNPOD_DEBUG_LEVEL": "DEBUG",
    "LOG_LEVEL": "DEBUG",
    "WHISPER_MODEL": "tiny.en",
    "WARM_UP": "false",
    "ALLOW_PRIVATE_URLS": "true",
}


@pytest.mark.parametrize("kind", ["base64", "url"])
def test_python_handler_py_at_debug_prints_the_transcript_only_as_its_result(
    kind: str, short_opus: Path, audio_server: str
) -> None:
    """``python handler.py --test_input`` is RunPod's local mode: the SDK prints the job's result
    once ("Job result: ..."), to the developer who ran it. Nothing else may carry it: not the
    SDK's DEBUG lines ("Retrieved local job", "Handler output", "run_job return"), not ours."""
    audio_b64 = b64_file(short_opus)
    audio = (
        {"base64": audio_b64} if kind == "base64" else {"url": f"{audio_server}/talk.ogg{QUERY}"}
    )
    job = {"input": {"audio": audio, "options": {"output_format": "text"}}}
    logs = run_handler_cli(
        "--test_input", json.dumps(job), "--rp_log_level", "DEBUG", env=DEBUG_EVERYWHERE
    )
    assert "completed successfully" in logs, logs[-3000:]
    result_lines = [line for line in logs.splitlines() if "Job result:" in line]
    assert len(result_lines) == 1 and "fellow" in result_lines[0].lower()
    others = "\n".join(line for line in logs.splitlines() if "Job result:" not in line)
    assert "DEBUG" in others  # the worker's own DEBUG lines are on
    for sdk_debug in ("Retrieved local job", "Handler output", "run_job return"):
        assert sdk_debug not in others
    assert_private(others, [SECRET, CREDENTIAL, audio_b64[100:140]])
    assert SECRET not in result_lines[0]


def test_a_failing_job_at_debug_logs_no_secret(audio_server: str) -> None:
    host = audio_server.split("://", 1)[1]
    job = {"input": {"audio": {"url": f"http://me:{PASSWORD}@{host}/a.wav{QUERY}"}}}
    logs = run_handler_cli("--test_input", json.dumps(job), env=DEBUG_EVERYWHERE)
    assert "credentials in the URL" in logs
    assert_private(logs, [SECRET, CREDENTIAL, PASSWORD])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            f"GET https://bucket.s3.amazonaws.com/a/b.wav{QUERY} 200",
            "GET https://bucket.s3.amazonaws.com/a/b.wav?<redacted> 200",
        ),
        (
            f"fetching http://me:{PASSWORD}@example.com:8080/x.mp3",
            "fetching http://<redacted>@example.com:8080/x.mp3",
        ),
        (
            f"fetching http://me:{PASSWORD}@example.com/x.mp3#t={SECRET}",
            "fetching http://example.com/x.mp3?<redacted>",
        ),
        ("payload " + "QUJD" * 100 + " end", "payload <400 base64 characters> end"),
        ("plain line, https://example.com/a.wav", "plain line, https://example.com/a.wav"),
    ],
)
def test_redact_text(message: str, expected: str) -> None:
    assert redact_text(message) == expected


def test_the_redacting_filter_rewrites_third_party_records() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("tests.privacy.thirdparty")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("retrying %s (%d)", f"https://h.example/a.wav{QUERY}", 3)
    finally:
        log.removeHandler(handler)
    assert stream.getvalue() == "retrying https://h.example/a.wav?<redacted> (3)\n"
