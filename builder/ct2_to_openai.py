"""Convert a CTranslate2 Whisper model into the checkpoint openai-whisper loads.

Why: model hubs are out of reach at test time, and the only real Whisper weights we can install
come in CTranslate2's format (``model.bin`` + ``config.json``). openai-whisper's
``whisper.load_model(path)`` wants a ``torch.save``d ``{"dims": ..., "model_state_dict": ...}``.
The two hold the same numbers under other names (CTranslate2 fuses query/key/value), so the
conversion is a renaming plus a split and loses nothing: float16 stays float16 (``load_state_dict``
copies it exactly into openai-whisper's float32 parameters), bfloat16 widens exactly to float32.

``model.bin`` (binary version 6, little-endian), as written by ``ctranslate2.specs.ModelSpec``:
uint32 version; string spec name; uint32 revision; uint32 variable count; per variable: string
name, uint8 rank, uint32 per dimension, uint8 dtype id (0 float32, 1 int8, 2 int16, 3 int32,
4 float16, 5 bfloat16), uint32 byte count, raw bytes; then uint32 alias count and (alias, target)
string pairs. A string is a uint16 length that counts a trailing NUL, then the bytes.

Usage: ``python builder/ct2_to_openai.py CT2_DIR OUT.pt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import mmap
import os
import re
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make ``src`` importable
    sys.path.insert(0, str(REPO_ROOT))

from src.errors import ModelError  # noqa: E402

logger = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSION = 6
#: CTranslate2 ``DataType`` ids that numpy reads directly (bfloat16, id 5, is handled apart)
_NUMPY_DTYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_BFLOAT16 = 5
_FLOAT_DTYPES = (np.dtype("float16"), np.dtype("float32"))
#: openai-whisper's attention heads are always 64 wide; used only when model.bin has no count
_HEAD_WIDTH = 64


class _Reader:
    """Bounds-checked little-endian reads over the file's bytes; overruns become ``ModelError``."""

    def __init__(self, buffer: mmap.mmap, name: str) -> None:
        self.buffer = buffer
        self.name = name
        self.offset = 0

    def _need(self, size: int, what: str) -> None:
        if self.offset + size > len(self.buffer):
            raise ModelError(f"{self.name} is truncated: it ends inside {what}")

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += size
        return int(value)

    def string(self, what: str) -> str:
        length = self.unpack("H", what)
        if length == 0:
            raise ModelError(f"{self.name} is malformed: zero-length string for {what}")
        self._need(length, what)
        raw = self.buffer[self.offset : self.offset + length]
        self.offset += length
        if raw[-1] != 0:
            raise ModelError(f"{self.name} is malformed: {what} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ModelError(f"{self.name} is malformed: {what} is not UTF-8") from e

    def array(self, dtype_id: int, shape: tuple[int, ...], num_bytes: int, what: str) -> np.ndarray:
        """A read-only view of the next ``num_bytes`` (no copy: pages load on first touch)."""
        dtype = np.dtype("<u2") if dtype_id == _BFLOAT16 else _NUMPY_DTYPES.get(dtype_id)
        if dtype is None:
            raise ModelError(f"{self.name}: {what} has unknown dtype id {dtype_id}")
        itemsize = dtype.itemsize
        count = int(np.prod(shape, dtype=np.int64))
        if count * itemsize != num_bytes:
            raise ModelError(
                f"{self.name} is malformed: {what} declares {num_bytes} bytes for shape {shape}"
            )
        self._need(num_bytes, what)
        if dtype_id == _BFLOAT16:
            # numpy has no bfloat16; its bits are the top half of a float32, so widening is exact
            halves = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset)
            values = (halves.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset)
            values = values.reshape(shape)
        self.offset += num_bytes
        return values


