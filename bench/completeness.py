"""Completeness: does every utterance of a conversation come out, worker against plain Whisper?

    .venv/bin/python -m bench.completeness                 # 24 short + 8 long talks, base
    .venv/bin/python -m bench.completeness --quick         # 8 short + 2 long
    .venv/bin/python -m bench.completeness --systems worker,faster-whisper
    .venv/bin/python -m bench.completeness --quick --alignments   # each utterance's errors

Conversations come from ``bench/conversations.py``: the benchmark's clips of different speakers
joined with pauses of 0.5-3 s, 3-5 utterances under a minute and 7-12 over a minute. Every
system decodes the same samples with the language given ("en") and its own defaults otherwise:

- ``worker``: the queue handler (``handler.handler``), the audio sent as base64 WAV;
- ``faster-whisper``: ``WhisperModel.transcribe`` as a user calls it (beam 5, no VAD), int8,
  with the worker's thread count;
- ``openai-whisper``: ``whisper.transcribe`` on the converted checkpoint (beam 5, fp32);
- ``one by one``: the worker on each utterance alone, the WER the conversations should reach.

For each system: utterances dropped (``conversations.present``: under half of its words in the
transcript), WER pooled over the conversations (Whisper's English normaliser), wall time and
its ratio to plain faster-whisper's, measured in this run (each conversation goes through every
system in turn, so a change of load on the machine touches them alike). Dropped utterances are
listed. ``--alignments`` prints, for every utterance whose words any system got wrong, each
system's errors on it (``utterance_errors``): where a system loses words the others keep.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.conversations import SAMPLE_RATE, Conversation, Utterance, benchmark_set, present
from bench.metrics import scores

SYSTEMS = ("worker", "faster-whisper", "openai-whisper", "one by one")


@dataclass
class Outcome:
    system: str
    seconds: float = 0.0
    utterances: int = 0
    dropped: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    redecoded: int = 0
    #: the transcript of each conversation, by name
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def wer(self) -> float:
        wer, _ = scores(self.pairs)
        return (wer or 0.0) * 100


def wav_base64(samples: np.ndarray) -> str:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return base64.b64encode(out.getvalue()).decode()


def worker(model: str) -> Callable[[np.ndarray], tuple[str, int]]:
    os.environ.update({"WHISPER_MODEL": model, "WHISPER_ENGINE": "faster-whisper"})
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import handler

    def run(samples: np.ndarray) -> tuple[str, int]:
        job = {
            "id": "bench",
            "input": {
                "audio": {"base64": wav_base64(samples)},
                "options": {"language": "en", "output_format": "text"},
            },
        }
        result = handler.handler(job)
        if "error" in result:
            raise RuntimeError(result["error"])
        decode = result["metadata"]["decode"]
        return str(result["transcription"]["text"]), int(decode.get("regions_redecoded", 0))

    run(np.zeros(SAMPLE_RATE, dtype=np.float32))  # load the model before timing
    return run


def faster_whisper(model: str) -> Callable[[np.ndarray], tuple[str, int]]:
    from faster_whisper import WhisperModel

    from src.engines.faster import usable_cpus
    from src.models.locate import resolve_model

    path = resolve_model("faster-whisper", model, _model_dir()).path
    fw = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=usable_cpus())

    def run(samples: np.ndarray) -> tuple[str, int]:
        segments, _ = fw.transcribe(samples, language="en", beam_size=5)
        return "".join(s.text for s in segments), 0

    return run


def openai_whisper(model: str) -> Callable[[np.ndarray], tuple[str, int]]:
    import whisper

    from src.models.locate import resolve_model

    checkpoint = resolve_model("openai-whisper", model, _model_dir()).path
    reference = whisper.load_model(str(checkpoint), device="cpu")

    def run(samples: np.ndarray) -> tuple[str, int]:
        result = reference.transcribe(samples, language="en", beam_size=5, fp16=False)
        return str(result["text"]), 0

    return run


def _model_dir() -> Any:
    from src.config import Settings

    return Settings.from_env().model_dir


def measure_one(
    outcome: Outcome, run: Callable[[np.ndarray], tuple[str, int]], talk: Conversation
) -> None:
    """One conversation through one system, added to its outcome."""
    started = time.perf_counter()
    if outcome.system == "one by one":
        texts = []
        for u in talk.utterances:
            first, last = round(u.start * SAMPLE_RATE), round(u.end * SAMPLE_RATE)
            texts.append(run(talk.samples[first:last])[0])
        text, redecoded = " ".join(texts), 0
    else:
        text, redecoded = run(talk.samples)
    outcome.seconds += time.perf_counter() - started
    outcome.redecoded += redecoded
    outcome.pairs.append((talk.text, text))
    outcome.texts[talk.name] = text
    kept = present(talk.utterances, text)
    outcome.utterances += len(kept)
    for u, ok in zip(talk.utterances, kept, strict=True):
        if not ok:
            outcome.dropped.append(f"{talk.name} {u.start:6.1f}-{u.end:6.1f} s {u.speaker}")


def utterance_errors(utterances: tuple[Utterance, ...], hypothesis: str) -> list[list[str]]:
    """For each utterance, the errors of ``hypothesis`` on its words (after Whisper's English
    normaliser, aligned against the whole conversation's reference): ``-word`` deleted,
    ``+word`` inserted, ``word>said`` substituted. Words inserted between two utterances go to
    the later one."""
    import jiwer

    from bench.metrics import normaliser

    normalise = normaliser()
    owners: list[int] = []
    words: list[str] = []
    for index, utterance in enumerate(utterances):
        these = normalise(utterance.text).split()
        words += these
        owners += [index] * len(these)
    hyp = normalise(hypothesis).split()
    errors: list[list[str]] = [[] for _ in utterances]
    if not hyp:
        for k, word in enumerate(words):
            errors[owners[k]].append(f"-{word}")
    if not words or not hyp:
        return errors
    out = jiwer.process_words(" ".join(words), " ".join(hyp))
    for chunk in out.alignments[0]:
        said = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "insert":
            owner = owners[min(chunk.ref_start_idx, len(owners) - 1)]
            errors[owner] += [f"+{w}" for w in said]
            continue
        for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
            at = k - chunk.ref_start_idx
            if chunk.type == "delete":
                errors[owners[k]].append(f"-{words[k]}")
            elif chunk.type == "substitute":
                errors[owners[k]].append(f"{words[k]}>{said[at]}")
    return errors


def print_alignments(talks: list[Conversation], rows: dict[tuple[str, str], Outcome]) -> None:
    """Each utterance that some system got wrong, with every system's errors on it."""
    texts: dict[str, dict[str, str]] = {}
    for (system, _), outcome in rows.items():
        texts.setdefault(system, {}).update(outcome.texts)
    print("\nerrors by utterance (-deleted +inserted ref>said):")
    for talk in talks:
        found = {s: utterance_errors(talk.utterances, t[talk.name]) for s, t in texts.items()}
        for index, utterance in enumerate(talk.utterances):
            if not any(errors[index] for errors in found.values()):
                continue
            print(
                f"  {talk.name} #{index} {utterance.start:6.1f}-{utterance.end:6.1f} s "
                f"{utterance.speaker}: {utterance.text[:60]}"
            )
            for system, errors in found.items():
                print(f"      {system:15s} {' '.join(errors[index]) or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--quick", action="store_true", help="8 short and 2 long talks")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--alignments", action="store_true", help="print each utterance's errors, per system"
    )
    args = parser.parse_args()
    talks = benchmark_set(quick=args.quick)
    groups = {
        "under 1 min": [t for t in talks if t.duration < 60],
        "over 1 min": [t for t in talks if t.duration >= 60],
    }
    print(
        f"{len(talks)} conversations, {sum(len(t.utterances) for t in talks)} utterances, "
        f"{sum(t.duration for t in talks):.0f} s; model {args.model}",
        flush=True,
    )
    makers = {
        "worker": worker,
        "faster-whisper": faster_whisper,
        "openai-whisper": openai_whisper,
        "one by one": worker,
    }
    systems = args.systems.split(",")
    runs = {system: makers[system](args.model) for system in systems}
    rows = {(s, g): Outcome(s) for s in systems for g in groups}
    # conversation by conversation, every system in turn: a machine whose load changes during
    # the run changes every system's time alike
    for group, members in groups.items():
        for talk in members:
            for system in systems:
                measure_one(rows[system, group], runs[system], talk)
            print(f"  {talk.name} done", flush=True)
    for (system, group), outcome in rows.items():
        print(
            f"  {system:15s} {group:12s} dropped {len(outcome.dropped):3d}/"
            f"{outcome.utterances:<3d} WER {outcome.wer:5.2f}% {outcome.seconds:7.1f} s",
            flush=True,
        )
        for line in outcome.dropped:
            print(f"      dropped: {line}", flush=True)
    plain = {g: o.seconds for (s, g), o in rows.items() if s == "faster-whisper"}
    print("\n| system | talks | dropped | WER | time | x plain faster-whisper | re-decoded |")
    print("|---|---|---|---|---|---|---|")
    for (system, group), o in rows.items():
        ratio = f"{o.seconds / plain[group]:.2f}" if plain.get(group) else "-"
        share = 100 * len(o.dropped) / max(1, o.utterances)
        print(
            f"| {system} | {group} | {len(o.dropped)}/{o.utterances} ({share:.1f}%) | "
            f"{o.wer:.2f}% | {o.seconds:.1f} s | {ratio} | {o.redecoded} |"
        )
    if args.alignments:
        print_alignments(talks, rows)


if __name__ == "__main__":
    main()
