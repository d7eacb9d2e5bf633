"""The benchmark's audio: the shared clips, long files joined with ffmpeg, silence and music.

Everything made here goes into a temporary directory the caller owns; nothing is written into
the repository or the shared benchmark folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("WHISPER_WORKER_SHARED", REPO_ROOT.parent / "shared"))
BENCHMARK_DIR = SHARED_DIR / "benchmark"
#: the joined long file is at least this long (the issue asks for 10 minutes and more)
LONG_FILE_SECONDS = 600.0
#: silence between joined clips, as a speaker's pause
JOIN_PAUSE_SECONDS = 0.5
#: the order of the shuffled long file (fixed: every run decodes the same file)
SHUFFLE_SEED = 7


@dataclass(frozen=True)
class Item:
    """One audio file with its reference text ('' for silence and music)."""

    name: str
    path: str
    text: str
    duration: float


@dataclass(frozen=True)
class Dataset:
    name: str
    items: tuple[Item, ...]

    @property
    def seconds(self) -> float:
        return sum(i.duration for i in self.items)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps({"name": self.name, "items": [asdict(i) for i in self.items]}))
        return path

    @classmethod
    def load(cls, path: Path) -> Dataset:
        raw = json.loads(path.read_text())
        return cls(raw["name"], tuple(Item(**i) for i in raw["items"]))


def manifest_items() -> list[Item]:
    """The shared set's English clips (the 40 short ones, then the long-form one)."""
    items = []
    with open(BENCHMARK_DIR / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["language"] != "en":
                continue
            name = ("long:" if row.get("long_form") else "") + row["file"]
            items.append(
                Item(name, str(BENCHMARK_DIR / row["file"]), row["text"], float(row["duration_s"]))
            )
    return items


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


def join_clips(items: list[Item], workdir: Path, min_seconds: float) -> Item:
    """The clips joined in order (repeated from the first when short of ``min_seconds``).

    ffmpeg resamples every clip to 16 kHz mono WAV, the concat demuxer joins them with a
    half-second pause between, and the result is stored as FLAC (a realistic upload).
    """
    parts = workdir / "parts"
    parts.mkdir(exist_ok=True)
    pause = parts / "pause.wav"
    _ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(JOIN_PAUSE_SECONDS), str(pause)
    )  # fmt: skip
    chosen: list[Item] = []
    total = 0.0
    while total < min_seconds:
        for item in items:
            chosen.append(item)
            total += item.duration + JOIN_PAUSE_SECONDS
            if total >= min_seconds:
                break
    lines = []
    for n, item in enumerate(chosen):
        wav = parts / f"{n:03d}.wav"
        if not wav.exists():
            _ffmpeg("-i", item.path, "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(wav))
        lines += [f"file '{wav}'", f"file '{pause}'"]
    listing = workdir / "concat.txt"
    listing.write_text("\n".join(lines) + "\n")
    out = workdir / f"joined_{int(min_seconds)}s.flac"
    _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c:a", "flac", str(out))
    text = " ".join(i.text for i in chosen)
    return Item(f"joined {len(chosen)} clips", str(out), text, _duration(out))


def silence(workdir: Path, seconds: float) -> Item:
    out = workdir / f"silence_{int(seconds)}s.flac"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(seconds), str(out))
    return Item("silence", str(out), "", seconds)


def music(workdir: Path, seconds: float) -> Item:
    """Music with no voice: sox plays a looping chord progression of plucked strings."""
    out = workdir / f"music_{int(seconds)}s.flac"
    chords = [("C3", "E4", "G4"), ("A2", "C4", "E4"), ("F2", "A3", "C4"), ("G2", "B3", "D4")]
    bars = []
    for n in range(int(seconds // 2) + 1):
        notes = chords[n % len(chords)]
        bar = workdir / f"bar_{n % len(chords)}.wav"
        if not bar.exists():
            synth = []
            for note in notes:
                synth += ["pluck", note]
            subprocess.run(
                ["sox", "-n", "-r", "16000", "-c", "1", str(bar), "synth", "2", *synth,
                 "delay", "0", "0.05", "0.1", "remix", "-", "fade", "0", "2", "0.3",
                 "norm", "-6"],
                check=True,
            )  # fmt: skip
        bars.append(str(bar))
    joined = workdir / "music_joined.wav"
    subprocess.run(["sox", *bars, str(joined)], check=True)
    _ffmpeg("-i", str(joined), "-t", str(seconds), str(out))
    return Item("music", str(out), "", _duration(out))


def build(workdir: Path, *, quick: bool) -> list[Dataset]:
    """The datasets of one run, each written beside its audio as JSON for the child processes."""
    items = manifest_items()
    short = [i for i in items if not i.name.startswith("long:")]
    long_form = [i for i in items if i.name.startswith("long:")]
    noise_seconds = 65.0 if quick else 120.0
    datasets = [
        Dataset("short clips", tuple(short[:8] if quick else short)),
        Dataset("long-form 232 s", tuple(long_form)),
    ]
    if not quick:
        joined = join_clips(short + long_form, workdir, LONG_FILE_SECONDS)
        datasets.append(Dataset("joined >= 10 min", (joined,)))
        # the same speech in another order: a change of speaker or recording at every clip,
        # where a window decoded on its own is most likely to end its text early
        mixed = short + long_form
        random.Random(SHUFFLE_SEED).shuffle(mixed)
        (workdir / "shuffled").mkdir(exist_ok=True)
        shuffled = join_clips(mixed, workdir / "shuffled", LONG_FILE_SECONDS)
        datasets.append(Dataset("shuffled >= 10 min", (shuffled,)))
    datasets.append(Dataset("silence", (silence(workdir, noise_seconds),)))
    datasets.append(Dataset("music", (music(workdir, noise_seconds),)))
    return datasets