def read_ct2_model(path: Path | str) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (or the directory holding it) into named arrays.

    Arrays are read-only views of a memory map, so the file is never copied into memory here;
    each alias in the file's alias table maps to the very array of its target. Raises
    ``ModelError`` on a missing, truncated or malformed file or another binary version.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    name = path.name
    try:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:  # ValueError: mmap of an empty file
        raise ModelError(f"cannot read CTranslate2 model {name}: {type(e).__name__}") from e

    reader = _Reader(buffer, name)
    version = reader.unpack("I", "the binary version")
    if version != SUPPORTED_BINARY_VERSION:
        raise ModelError(
            f"{name} has binary version {version}; expected {SUPPORTED_BINARY_VERSION}"
        )
    spec = reader.string("the spec name")
    revision = reader.unpack("I", "the spec revision")
    if spec != "WhisperSpec":
        raise ModelError(f"{name} holds a {spec!r} model; expected 'WhisperSpec'")

    variables: dict[str, np.ndarray] = {}
    for index in range(reader.unpack("I", "the variable count")):
        what = f"variable #{index}"
        var_name = reader.string(what)
        what = f"variable {var_name!r}"
        rank = reader.unpack("B", what)
        shape = tuple(reader.unpack("I", what) for _ in range(rank))
        dtype_id = reader.unpack("B", what)
        num_bytes = reader.unpack("I", what)
        variables[var_name] = reader.array(dtype_id, shape, num_bytes, what)

    for _ in range(reader.unpack("I", "the alias count")):
        alias = reader.string("an alias")
        target = reader.string(f"the target of alias {alias!r}")
        if target not in variables:
            raise ModelError(f"{name} is malformed: alias {alias!r} points at unknown {target!r}")
        variables[alias] = variables[target]

    if reader.offset != len(buffer):
        raise ModelError(f"{name} is malformed: {len(buffer) - reader.offset} trailing bytes")
    logger.debug("read %s: %s revision %d, %d variables", name, spec, revision, len(variables))
    return variables


