"""Diarization error rate (DER) of ``src.diarization`` on conversations built from LibriSpeech.

    .venv/bin/python bench/diarization_eval.py --model ge2e.npz [--conversations 12] [--sweep]

Why built conversations: no multi-speaker recording with a known truth is at hand, but the
benchmark holds clips of ten LibriSpeech readers (``../shared/benchmark/manifest.jsonl``,
``speaker``). Concatenating clips of different readers, with 0.3-1.0 s of silence between them,
gives conversations whose turns are known exactly: each clip's span, trimmed to where its signal
first and last rises above -40 dB of its peak (an energy rule independent of the Silero VAD the
diarizer uses). Pauses *inside* a clip stay reference speech, so "missed" includes the VAD
dropping them; "confusion" is the speaker error proper.

DER = (missed + false alarm + confusion) / reference speech, on a 10 ms grid, frames within
0.25 s of a reference boundary not scored (the usual collar), speakers mapped one-to-one so as to
maximise agreement. Conversations differ in speakers and order (seeded).

Measured (``--conversations 12``, seeds 2/3/4, 2-4 readers, 2-3 turns each; missed speech is
3.1% (4 readers: 5.2%) and false alarm at most 0.1%, so the rest is confusion):

    readers  audio   count known: DER (worst)   unknown, t=0.35: DER (worst)  speakers found
    2        448 s   3.1% (7.3%), confusion 0   3.4% (12.2%)                  one of 12 gets 3
    3        790 s   3.1% (9.8%), confusion 0   5.5% (26.5%)                  one of 12 gets 4
    4        974 s   5.2% (11.0%), confusion 0  13.3% (35.2%)                 four of 12 get 5

One voice, unknown count: JFK (11 s, four phrases), FLEURS en_000 (11 s) and the LJSpeech
long-form clip (233 s, 51 turns) each come out as a single speaker.

Sweep of the unknown-count threshold (``--sweep``, 2 / 3 readers): 0.3 -> 4.1% / 6.1% (too many
speakers), 0.4 -> 4.6% / 4.0% (too few), 0.5 -> 7.6% / 14.3%, 0.6 -> 29.5% / 36.7%. The extra
speakers inspected came from one reader recorded twice (LibriSpeech 1272: chapters 128104 and
141231, one clip at 8 kHz) whose clips split into two clusters; ``max_speakers`` or
``num_speakers`` fixes that when the caller knows better.

Speed: VAD + encoder (numpy, float32) ran at about 8x real time on the 2-core shared test
machine (448 s in 57 s, 974 s in 116 s). The window step grows past 0.4 s once there would be
more than 3000 windows (about 20 min of speech), so an hour costs about as much as 20 minutes.

Limits, said plainly: read speech, one microphone per clip, no overlap, clean silence between
turns, and clips of one reader often from one chapter. The threshold was chosen on these same
conversations (``--sweep``), so the unknown-count figure is optimistic. Real meetings, with
overlapping speech and short back-channel turns, will score worse.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from src.diarization.cluster import DEFAULT_THRESHOLD  # noqa: E402
from src.diarization.encoder import SAMPLE_RATE, SpeakerEncoder  # noqa: E402
from src.diarization.pipeline import SpeakerTurn, cluster_turns, embed_speech  # noqa: E402

logger = logging.getLogger("diarization_eval")

FRAME_S = 0.01
COLLAR_S = 0.25


@dataclass(frozen=True)
class SpeakerClip:
    path: Path
    speaker: str


@dataclass(frozen=True)
class Conversation:
    audio: np.ndarray
    reference: list[SpeakerTurn]
    speakers: tuple[str, ...]


@dataclass(frozen=True)
class DerBreakdown:
    """Seconds of scored reference speech and of each error kind; ``der`` is their ratio."""

    speech: float
    missed: float
    false_alarm: float
    confusion: float

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / max(self.speech, 1e-9)

    def __add__(self, other: DerBreakdown) -> DerBreakdown:
        return DerBreakdown(
            self.speech + other.speech,
            self.missed + other.missed,
            self.false_alarm + other.false_alarm,
            self.confusion + other.confusion,
        )


def speaker_clips(benchmark_dir: Path) -> dict[str, list[SpeakerClip]]:
    """Benchmark clips with a ``speaker`` id, grouped by speaker, in manifest order."""
    clips: dict[str, list[SpeakerClip]] = defaultdict(list)
    with open(benchmark_dir / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row.get("speaker"):
                    clips[row["speaker"]].append(
                        SpeakerClip(benchmark_dir / row["file"], row["speaker"])
                    )
    return dict(clips)


def speech_span(wave: np.ndarray, floor_db: float = -40.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than ``floor_db`` below the loudest."""
    hop = int(FRAME_S * SAMPLE_RATE)
    n = wave.size // hop
    if n == 0:
        return 0, wave.size
    energy = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop) ** 2, axis=1)) + 1e-10
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > floor_db)
    return int(loud[0]) * hop, int(loud[-1] + 1) * hop


