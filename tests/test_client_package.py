"""The client is its own package: installable alone, sharing only the options' schema.

``pip install ./client`` into a fresh virtual environment (one install: its pinned dependencies
come from the package index) must give a working ``whisper-client`` on a machine that has none
of the worker's dependencies, and the worker's code must be out of its reach. Its local check of
the options reads ``options.schema.json``, which must equal a schema freshly generated from the
worker's request model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from whisper_client.errors import ConfigError
from whisper_client.options import check_options, options_schema

from scripts.options_schema import SCHEMA_FILE, render
from tests.conftest import REPO_ROOT

CLIENT_DIR = REPO_ROOT / "client"


def test_the_committed_schema_is_the_one_the_worker_generates() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), (
        "client/whisper_client/options.schema.json is stale: run python scripts/options_schema.py"
    )
    assert options_schema() == json.loads(render())


def test_the_schema_and_the_worker_agree_on_good_and_bad_options() -> None:
    """The same verdict as the worker's own model (``src.request.parse_options``'s model)."""
    from src.errors import InvalidRequest
    from src.request import parse_request

    cases: list[dict[str, object]] = [
        {},
        {"language": "en", "word_timestamps": True, "output_format": "srt"},
        {"language": " German ", "temperature": [0.0, 0.4], "beam_size": 3},
        {"custom_vocabulary": {"whisper worker": "Whisper Worker"}, "diarize": True},
        {"subtitles": {"max_chars_per_line": 32}, "vad_parameters": {"threshold": 0.4}},
        {"langauge": "en"},
        {"beam_size": 0},
        {"language": "klingon"},
        {"output_format": "docx"},
        {"temperature": [0.1, 2]},
        {"custom_vocabulary": {" ": "x"}},
        {"custom_vocabulary": {"a": "b" * 101}},
        {"vad_parameters": {"threshold": 2}},
        {"subtitles": {"max_lines_per_cue": 9}},
        {"task": "summarise"},
    ]
    for options in cases:
        try:
            parse_request({"audio": {"url": "https://example.com/a.wav"}, "options": options})
            worker_accepts = True
        except InvalidRequest:
            worker_accepts = False
        try:
            check_options(options)
            client_accepts = True
        except ConfigError:
            client_accepts = False
        assert client_accepts == worker_accepts, options


@pytest.fixture(scope="module")
def client_only_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the client and nothing of the worker's."""
    root = tmp_path_factory.mktemp("client-venv")
    source = root / "client"
    # built from a copy: a build leaves build/ and egg-info behind in the source folder
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return env_dir


def run_in(env_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run in an empty folder, so that nothing of this checkout is on the import path."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env_dir.parent,
        env={"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(env_dir.parent)},
    )


def test_pip_install_gives_a_working_whisper_client(client_only_venv: Path) -> None:
    done = run_in(client_only_venv, str(client_only_venv / "bin" / "whisper-client"), "--help")
    assert done.returncode == 0, done.stderr
    for command in ("run", "batch", "health", "serve"):
        assert command in done.stdout
    # the options are checked locally, from the shared schema
    code = (
        "from whisper_client.transcribe import validate_options\n"
        "from whisper_client.errors import ConfigError\n"
        "assert validate_options({'language': 'en'}) == {'language': 'en'}\n"
        "try:\n"
        "    validate_options({'langauge': 'en'})\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    done = run_in(client_only_venv, str(client_only_venv / "bin" / "python"), "-c", code)
    assert done.stdout.strip() == "invalid option: options.langauge: unknown field", done.stderr


def test_the_client_venv_has_none_of_the_worker(client_only_venv: Path) -> None:
    python = str(client_only_venv / "bin" / "python")
    for module in ("handler", "src.request", "numpy", "torch", "pydantic", "faster_whisper"):
        done = run_in(client_only_venv, python, "-c", f"import {module}")
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, module
    # serve needs the worker's environment, and says so
    done = run_in(client_only_venv, str(client_only_venv / "bin" / "whisper-client"), "serve")
    assert done.returncode == 2
    assert "worker's environment" in done.stderr


def test_the_worker_never_imports_the_client() -> None:
    code = "import sys, handler, src.request, src.jobs; print('whisper_client' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
