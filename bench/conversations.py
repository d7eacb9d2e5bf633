"""Conversations built from the benchmark's clips, and which of their utterances a transcript kept.

Speech as people record it: several speakers taking turns with pauses between them. Each
conversation joins clips of different speakers (never the same speaker twice in a row) with
pauses drawn from 0.5 to 3 s, so every utterance's text, speaker and place on the timeline are
known exactly. ``present`` tells, for each utterance, whether a transcript holds it: the
hypothesis is aligned word by word against the whole conversation's reference (after Whisper's
English normaliser, with each run of numbers as one token of digits) and an utterance counts
as present when at least half of its words are matched. A dropped sentence shows as an
utterance with (almost) no matched words, however good the rest of the transcript is.

Used by ``bench/completeness.py`` and by the completeness tests; nothing is written to disk.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

import numpy as np

from bench.data import Item, manifest_items

SAMPLE_RATE = 16000
#: the pause between two utterances is drawn from this range (seconds)
PAUSES = (0.5, 3.0)
#: an utterance counts as present when at least this share of its words is matched
PRESENT_SHARE = 0.5
#: conversations of the benchmark: (how many, utterances each, at least this long in seconds)
SHORT_TALKS = (24, (3, 5), 0.0)
LONG_TALKS = (8, (7, 12), 62.0)
SEED = 16


@dataclass(frozen=True)
class Utterance:
    text: str
    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class Conversation:
    name: str
    samples: np.ndarray
    utterances: tuple[Utterance, ...]

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)


def speaker_of(item: Item) -> str:
    """The clip's speaker: LibriSpeech's reader id, one LibriVox reader, else the recording."""
    found = re.search(r"_ls-[a-z]+-clean_(\d+)-", item.name)
    if found:
        return found.group(1)
    return "librivox" if "_librivox_" in item.name else item.name


@functools.cache
def _samples(path: str) -> np.ndarray:
    from src.audio.decode import decode_audio

    return decode_audio(path)


def clips() -> list[Item]:
    """The benchmark's short English clips of real speech (the long-form one excluded)."""
    return [i for i in manifest_items() if not i.name.startswith("long:")]


def build(
    count: int,
    utterances: tuple[int, int],
    min_seconds: float = 0.0,
    *,
    seed: int = SEED,
    pauses: tuple[float, float] = PAUSES,
    pool: list[Item] | None = None,
) -> list[Conversation]:
    """``count`` conversations of ``utterances`` (inclusive range) clips each, continued until
    at least ``min_seconds`` long; the same seed gives the same conversations."""
    rng = random.Random(seed)
    pool = pool if pool is not None else clips()
    talks = []
    for n in range(count):
        wanted = rng.randint(*utterances)
        chosen: list[Item] = []
        length = 0.0
        while len(chosen) < wanted or length < min_seconds:
            previous = speaker_of(chosen[-1]) if chosen else None
            options = [
                i for i in pool if speaker_of(i) != previous and all(i is not c for c in chosen)
            ]
            pick = rng.choice(options or pool)
            chosen.append(pick)
            length += pick.duration + pauses[1]
        talks.append(join(f"talk{n:02d}", chosen, rng, pauses))
    return talks


def join(
    name: str, items: list[Item], rng: random.Random, pauses: tuple[float, float] = PAUSES
) -> Conversation:
    """The clips' audio joined with a pause drawn from ``pauses`` between two of them."""
    parts: list[np.ndarray] = []
    spoken: list[Utterance] = []
    at = 0
    for index, item in enumerate(items):
        if index:
            gap = np.zeros(round(rng.uniform(*pauses) * SAMPLE_RATE), dtype=np.float32)
            parts.append(gap)
            at += len(gap)
        audio = _samples(item.path)
        parts.append(audio)
        spoken.append(
            Utterance(
                item.text, speaker_of(item), at / SAMPLE_RATE, (at + len(audio)) / SAMPLE_RATE
            )
        )
        at += len(audio)
    return Conversation(name, np.concatenate(parts), tuple(spoken))


def benchmark_set(quick: bool = False) -> list[Conversation]:
    """The completeness benchmark: short conversations (under a minute) and long ones (over)."""
    count, size, seconds = SHORT_TALKS
    short = build(8 if quick else count, size, seconds, seed=SEED)
    count, size, seconds = LONG_TALKS
    long = build(2 if quick else count, size, seconds, seed=SEED + 1)
    return short + [Conversation(f"long{t.name[4:]}", t.samples, t.utterances) for t in long]


def present(utterances: tuple[Utterance, ...] | list[Utterance], hypothesis: str) -> list[bool]:
    """For each utterance, whether ``hypothesis`` holds at least half of its words (aligned
    against the whole conversation's reference, in order)."""
    import jiwer

    from bench.metrics import normaliser

    normalise = normaliser()
    owners: list[int] = []
    words: list[str] = []
    for index, utterance in enumerate(utterances):
        these = _number_runs(normalise(utterance.text).split())
        words += these
        owners += [index] * len(these)
    hyp = _number_runs(normalise(hypothesis).split())
    hits = [0] * len(utterances)
    if hyp and words:
        out = jiwer.process_words(" ".join(words), " ".join(hyp))
        for chunk in out.alignments[0]:
            if chunk.type == "equal":
                for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    hits[owners[k]] += 1
    sizes = [owners.count(i) for i in range(len(utterances))]
    return [size == 0 or hit >= PRESENT_SHARE * size for hit, size in zip(hits, sizes, strict=True)]


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGITS = {word: str(digit) for digit, word in enumerate(_NUMBERS)}


def _number_runs(words: list[str]) -> list[str]:
    """Words with each run of numbers written as one token of digits. Whisper's normaliser
    reads "one two three" as "123" but "1, 2, 3" as "one 2 3" and "1,2,3" as "12 3": the same
    spoken words would otherwise count as missing (the benchmark's "one two three" clip)."""
    out: list[str] = []
    run = ""
    for word in [*words, ""]:
        digits = _DIGITS.get(word, word)
        if digits.isdigit():
            run += digits
            continue
        if run:
            out.append(run)
            run = ""
        if word:
            out.append(word)
    return out