def build_conversation(
    clips: dict[str, list[SpeakerClip]],
    speakers: tuple[str, ...],
    turns: int,
    rng: np.random.Generator,
    load: object,
) -> Conversation:
    """``turns`` clips, each by another speaker than the last (if any), 0.3-1.0 s apart.

    ``load`` decodes a path to 16 kHz float32 (``tests.conftest.load_waveform``). Each speaker's
    clips are used in turn and reused only when exhausted.
    """
    assert callable(load)
    used: dict[str, int] = defaultdict(int)
    pieces: list[np.ndarray] = []
    reference: list[SpeakerTurn] = []
    position = 0
    previous: str | None = None
    for turn in range(turns):
        if turn < len(speakers):
            speaker = speakers[turn]  # everyone speaks once early on
        else:
            others = [s for s in speakers if s != previous]
            speaker = str(rng.choice(others)) if others else speakers[0]
        own = clips[speaker]
        wave = np.asarray(load(own[used[speaker] % len(own)].path), dtype=np.float32)
        used[speaker] += 1
        if pieces:
            gap = np.zeros(int(rng.uniform(0.3, 1.0) * SAMPLE_RATE), dtype=np.float32)
            pieces.append(gap)
            position += gap.size
        first, last = speech_span(wave)
        reference.append(
            SpeakerTurn((position + first) / SAMPLE_RATE, (position + last) / SAMPLE_RATE, speaker)
        )
        pieces.append(wave)
        position += wave.size
        previous = speaker
    return Conversation(np.concatenate(pieces), reference, speakers)


def _grid(turns: list[SpeakerTurn], n: int, names: dict[str, int]) -> np.ndarray:
    grid = np.full(n, -1, dtype=np.int64)
    for turn in turns:
        index = names.setdefault(turn.speaker, len(names))
        grid[round(turn.start / FRAME_S) : round(turn.end / FRAME_S)] = index
    return grid


