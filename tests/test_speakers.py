"""``"diarize": true`` end to end: a conversation of two LibriSpeech readers, whose turns are
known exactly, through the handler and through the local endpoint."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from whisper_client.api import RunPodClient
from whisper_client.local_endpoint import LocalEndpoint, load_handler
from whisper_client.policy import PollPolicy

from tests.conftest import Clip, load_waveform, wav_bytes
from tests.test_diarization import encoder_file, resemblyzer_wheel  # noqa: F401 (fixtures)

GAP_S = 0.6


@pytest.fixture
def diarizing(encoder_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    monkeypatch.setenv("DIARIZATION_MODEL", str(encoder_file))
    return encoder_file


@pytest.fixture(scope="module")
def conversation(manifest: list[Clip]) -> tuple[str, list[tuple[float, float, str]]]:
    """Two readers taking turns A B A B, 0.6 s apart: the WAV as base64, and the true turns."""
    by_speaker: dict[str, list[Clip]] = {}
    for clip in manifest:
        if clip.speaker and clip.duration_s < 12:
            by_speaker.setdefault(clip.speaker, []).append(clip)
    a, b = sorted((s for s in by_speaker if len(by_speaker[s]) >= 2), key=str)[:2]
    order = [by_speaker[a][0], by_speaker[b][0], by_speaker[a][1], by_speaker[b][1]]
    pieces, turns, t = [], [], 0.0
    gap = np.zeros(int(GAP_S * 16000), dtype=np.float32)
    for clip in order:
        wave = load_waveform(clip.path)
        pieces += [wave, gap]
        turns.append((t, t + len(wave) / 16000, clip.speaker or ""))
        t += (len(wave) + len(gap)) / 16000
    audio = base64.b64encode(wav_bytes(np.concatenate(pieces))).decode()
    return audio, turns


def _true_speaker(turns: list[tuple[float, float, str]], start: float, end: float) -> str:
    """The reader whose turn holds (or lies nearest to) the middle of ``[start, end]``."""
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t[0] - middle, middle - t[1], 0.0))[2]


def _accuracy(pairs: list[tuple[str, str]]) -> float:
    """Share of items labelled right under the best one-to-one mapping of labels to speakers."""
    labels = sorted({p for p, _ in pairs})
    truths = sorted({t for _, t in pairs})
    best = 0
    for perm in itertools.permutations(truths, min(len(labels), len(truths))):
        mapping = dict(zip(labels, perm, strict=False))
        best = max(best, sum(mapping.get(p) == t for p, t in pairs))
    return best / len(pairs)


def _check(output: dict[str, Any], turns: list[tuple[float, float, str]]) -> None:
    segments = output["transcription"]["segments"]
    assert segments and all(s.get("speaker", "").startswith("SPEAKER_") for s in segments)
    assert len({s["speaker"] for s in segments}) == 2
    words = [w for s in segments for w in s["words"]]
    assert all(w.get("speaker", "").startswith("SPEAKER_") for w in words)
    word_pairs = [(w["speaker"], _true_speaker(turns, w["start"], w["end"])) for w in words]
    # Measured 1.0 on this conversation; 0.9 leaves room for a word at a turn's edge.
    print(f"\nword speaker accuracy {_accuracy(word_pairs):.3f} over {len(word_pairs)} words")
    assert _accuracy(word_pairs) >= 0.9


def test_diarize_through_the_handler(
    handler_module: ModuleType, diarizing: Path, conversation: tuple[str, list[Any]]
) -> None:
    audio, turns = conversation
    out = handler_module.handler(
        {"id": "d", "input": {"audio": {"base64": audio}, "options": {"diarize": True}}}
    )
    _check(out, turns)


def test_diarize_with_a_known_count_through_the_local_endpoint(
    handler_module: ModuleType, diarizing: Path, conversation: tuple[str, list[Any]]
) -> None:
    audio, turns = conversation
    job = {"audio": {"base64": audio}, "options": {"diarize": True, "num_speakers": 2}}
    with (
        LocalEndpoint(load_handler(), endpoint_id="spk", api_key="k") as endpoint,
        RunPodClient(
            "spk", "k", base_url=endpoint.base_url, poll=PollPolicy(0.05, 1.5, 0.5)
        ) as client,
    ):
        final = client.wait(client.run(job).id, timeout=300)
    assert final.status == "COMPLETED"
    _check(final.output, turns)


def test_without_the_speaker_model_diarize_is_refused(
    handler_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIARIZATION_MODEL", str(tmp_path / "absent.npz"))
    out = handler_module.handler(
        {"id": "d", "input": {"audio": {"base64": "AAAA"}, "options": {"diarize": True}}}
    )
    assert set(out) == {"error"} and "options.diarize" in out["error"]
