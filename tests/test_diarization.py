"""Speaker diarization: converter vs ``torch.load``, numpy encoder vs the torch network, the
clustering vs a brute-force UPGMA, DER on conversations of real LibriSpeech readers.

The weights are not committed: a session fixture fetches the Resemblyzer wheel into ``.cache/``
(``builder.bake_diarizer.wheel_path``: pip download, sha256 checked, nothing installed) and
converts it once. The DER bounds come from ``bench/diarization_eval.py`` (module docstring there).
"""

from __future__ import annotations

import collections
import io
import itertools
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench.diarization_eval import (
    Conversation,
    DerBreakdown,
    conversations,
    diarization_error,
    speaker_clips,
)
from builder.bake_diarizer import bake, wheel_path
from src.diarization import (
    SpeakerEncoder,
    SpeakerTurn,
    default_encoder_path,
    diarize,
    label_segments,
    label_words,
)
from src.diarization.cluster import average_linkage, cluster_speakers
from src.diarization.convert import WHEEL_MEMBER, ConversionError, load_checkpoint
from src.diarization.encoder import mel_filterbank, mel_frames, normalize_volume
from src.diarization.pipeline import SpeechEmbeddings, cluster_turns, embed_speech
from src.engines.base import Segment, Word
from tests.conftest import BENCHMARK_DIR, REPO_ROOT, load_waveform

SR = 16000


@pytest.fixture(scope="session")
def resemblyzer_wheel() -> Path:
    try:
        return wheel_path(REPO_ROOT / ".cache" / "resemblyzer")
    except RuntimeError as e:
        pytest.fail(f"Resemblyzer wheel unavailable (needed for the diarization weights): {e}")


