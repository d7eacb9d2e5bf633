"""``python handler.py`` as a user runs it: RunPod's local mode on test_input.json."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import REPO_ROOT, Clip, b64_file, wer


def run_handler(*args: str, model: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WHISPER_MODEL"}
    if model:
        env["WHISPER_MODEL"] = model
    return subprocess.run(
        [sys.executable, "handler.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_test_input_json_runs_on_the_default_model(jfk: Clip) -> None:
    # test_input.json carries the JFK clip, transcoded to Opus.
    job = json.loads((REPO_ROOT / "test_input.json").read_text())
    assert job["input"]["audio"]["base64"].startswith("data:audio/ogg;base64,")
    done = run_handler()  # no WHISPER_MODEL: the default multilingual base
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "completed successfully" in output
    result_line = next(line for line in output.splitlines() if "Job result:" in line)
    assert "'model': 'base'" in result_line
    text = result_line.split("'text': ", 1)[1].split("', '", 1)[0].strip("'\"")
    assert wer(jfk.text, text) <= 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rp_serve_api_answers_runsync(jfk: Clip) -> None:
    """``--rp_serve_api``: RunPod's local test server around the real handler."""
    port = free_port()
    env = {**os.environ, "WHISPER_MODEL": "tiny.en"}
    args = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "handler.py", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        job = {"input": {"audio": {"base64": b64_file(jfk.path)}, "options": {"language": "en"}}}
        deadline = time.monotonic() + 120
        while True:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/runsync", json=job, timeout=60)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        body = reply.json()
        assert reply.status_code == 200 and body["status"] == "COMPLETED", body
        assert wer(jfk.text, body["output"]["transcription"]["text"]) <= 0.05
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_bad_job_fails_with_a_clear_error() -> None:
    job = {"input": {"audio": {"base64": "AAAA"}, "options": {"beam_size": 99}}}
    done = run_handler("--test_input", json.dumps(job), model="tiny.en")
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "options.beam_size" in output and "less than or equal to 10" in output
    assert "Traceback" not in output