def alignment_heads(ct2_dir: Path | str) -> list[tuple[int, int]]:
    """The (decoder layer, head) pairs whose cross-attention tracks word timing.

    openai-whisper ships these per official model name only, so a checkpoint loaded from a
    path falls back to "all heads of the upper half"; CTranslate2's ``config.json`` carries the
    real table, which the engine passes to ``Whisper.set_alignment_heads``. Empty when absent.
    """
    config_file = Path(ct2_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {config_file.name}: {type(e).__name__}") from e
    heads = config.get("alignment_heads") if isinstance(config, dict) else None
    if heads is None:
        return []
    try:
        pairs = [(int(layer), int(head)) for layer, head in heads]
    except (TypeError, ValueError) as e:
        raise ModelError(
            f"{config_file.name}: alignment_heads must be a list of [layer, head] pairs"
        ) from e
    return pairs


def _take(weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return weights[name]
    except KeyError:
        raise ModelError(f"model.bin lacks the variable {name!r}") from None


def _count_layers(weights: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    indices = {int(m.group(1)) for key in weights if (m := pattern.match(key))}
    if indices != set(range(len(indices))) or not indices:
        raise ModelError(f"model.bin has no contiguous {stack} layers (found {sorted(indices)})")
    return len(indices)


def _num_heads(weights: dict[str, np.ndarray], stack: str, state: int) -> int:
    """The head count stored by CTranslate2, else openai-whisper's fixed head width rule."""
    stored = weights.get(f"{stack}/num_heads")
    if stored is not None and stored.ndim == 0:
        return int(stored)
    if state % _HEAD_WIDTH:
        raise ModelError(f"{stack} width {state} is not a multiple of {_HEAD_WIDTH}")
    return state // _HEAD_WIDTH


def model_dims(weights: dict[str, np.ndarray]) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` fields, read off the tensors' shapes."""
    conv1 = _take(weights, "encoder/conv1/weight")
    if conv1.ndim != 3:
        raise ModelError(f"encoder/conv1/weight has shape {conv1.shape}; expected 3 dimensions")
    audio_pos = _take(weights, "encoder/position_encodings/encodings")
    text_pos = _take(weights, "decoder/position_encodings/encodings")
    embedding = _take(weights, "decoder/embeddings/weight")
    audio_state = int(conv1.shape[0])
    text_state = int(embedding.shape[1])
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(audio_pos.shape[0]),
        "n_audio_state": audio_state,
        "n_audio_head": _num_heads(weights, "encoder", audio_state),
        "n_audio_layer": _count_layers(weights, "encoder"),
        "n_vocab": int(embedding.shape[0]),
        "n_text_ctx": int(text_pos.shape[0]),
        "n_text_state": text_state,
        "n_text_head": _num_heads(weights, "decoder", text_state),
        "n_text_layer": _count_layers(weights, "decoder"),
    }


class _StateBuilder:
    """Collects openai-whisper tensors and remembers which CTranslate2 variables were used."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.used: set[str] = set()
        self.state: dict[str, torch.Tensor] = {}

    def get(self, name: str) -> np.ndarray:
        self.used.add(name)
        values = _take(self.weights, name)
        if values.dtype not in _FLOAT_DTYPES:
            raise ModelError(
                f"{name} is {values.dtype}: quantized models cannot be converted losslessly; "
                "convert a float16 or float32 model"
            )
        return values

    def put(self, key: str, values: np.ndarray) -> None:
        # copy out of the read-only memory map into memory torch owns (one copy in total)
        self.state[key] = torch.from_numpy(np.array(values, copy=True, order="C"))

    def copy(self, key: str, name: str) -> None:
        self.put(key, self.get(name))

    def linear(self, key: str, name: str) -> None:
        self.copy(f"{key}.weight", f"{name}/weight")
        self.copy(f"{key}.bias", f"{name}/bias")

    def layer_norm(self, key: str, name: str) -> None:
        self.copy(f"{key}.weight", f"{name}/gamma")
        self.copy(f"{key}.bias", f"{name}/beta")

    def fused(self, keys: Sequence[str], name: str) -> None:
        """Split a linear fused along its output rows; openai-whisper's key has no bias."""
        weight = self.get(f"{name}/weight")
        bias = self.get(f"{name}/bias")
        parts = len(keys)
        if weight.shape[0] % parts or bias.shape != (weight.shape[0],):
            raise ModelError(f"{name} has shape {weight.shape}; cannot split in {parts}")
        rows = weight.shape[0] // parts
        for i, key in enumerate(keys):
            self.put(f"{key}.weight", weight[i * rows : (i + 1) * rows])
            part_bias = bias[i * rows : (i + 1) * rows]
            if key.endswith(".key"):
                if np.any(part_bias != 0):
                    raise ModelError(f"{name}: the key bias is not zero; openai-whisper has none")
            else:
                self.put(f"{key}.bias", part_bias)


def state_dict(weights: dict[str, np.ndarray], dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """openai-whisper's ``model_state_dict`` from CTranslate2's variables (see MODELS.md)."""
    b = _StateBuilder(weights)
    b.put("encoder.positional_embedding", b.get("encoder/position_encodings/encodings"))
    b.linear("encoder.conv1", "encoder/conv1")
    b.linear("encoder.conv2", "encoder/conv2")
    for i in range(dims["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _attention_block(b, src, dst)
        _mlp(b, src, dst)
    b.layer_norm("encoder.ln_post", "encoder/layer_norm")

    b.put("decoder.positional_embedding", b.get("decoder/position_encodings/encodings"))
    b.copy("decoder.token_embedding.weight", "decoder/embeddings/weight")
    for i in range(dims["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _attention_block(b, src, dst)
        b.linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        b.fused((f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"), f"{src}/attention/linear_1")
        b.linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        b.layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        _mlp(b, src, dst)
    b.layer_norm("decoder.ln", "decoder/layer_norm")

    # openai-whisper ties the output projection to the token embedding; refuse anything else
    projection = weights.get("decoder/projection/weight")
    if projection is not None:
        b.used.add("decoder/projection/weight")
        embedding = weights["decoder/embeddings/weight"]
        if projection is not embedding and not np.array_equal(projection, embedding):
            raise ModelError("decoder/projection/weight differs from the token embedding")

    unused = sorted(k for k, v in weights.items() if v.ndim > 0 and k not in b.used)
    if unused:
        raise ModelError(f"model.bin has tensors with no openai-whisper place: {unused[:5]}")
    return b.state


def _attention_block(b: _StateBuilder, src: str, dst: str) -> None:
    keys = (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value")
    b.fused(keys, f"{src}/self_attention/linear_0")
    b.linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
    b.layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")


def _mlp(b: _StateBuilder, src: str, dst: str) -> None:
    b.linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
    b.linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
    b.layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")


def _check_against_model(dims: dict[str, int], state: dict[str, torch.Tensor]) -> None:
    """Compare names and shapes with an openai-whisper model built on the meta device.

    Catches a mapping error here, with a clear message, rather than at load time in a worker.
    The meta device allocates nothing, so this costs no memory.
    """
    from whisper.model import AudioEncoder, TextDecoder

    # ``Whisper`` itself cannot be built on meta (its sparse alignment mask has no meta kernel);
    # its state dict is exactly its encoder's and decoder's, prefixed.
    with torch.device("meta"):
        encoder = AudioEncoder(
            dims["n_mels"],
            dims["n_audio_ctx"],
            dims["n_audio_state"],
            dims["n_audio_head"],
            dims["n_audio_layer"],
        )
        decoder = TextDecoder(
            dims["n_vocab"],
            dims["n_text_ctx"],
            dims["n_text_state"],
            dims["n_text_head"],
            dims["n_text_layer"],
        )
    expected = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    expected.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelError(f"converted state dict mismatch: missing {missing[:5]}, extra {extra[:5]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(
                f"{key} has shape {tuple(state[key].shape)}; expected {tuple(tensor.shape)}"
            )


def convert(ct2_dir: Path, out_file: Path) -> Path:
    """Write ``ct2_dir``'s model as an openai-whisper checkpoint at ``out_file``; return it.

    The file appears atomically (a temporary file in the same folder, then a rename), so a
    crash never leaves a half-written checkpoint for ``whisper.load_model`` to trip over.
    """
    ct2_dir, out_file = Path(ct2_dir), Path(out_file)
    weights = read_ct2_model(ct2_dir / "model.bin")
    dims = model_dims(weights)
    state = state_dict(weights, dims)
    del weights  # the memory map closes once no view of it remains
    _check_against_model(dims, state)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".tmp", dir=out_file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"dims": dims, "model_state_dict": state}, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file owner-only; a baked model must be readable by the worker user
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out_file)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info(
        "converted %s to %s (%d tensors, %d layers, vocabulary %d)",
        ct2_dir.name,
        out_file.name,
        len(state),
        dims["n_text_layer"],
        dims["n_vocab"],
    )
    return out_file


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: convert one directory; exit status 1 with a message on failure."""
    parser = argparse.ArgumentParser(
        prog="python builder/ct2_to_openai.py",
        description="Convert a CTranslate2 Whisper model to an openai-whisper checkpoint.",
    )
    parser.add_argument("ct2_dir", type=Path, help="directory with model.bin and config.json")
    parser.add_argument("out_file", type=Path, help="checkpoint to write (e.g. tiny.en.pt)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = convert(args.ct2_dir, args.out_file)
    except ModelError as e:
        logger.error("conversion failed: %s", e)
        return 1
    heads = alignment_heads(args.ct2_dir)
    logger.info("wrote %s; alignment heads from config.json: %s", out, heads or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
