"""semantic_vad against server_vad on utterances with a pause in the middle of a sentence.

    .venv/bin/python -m bench.live --semantic                  # 8 clips, 600 ms pauses
    .venv/bin/python -m bench.live --semantic --limit 12 --pause-ms 800

Each clip gets a pause of ``--pause-ms`` between two words in the middle of a sentence (a word
boundary near its middle where the word before ends without ``.``, ``?``, ``!`` or ``,``, found
with faster-whisper's word timings of the clip; the audio between the two words is replaced by
that much silence, so the pause is ``--pause-ms`` long, not that plus the words' own gap), and
the clips are streamed at real-time pace over the Realtime socket (``bench.live.stream``), once
per turn detection: ``server_vad``
(OpenAI's defaults, 500 ms of silence) and ``semantic_vad`` with each ``eagerness``. Per mode:

* cut at the pause: utterances whose inserted pause ended a turn (a ``speech_stopped`` decided
  inside it);
* split: utterances that came back as more than one turn (at the pause or at a pause of their
  own);
* turns ended, over all utterances (one per utterance is right);
* final latency: the last ``completed`` of an utterance minus when its audio ended, median and
  90th percentile (the turn end waits for the eagerness's silence, so this is where eagerness
  costs);
* WER of the ``completed`` transcripts against the reference.

``--gap`` (default here 2.5 s) is the silence between utterances: a turn whose end waits longer
than that runs into the next utterance (``low`` waits up to 8 s after a word that trails off).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data import REPO_ROOT, Item, manifest_items
from bench.live import (
    Utterance,
    assign,
    load_pcm,
    median,
    p90,
    speech_span,
    start_server,
    stream,
    to_pcm16,
)
from bench.metrics import scores

MODES: dict[str, dict[str, Any]] = {
    "server_vad (500 ms)": {"type": "server_vad"},
    "semantic_vad low": {"type": "semantic_vad", "eagerness": "low"},
    "semantic_vad medium": {"type": "semantic_vad", "eagerness": "medium"},
    "semantic_vad high": {"type": "semantic_vad", "eagerness": "high"},
    "semantic_vad auto": {"type": "semantic_vad", "eagerness": "auto"},
}
_SENTENCE_END = (".", "?", "!")


@dataclass(frozen=True)
class Paused:
    item: Item
    samples: np.ndarray
    #: where the pause is (seconds into the new clip) and the words either side
    pause_at: float
    pause_s: float
    before: str
    after: str


def insert_pause(item: Item, pause_s: float, model: Any) -> Paused | None:
    """``item``'s audio with ``pause_s`` of silence between two words mid-sentence (the boundary
    nearest the middle of its speech); None when it has no such boundary."""
    samples = load_pcm(item)
    segments, _ = model.transcribe(samples, language="en", word_timestamps=True, beam_size=5)
    words = [w for s in segments for w in s.words or ()]
    if len(words) < 4:
        return None
    middle = (words[0].start + words[-1].end) / 2
    candidates = [
        i
        for i in range(1, len(words) - 1)
        if not words[i - 1].word.strip().endswith(_SENTENCE_END)
        and not words[i - 1].word.strip().endswith(",")
    ]
    if not candidates:
        return None
    i = min(candidates, key=lambda k: abs(words[k].start - middle))
    before, after = int(words[i - 1].end * 16000), int(words[i].start * 16000)
    after = max(after, before)
    silence = np.zeros(int(pause_s * 16000), dtype=np.float32)
    paused = np.concatenate([samples[:before], silence, samples[after:]])
    return Paused(
        item, paused, before / 16000, pause_s, words[i - 1].word.strip(), words[i].word.strip()
    )


def plan(paused: list[Paused], gap_s: float) -> tuple[list[Utterance], bytes]:
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    parts, utterances, t = [gap], [], gap_s
    for p in paused:
        parts += [p.samples, gap]
        start, end = speech_span(p.samples)
        utterances.append(Utterance(p.item, t, t + len(p.samples) / 16000, start, end))
        t += len(p.samples) / 16000 + gap_s
    return utterances, to_pcm16(np.concatenate(parts))


def cut_at_pause(
    events: list[dict[str, Any]], utterances: list[Utterance], paused: list[Paused]
) -> list[bool]:
    """Per utterance: whether a turn end was decided inside its inserted pause."""
    stops = [
        e["audio_end_ms"] / 1000 for e in events if e["type"] == "input_audio_buffer.speech_stopped"
    ]
    cuts = []
    for u, p in zip(utterances, paused, strict=True):
        start = u.audio_start + p.pause_at
        # decided once the silence waited for had passed: within the pause, or just after it
        cuts.append(any(start < t <= start + p.pause_s + 0.1 for t in stops))
    return cuts


def mode_figures(utterances: list[Utterance], cuts: list[bool]) -> dict[str, Any]:
    finals = [u.final_latency for u in utterances if u.final_latency is not None]
    wer, _ = scores([(u.item.text, " ".join(t for _, t in u.completed)) for u in utterances])
    return {
        "utterances": len(utterances),
        "cut_at_pause": sum(cuts),
        "split": sum(len(u.completed) > 1 for u in utterances),
        "turns": sum(len(u.completed) for u in utterances),
        "without_completed": sum(not u.completed for u in utterances),
        "final_latency_median": median(finals),
        "final_latency_p90": round(p90(finals), 2),
        "wer": round(100 * (wer or 0), 2),
    }


def run(args: argparse.Namespace) -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(REPO_ROOT / "models" / "faster-whisper" / "tiny.en"), device="cpu", compute_type="int8"
    )
    items = [
        i
        for i in manifest_items()
        if not i.name.startswith("long:") and i.text and 4.0 <= i.duration <= 15.0
    ]
    paused: list[Paused] = []
    for item in items:
        p = insert_pause(item, args.pause_ms / 1000, model)
        if p is not None:
            paused.append(p)
        if len(paused) == (args.limit or 8):
            break
    del model
    gap = args.gap if args.gap_given else 2.5
    process, base = start_server(args.model, args.device, args.server_log)
    results: dict[str, dict[str, Any]] = {}
    try:
        load_before = os.getloadavg()[0]
        for name, detection in MODES.items():
            utterances, pcm = plan(paused, gap)
            events = asyncio.run(stream(base, utterances, pcm, detection))
            assign(events, utterances)
            results[name] = mode_figures(utterances, cut_at_pause(events, utterances, paused))
            results[name]["per_clip"] = [len(u.completed) for u in utterances]
            print(name, results[name], flush=True)
        load_after = os.getloadavg()[0]
    finally:
        process.terminate()
        process.wait(30)
    print(
        f"\n{len(paused)} utterances, a {args.pause_ms} ms pause mid-sentence in each, "
        f"{gap} s between them, model {args.model} on {args.device}; load average "
        f"{load_before:.1f} -> {load_after:.1f}\n"
    )
    print(
        "| turn detection | cut at the pause | split | turns | final latency s (median / p90) "
        "| WER % |"
    )
    print("|---|---|---|---|---|---|")
    for name, f in results.items():
        print(
            f"| {name} | {f['cut_at_pause']}/{f['utterances']} | {f['split']} | {f['turns']} | "
            f"{f['final_latency_median']} / {f['final_latency_p90']} | {f['wer']} |"
        )
    if args.details:
        print("\n| clip | pause between | turns per mode |\n|---|---|---|")
        for k, p in enumerate(paused):
            turns = " ".join(str(f["per_clip"][k]) for f in results.values())
            print(f"| {p.item.name} | {p.before} / {p.after} at {p.pause_at:.2f} s | {turns} |")