@pytest.fixture(scope="session")
def encoder_file(resemblyzer_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baked exactly as the image bakes it (builder/bake_diarizer.py)."""
    return bake(tmp_path_factory.mktemp("models"), resemblyzer_wheel)


@pytest.fixture(scope="session")
def encoder(encoder_file: Path) -> SpeakerEncoder:
    return SpeakerEncoder.load(encoder_file)


@pytest.fixture(scope="session")
def torch_state(resemblyzer_wheel: Path) -> dict[str, np.ndarray]:
    """The original checkpoint as torch itself reads it (torch exists only in the test env)."""
    torch = pytest.importorskip("torch")
    with zipfile.ZipFile(resemblyzer_wheel) as wheel:
        raw = wheel.read(WHEEL_MEMBER)
    checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in checkpoint["model_state"].items()}


def test_converter_reads_every_array_exactly_as_torch(
    resemblyzer_wheel: Path, torch_state: dict[str, np.ndarray]
) -> None:
    arrays, _ = load_checkpoint(resemblyzer_wheel)
    assert set(arrays) == {k for k in torch_state if k.startswith(("lstm.", "linear."))}
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, torch_state[name], err_msg=name)


def test_converter_refuses_a_pickle_naming_other_classes(tmp_path: Path) -> None:
    """Loading a checkpoint must not import or call arbitrary globals."""
    stream = b"".join(
        pickle.dumps(x)
        for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, collections.Counter())
    )
    (tmp_path / "evil.pt").write_bytes(stream)
    with pytest.raises(ConversionError, match="refuses"):
        load_checkpoint(tmp_path / "evil.pt")


def test_converter_refuses_a_file_that_is_not_a_legacy_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(pickle.dumps("hello"))
    with pytest.raises(ConversionError, match="magic"):
        load_checkpoint(tmp_path / "x.pt")


def test_baked_file_is_where_the_worker_looks(encoder_file: Path) -> None:
    env = {"MODEL_DIR": str(encoder_file.parents[1])}
    assert default_encoder_path(env) == encoder_file
    assert default_encoder_path({"DIARIZATION_MODEL": "/x.npz", **env}) == Path("/x.npz")
    assert encoder_file.stat().st_mode & 0o044 == 0o044  # readable by a non-root worker


def test_mel_filterbank_matches_librosa_as_whisper_ships_it() -> None:
    """Whisper's ``mel_filters.npz`` is ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``:
    the same Slaney formula, the same FFT size as Resemblyzer's 40-band bank."""
    whisper_audio = pytest.importorskip("whisper.audio")
    reference = whisper_audio.mel_filters("cpu", 80).numpy()
    np.testing.assert_allclose(mel_filterbank(80), reference, rtol=0, atol=1e-7)


def test_mel_frames_match_torch_stft(jfk_wave: np.ndarray) -> None:
    """librosa's centred, zero-padded, periodic-Hann power STFT, as torch.stft computes it."""
    torch = pytest.importorskip("torch")
    audio = jfk_wave[: 3 * SR]
    spec = torch.stft(
        torch.from_numpy(audio),
        n_fft=400,
        hop_length=160,
        window=torch.hann_window(400, periodic=True),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    expected = (spec.abs() ** 2).numpy().T @ mel_filterbank().T
    ours = mel_frames(audio)
    assert ours.shape == expected.shape == (1 + audio.size // 160, 40)
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-6 * float(expected.max()))


@pytest.fixture(scope="session")
def jfk_wave() -> np.ndarray:
    return load_waveform(BENCHMARK_DIR / "en_jfk.flac")


def test_numpy_encoder_matches_the_torch_network(
    encoder: SpeakerEncoder, torch_state: dict[str, np.ndarray]
) -> None:
    """Same d-vectors as Resemblyzer's ``VoiceEncoder.forward`` on real speech, full windows
    and shorter ones (read at their own last frame)."""
    torch = pytest.importorskip("torch")
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    linear = torch.nn.Linear(256, 256)
    lstm.load_state_dict(
        {k[5:]: torch.from_numpy(v) for k, v in torch_state.items() if k.startswith("lstm.")}
    )
    linear.load_state_dict(
        {
            "weight": torch.from_numpy(torch_state["linear.weight"]),
            "bias": torch.from_numpy(torch_state["linear.bias"]),
        }
    )
    for name in ("en_ls-test-clean_1089-134686-0001.wav", "en_ls-dev-clean_2412-153948-0000.flac"):
        mels = mel_frames(normalize_volume(load_waveform(BENCHMARK_DIR / name)))
        windows = [(s, s + 160) for s in range(0, mels.shape[0] - 160, 120)] + [(3, 60), (7, 120)]
        ours = encoder.embed_windows(mels, windows)
        with torch.no_grad():
            # full windows in one batch, as VoiceEncoder.forward gets them; short ones alone
            batches = [[w for w in windows if w[1] - w[0] == 160]]
            batches += [[w] for w in windows if w[1] - w[0] != 160]
            for batch in batches:
                x = torch.from_numpy(np.stack([mels[a:b] for a, b in batch]))
                _, (hidden, _) = lstm(x)
                raw = torch.relu(linear(hidden[-1])).numpy()
                expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
                got = ours[[windows.index(w) for w in batch]]
                cosines = np.sum(got * expected, axis=1)
                assert cosines.min() > 0.9999, (name, batch, cosines)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def _brute_force_upgma(x: np.ndarray) -> list[float]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - unit @ unit.T
    groups = [[i] for i in range(len(x))]
    heights = []
    while len(groups) > 1:
        pairs = itertools.combinations(range(len(groups)), 2)
        a, b = min(pairs, key=lambda p: d[np.ix_(groups[p[0]], groups[p[1]])].mean())
        heights.append(float(d[np.ix_(groups[a], groups[b])].mean()))
        groups[a] = groups[a] + groups[b]
        del groups[b]
    return sorted(heights)


def test_average_linkage_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 5, 17, 30):
        x = rng.standard_normal((n, 8))
        ours = [m.distance for m in average_linkage(x)]
        np.testing.assert_allclose(ours, _brute_force_upgma(x), atol=1e-9)


def test_cluster_count_is_found_fixed_or_clamped() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((3, 64))
    x = np.concatenate([c + 0.05 * rng.standard_normal((10, 64)) for c in centres])
    found = cluster_speakers(x)
    assert list(found) == [0] * 10 + [1] * 10 + [2] * 10  # numbered by first appearance
    assert cluster_speakers(x, num_speakers=2).max() == 1
    assert cluster_speakers(x, max_speakers=2).max() == 1
    assert cluster_speakers(x, min_speakers=5).max() == 4
    assert cluster_speakers(x[:2], num_speakers=4).max() == 1  # never more groups than items
    with pytest.raises(ValueError):
        cluster_speakers(x, min_speakers=3, max_speakers=2)


def test_der_counts_each_error_kind_and_maps_speakers() -> None:
    ref = [SpeakerTurn(0.0, 10.0, "a"), SpeakerTurn(10.0, 20.0, "b")]
    assert diarization_error(ref, ref, 20.0).der == 0.0
    swapped = [SpeakerTurn(0.0, 10.0, "X"), SpeakerTurn(10.0, 20.0, "Y")]
    assert diarization_error(ref, swapped, 20.0).der == 0.0
    one = diarization_error(ref, [SpeakerTurn(0.0, 20.0, "X")], 20.0)
    assert one.confusion == pytest.approx(9.5) and one.der == pytest.approx(0.5)
    half = diarization_error(ref, [SpeakerTurn(0.0, 10.0, "X")], 20.0)
    assert half.missed == pytest.approx(9.5) and half.false_alarm == 0.0
    extra = diarization_error(ref, [*ref, SpeakerTurn(25.0, 30.0, "a")], 30.0)
    assert extra.false_alarm == pytest.approx(5.0)


@pytest.fixture(scope="module")
def conversation_set(encoder: SpeakerEncoder) -> list[tuple[int, Conversation, SpeechEmbeddings]]:
    clips = speaker_clips(BENCHMARK_DIR)
    out: list[tuple[int, Conversation, SpeechEmbeddings]] = []
    for n in (2, 3):
        (conv,) = conversations(clips, 1, n, 7 + n, load_waveform)
        out.append((n, conv, embed_speech(conv.audio, encoder)))
    return out


def test_der_on_librispeech_conversations(
    conversation_set: list[tuple[int, Conversation, SpeechEmbeddings]],
) -> None:
    """Bounds from bench/diarization_eval.py (figures in its docstring): with the count known,
    no confusion and a DER of 3.1% (worst 9.8%) made of VAD misses at pauses inside clips.

    Unknown count: the 2-reader conversation is found exactly. The 3-reader one (seeded, not
    chosen) shows the failure the bench counts too: reader 1272's 29 s clip, recorded in another
    chapter, is far enough from his other clips to become a fourth speaker; capping the count
    with ``max_speakers`` removes it.
    """
    for n, conv, speech in conversation_set:
        duration = conv.audio.size / SR
        known = cluster_turns(speech, num_speakers=n)
        capped = cluster_turns(speech, max_speakers=n)
        unknown = cluster_turns(speech)
        for turns in (known, unknown, capped):
            assert all(0 <= t.start < t.end <= duration + 0.01 for t in turns)
            assert all(a.end <= b.start for a, b in itertools.pairwise(turns))
        k_err = diarization_error(conv.reference, known, duration)
        assert len({t.speaker for t in known}) == n
        assert k_err.confusion / k_err.speech < 0.03, k_err
        assert k_err.der < 0.12, k_err
        assert diarization_error(conv.reference, capped, duration).der < 0.12
        u_err = diarization_error(conv.reference, unknown, duration)
        if n == 2:
            assert len({t.speaker for t in unknown}) == n, unknown
            assert u_err.der < 0.12, u_err
        else:  # at most the one split reader (measured: 4 speakers, DER 37%)
            assert n <= len({t.speaker for t in unknown}) <= n + 1, unknown
            assert u_err.der < 0.45, u_err


def test_diarize_end_to_end_on_two_readers(encoder: SpeakerEncoder) -> None:
    """The public entry point: two readers, 0.6 s apart; every turn goes to the right one."""
    a = load_waveform(BENCHMARK_DIR / "en_ls-test-clean_1089-134686-0002.wav")
    b = load_waveform(BENCHMARK_DIR / "en_ls-dev-clean_2412-153948-0000.flac")
    gap = np.zeros(int(0.6 * SR), dtype=np.float32)
    audio = np.concatenate([a, gap, b, gap, a])
    turns = diarize(audio, encoder)
    boundary_1 = a.size / SR
    boundary_2 = (a.size + gap.size + b.size) / SR
    speakers = [
        label_segments([_segment(s, e)], turns)[0]
        for s, e in (
            (0.5, boundary_1 - 0.5),
            (boundary_1 + 1.0, boundary_2 - 0.5),
            (boundary_2 + 1.0, audio.size / SR - 0.5),
        )
    ]
    assert speakers == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]


