"""How the HTTP mode starts: its settings from the environment, and ``WORKER_MODE=http python
handler.py`` as RunPod runs it (a real process, /ping on its own port, stopped by SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from openai import OpenAI

from src.server.settings import ServerSettings
from tests.conftest import REPO_ROOT, Clip, wer
from tests.server_helpers import API_KEY, free_port


def test_settings_follow_runpods_defaults() -> None:
    settings = ServerSettings.from_env({})
    assert (settings.port, settings.port_health) == (80, 80)
    assert settings.model_idle_timeout is None and settings.api_key is None
    settings = ServerSettings.from_env({"PORT": "5000"})
    assert settings.port_health == 5000  # PORT_HEALTH defaults to PORT
    settings = ServerSettings.from_env(
        {"PORT": "5000", "PORT_HEALTH": "5001", "MAX_QUEUE": "0", "MODEL_IDLE_TIMEOUT": "300"}
    )
    assert (settings.port_health, settings.max_queue, settings.model_idle_timeout) == (5001, 0, 300)
    assert ServerSettings.from_env({"MODEL_IDLE_TIMEOUT": "0"}).model_idle_timeout is None
    assert ServerSettings.from_env({"API_KEY": " k "}).api_key == "k"


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "http"), ("PORT", "70000"), ("MAX_QUEUE", "-1"), ("MODEL_IDLE_TIMEOUT", "soon")],
)
def test_a_malformed_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        ServerSettings.from_env({name: value})


def test_worker_mode_http_serves_from_handler_main(jfk: Clip) -> None:
    port, health = free_port(), free_port()
    env = {
        **os.environ,
        "WORKER_MODE": "http",
        "WHISPER_MODEL": "tiny.en",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PORT_HEALTH": str(health),
        "API_KEY": API_KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "handler.py"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        status = None
        while status != 200:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "no 200 from /ping in time"
            try:
                status = httpx.get(f"http://127.0.0.1:{health}/ping").status_code
                assert status in (200, 204)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0) as c:
            text = c.audio.transcriptions.create(
                file=(jfk.path.name, jfk.path.read_bytes()), model="whisper-1"
            ).text
        assert wer(jfk.text, text) < 0.15
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    # a graceful stop (requests drained, the model let go), then uvicorn re-raises the signal it
    # handled, so the process ends as SIGTERM's default would have it
    assert "HTTP mode: shut down" in output, output[-3000:]
    assert process.returncode == -signal.SIGTERM
    assert "HTTP mode: port" in output
    assert "ask not what your country" not in output.lower()  # no transcript in the logs