def diarization_error(
    reference: list[SpeakerTurn],
    hypothesis: list[SpeakerTurn],
    duration: float,
    collar: float = COLLAR_S,
) -> DerBreakdown:
    """Missed, false-alarm and confusion seconds of ``hypothesis`` against ``reference``.

    Single-speaker frames only (the built conversations have no overlap). Speakers are mapped
    one-to-one by exhaustive search, which is exact and cheap for up to 8 speakers a side.
    """
    n = int(np.ceil(duration / FRAME_S))
    ref = _grid(reference, n, {})
    hyp = _grid(hypothesis, n, {})
    scored = np.ones(n, dtype=bool)
    width = round(collar / FRAME_S)
    for turn in reference:
        for edge in (round(turn.start / FRAME_S), round(turn.end / FRAME_S)):
            scored[max(0, edge - width) : edge + width] = False
    ref, hyp = ref[scored], hyp[scored]
    missed = np.sum((ref >= 0) & (hyp < 0))
    false_alarm = np.sum((ref < 0) & (hyp >= 0))
    both = (ref >= 0) & (hyp >= 0)
    n_ref, n_hyp = int(ref.max(initial=-1)) + 1, int(hyp.max(initial=-1)) + 1
    counts = np.zeros((max(n_ref, 1), max(n_hyp, 1)), dtype=np.int64)
    np.add.at(counts, (ref[both], hyp[both]), 1)
    best = 0
    if n_ref and n_hyp:
        if n_hyp <= n_ref:
            for perm in itertools.permutations(range(n_ref), n_hyp):
                best = max(best, int(sum(counts[r, h] for h, r in enumerate(perm))))
        else:
            for perm in itertools.permutations(range(n_hyp), n_ref):
                best = max(best, int(sum(counts[r, h] for r, h in enumerate(perm))))
    confusion = int(both.sum()) - best
    return DerBreakdown(
        float(np.sum(ref >= 0)) * FRAME_S,
        float(missed) * FRAME_S,
        float(false_alarm) * FRAME_S,
        float(confusion) * FRAME_S,
    )


def conversations(
    clips: dict[str, list[SpeakerClip]], count: int, n_speakers: int, seed: int, load: object
) -> list[Conversation]:
    """``count`` conversations of ``n_speakers`` distinct readers with 2-3 turns per reader."""
    rng = np.random.default_rng(seed)
    names = sorted(clips)
    out = []
    for _ in range(count):
        chosen = tuple(str(s) for s in rng.choice(names, size=n_speakers, replace=False))
        turns = int(rng.integers(2 * n_speakers, 3 * n_speakers + 1))
        out.append(build_conversation(clips, chosen, turns, rng, load))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the converted .npz")
    parser.add_argument("--benchmark", type=Path, default=REPO_ROOT.parent / "shared/benchmark")
    parser.add_argument("--conversations", type=int, default=12, help="per speaker count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="also try several thresholds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(REPO_ROOT))
    from tests.conftest import load_waveform

    encoder = SpeakerEncoder.load(args.model)
    clips = speaker_clips(args.benchmark)
    thresholds: list[float | None] = [None, 0.3, 0.4, 0.5, 0.6] if args.sweep else [None]
    for n_speakers in (2, 3, 4):
        convs = conversations(
            clips, args.conversations, n_speakers, args.seed + n_speakers, load_waveform
        )
        audio_s = sum(c.audio.size for c in convs) / SAMPLE_RATE
        began = time.monotonic()
        embedded = [embed_speech(c.audio, encoder) for c in convs]
        logger.info(
            "%d speakers: %d conversations, %.0f s of audio, VAD + encoder %.1f s",
            n_speakers,
            len(convs),
            audio_s,
            time.monotonic() - began,
        )
        settings: list[tuple[str, dict[str, Any]]] = [("known", {"num_speakers": n_speakers})]
        settings += [
            (
                f"unknown t={t}" if t else f"unknown t={DEFAULT_THRESHOLD}*",
                {"threshold": t} if t else {},
            )
            for t in thresholds
        ]
        for label, kwargs in settings:
            total = DerBreakdown(0.0, 0.0, 0.0, 0.0)
            counts = []
            worst = 0.0
            for conv, speech in zip(convs, embedded, strict=True):
                hyp = cluster_turns(speech, **kwargs)
                result = diarization_error(conv.reference, hyp, conv.audio.size / SAMPLE_RATE)
                total = total + result
                worst = max(worst, result.der)
                counts.append(len({t.speaker for t in hyp}))
            logger.info(
                "%d speakers, %-14s DER %5.1f%% (missed %.1f%%, FA %.1f%%, confusion %.1f%%) "
                "worst %.1f%%, speakers found %s",
                n_speakers,
                label,
                100 * total.der,
                100 * total.missed / total.speech,
                100 * total.false_alarm / total.speech,
                100 * total.confusion / total.speech,
                100 * worst,
                counts,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