def test_one_voice_in_short_phrases_is_one_speaker(
    encoder: SpeakerEncoder, jfk_wave: np.ndarray
) -> None:
    """JFK's 11 s: four phrases between pauses, some shorter than a 1.6 s window."""
    turns = diarize(jfk_wave, encoder)
    assert len(turns) >= 2
    assert {t.speaker for t in turns} == {"SPEAKER_00"}


def test_silence_has_no_speakers(encoder: SpeakerEncoder) -> None:
    assert diarize(np.zeros(5 * SR, dtype=np.float32), encoder) == []
    with pytest.raises(ValueError, match="mono"):
        diarize(np.zeros((2, SR), dtype=np.float32), encoder)
    with pytest.raises(ValueError, match="min_speakers"):
        diarize(np.zeros(SR, dtype=np.float32), encoder, min_speakers=0)


def _segment(start: float, end: float) -> Segment:
    return Segment(0, start, end, "", 0.0, 0.0, 1.0)


def test_segments_and_words_take_the_speaker_they_overlap_most() -> None:
    turns = [
        SpeakerTurn(0.0, 4.0, "SPEAKER_00"),
        SpeakerTurn(4.5, 9.0, "SPEAKER_01"),
        SpeakerTurn(9.0, 10.0, "SPEAKER_00"),
    ]
    segments = [_segment(0.2, 3.0), _segment(3.5, 8.0), _segment(8.5, 10.0), _segment(20, 21)]
    assert label_segments(segments, turns) == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", None]
    words = [Word(4.1, 4.3, " gap", 1.0), Word(10.5, 10.8, " after", 1.0), Word(5, 6, " x", 1.0)]
    assert label_words(words, turns) == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]
    assert label_words(words, []) == [None, None, None]


def test_der_breakdown_adds_up() -> None:
    total = DerBreakdown(10.0, 1.0, 0.5, 0.5) + DerBreakdown(10.0, 0.0, 0.0, 2.0)
    assert total.der == pytest.approx(0.2)
