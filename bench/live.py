"""Live transcription latency and accuracy: the benchmark's speech streamed at real-time pace.

    .venv/bin/python -m bench.live                      # the 40 short English clips, tiny.en
    .venv/bin/python -m bench.live --limit 8 --gap 2
    .venv/bin/python -m bench.live --model base --device cuda
    .venv/bin/python -m bench.live --sessions 4 --limit 12          # 4 speakers at once
    .venv/bin/python -m bench.live --sessions 4 --limit 12 --with-file long   # and a file job
    .venv/bin/python -m bench.live --semantic       # semantic_vad: bench/semantic_vad.py

The server runs as it does in production (``WORKER_MODE=http python handler.py``, a process of
its own); the client is the official ``openai`` SDK's realtime connection
(``/v1/realtime?intent=transcription``, server VAD with OpenAI's defaults), sending 24 kHz PCM16
in 100 ms chunks at real-time pace: the clips one after another, with ``--gap`` seconds of
silence around each. Every clip is an utterance; each turn the server reports is given to the
utterance its audio overlaps most (a speaker's pause inside a clip may make two turns).

Per utterance:

* final latency: when its last ``completed`` arrived, minus when its audio ended (at real-time
  pace, when the speaker stopped; each 100 ms chunk goes out once it is complete, as from a
  microphone, so the chunking's own delay is part of every figure);
* the same counted from the end of its speech (the clips end with 0 to 2 s of silence), by
  Silero VAD run on the clip alone, without padding;
* first partial: when its first ``delta`` arrived, minus when its speech began (found the same
  way); an utterance longer than 3 s *has a partial* when that delta came before its audio
  ended;
* WER: the ``completed`` transcripts, joined, against the reference, pooled over clips, beside
  the offline WER of the same clips sent whole to ``/v1/audio/transcriptions`` of the same
  server (after the stream, so that it does not compete with it).

With ``--sessions N`` the same clips go out over N sockets at once, each session starting with
another clip (the list rotated) and ``--stagger`` seconds after the one before, as N people
speaking at once; per session: its final and first-partial latency, its WER, its turns
completed, and the utterances left without a ``completed`` (a starved session). With
``--with-file`` a file is transcribed through ``/v1/audio/transcriptions`` of the same server,
over and over, for as long as the sessions stream (``long``: the benchmark's 232.6 s long-form
clip), and each of those requests' wall time is printed.

Figures: median and 90th percentile. The machine may be shared with other work; its load average
is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soxr

from bench.data import REPO_ROOT, Item, manifest_items
from bench.metrics import scores

RATE = 24000
CHUNK_SECONDS = 0.1
PARTIAL_TARGET_SECONDS = 3.0


@dataclass
class Utterance:
    item: Item
    #: where it starts and ends in the session's audio (seconds)
    audio_start: float
    audio_end: float
    #: where Silero VAD (fresh, no padding) finds its speech begin and end, in the clip
    speech_start: float = 0.0
    speech_end: float = 0.0
    #: wall time (client clock) its first and last samples were live
    sent_start: float = 0.0
    sent_end: float = 0.0
    first_delta: float | None = None
    completed: list[tuple[float, str]] = field(default_factory=list)

    @property
    def final_latency(self) -> float | None:
        return self.completed[-1][0] - self.sent_end if self.completed else None

    @property
    def final_after_speech(self) -> float | None:
        """The final latency counted from the end of the speech, not of the clip."""
        if not self.completed:
            return None
        return self.completed[-1][0] - (self.sent_start + self.speech_end)

    @property
    def first_partial(self) -> float | None:
        """When the first delta came, counted from the start of the speech."""
        if self.first_delta is None:
            return None
        return self.first_delta - (self.sent_start + self.speech_start)

    @property
    def partial_in_time(self) -> bool:
        return self.first_delta is not None and self.first_delta < self.sent_end


def load_pcm(item: Item) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", item.path, "-ac", "1", "-ar", "16000",
         "-f", "f32le", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype=np.float32)


def speech_span(samples: np.ndarray) -> tuple[float, float]:
    """Where the speech of a clip begins and ends (seconds), by Silero VAD without padding."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
    regions = get_speech_timestamps(samples, options) or [{"start": 0, "end": len(samples)}]
    return regions[0]["start"] / 16000, regions[-1]["end"] / 16000


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(soxr.resample(samples, 16000, RATE), -1, 1) * 32767).astype("<i2").tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model: str, device: str, log_level: str, tree: Path = REPO_ROOT, sessions: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    """The server of the checkout at ``tree`` (this one by default; another, such as a baseline
    copy, runs with this checkout's models). Every session of the bench comes from one address,
    so the server takes ``sessions`` from one client (``LIVE_MAX_SESSIONS_PER_CLIENT``)."""
    port = free_port()
    env = {
        **os.environ,
        "WORKER_MODE": "http",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WHISPER_MODEL": model,
        "DEVICE": device,
        "LOG_LEVEL": log_level,
        "MODEL_DIR": os.environ.get("MODEL_DIR", str(REPO_ROOT / "models")),
        "LIVE_MAX_SESSIONS": str(max(4, sessions)),
        "LIVE_MAX_SESSIONS_PER_CLIENT": str(max(1, sessions)),
    }
    process = subprocess.Popen([sys.executable, "handler.py"], cwd=tree, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{base}/ping").status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not come up")
        time.sleep(0.2)


async def stream(
    base: str,
    utterances: list[Utterance],
    pcm: bytes,
    turn_detection: dict[str, Any] | None = None,
    delay: float = 0.0,
) -> list[dict[str, Any]]:
    """Stream the session's audio at real-time pace, ``delay`` seconds from now; every server
    event with its arrival time. ``turn_detection``: the session's (server VAD by default)."""
    await asyncio.sleep(delay)
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key=os.environ.get("API_KEY", "none"))
    events: list[dict[str, Any]] = []
    session: Any = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"language": "en"},
                "turn_detection": turn_detection or {"type": "server_vad"},
            }
        },
    }
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session=session)

        async def receive() -> None:
            while True:
                event = json.loads(await conn.recv_bytes())
                event["_t"] = time.monotonic()
                events.append(event)
                if event["type"] == "error":
                    print("error event:", event["error"], file=sys.stderr)

        receiving = asyncio.create_task(receive())
        step = int(CHUNK_SECONDS * RATE) * 2
        start = time.monotonic()
        for u in utterances:  # at real-time pace, when its first and last words were said
            u.sent_start, u.sent_end = start + u.audio_start, start + u.audio_end
        for offset in range(0, len(pcm), step):
            # as a microphone does: a chunk goes out once all of it has been recorded
            chunk = pcm[offset : offset + step]
            await asyncio.sleep(
                max(0.0, start + (offset + len(chunk)) / 2 / RATE - time.monotonic())
            )
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode("ascii"))
        deadline = time.monotonic() + 120
        while pending(events) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        receiving.cancel()
    await client.close()
    return events


def pending(events: list[dict[str, Any]]) -> bool:
    """Whether some started turn still lacks its ``completed``."""
    started = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.speech_started"}
    done = {
        e["item_id"]
        for e in events
        if e["type"].startswith("conversation.item.input_audio_transcription.")
        and not e["type"].endswith(".delta")
    }
    return bool(started - done)


def assign(events: list[dict[str, Any]], utterances: list[Utterance]) -> None:
    """Give each turn's deltas and completed to the utterance its audio overlaps most."""
    spans: dict[str, list[float]] = {}
    for e in events:
        if e["type"] == "input_audio_buffer.speech_started":
            spans[e["item_id"]] = [e["audio_start_ms"] / 1000, float("inf")]
        elif e["type"] == "input_audio_buffer.speech_stopped" and e["item_id"] in spans:
            spans[e["item_id"]][1] = e["audio_end_ms"] / 1000
    owner: dict[str, Utterance] = {}
    for item_id, (a, b) in spans.items():
        best = max(utterances, key=lambda u: min(b, u.audio_end) - max(a, u.audio_start))
        if min(b, best.audio_end) - max(a, best.audio_start) > 0:
            owner[item_id] = best
    for e in events:
        utterance = owner.get(e.get("item_id", ""))
        if utterance is None:
            continue
        if e["type"] == "conversation.item.input_audio_transcription.delta":
            if utterance.first_delta is None:
                utterance.first_delta = e["_t"]
        elif e["type"] == "conversation.item.input_audio_transcription.completed":
            utterance.completed.append((e["_t"], e["transcript"]))


def offline(base: str, utterances: list[Utterance]) -> list[str]:
    from openai import OpenAI

    with OpenAI(base_url=f"{base}/v1", api_key=os.environ.get("API_KEY", "none")) as client:
        return [
            client.audio.transcriptions.create(
                model="whisper-1", file=open(u.item.path, "rb"), language="en"
            ).text
            for u in utterances
        ]


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else float("nan")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def session_plan(
    items: list[Item], gap_seconds: float, rotation: int
) -> tuple[list[Utterance], bytes]:
    """One session's audio (the clips from ``rotation`` on, then the ones before, ``gap``
    seconds of silence around each) and its utterances."""
    ordered = items[rotation:] + items[:rotation]
    gap = np.zeros(int(gap_seconds * 16000), dtype=np.float32)
    parts, utterances, t = [gap], [], gap_seconds
    for item in ordered:
        samples = load_pcm(item)
        parts += [samples, gap]
        start, end = speech_span(samples)
        utterances.append(Utterance(item, t, t + len(samples) / 16000, start, end))
        t += len(samples) / 16000 + gap_seconds
    return utterances, to_pcm16(np.concatenate(parts))


async def transcribe_file_while(base: str, path: str, running: asyncio.Event) -> list[float]:
    """Transcribe ``path`` through ``/v1/audio/transcriptions`` again and again while
    ``running`` is set; the wall time of each request."""
    times: list[float] = []
    data = Path(path).read_bytes()
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        while running.is_set():
            started = time.monotonic()
            response = await client.post(
                "/v1/audio/transcriptions",
                files={"file": (os.path.basename(path), data)},
                data={"model": "whisper-1", "language": "en"},
                headers={"Authorization": f"Bearer {os.environ.get('API_KEY', 'none')}"},
            )
            response.raise_for_status()
            times.append(round(time.monotonic() - started, 2))
    return times


async def run_sessions(
    base: str,
    plans: list[tuple[list[Utterance], bytes]],
    turn_detection: dict[str, Any],
    stagger: float,
    file_path: str | None,
) -> tuple[list[list[dict[str, Any]]], list[float]]:
    running = asyncio.Event()
    running.set()
    file_job = (
        asyncio.create_task(transcribe_file_while(base, file_path, running)) if file_path else None
    )
    if file_job is not None:
        await asyncio.sleep(1.0)  # the file's decode is under way when the speech starts
    streams = [
        stream(base, utterances, pcm, turn_detection, delay=k * stagger)
        for k, (utterances, pcm) in enumerate(plans)
    ]
    events = await asyncio.gather(*streams)
    running.clear()
    file_times = await file_job if file_job is not None else []
    return list(events), file_times


def figures(utterances: list[Utterance]) -> dict[str, Any]:
    """One session's (or several pooled) latency figures, WER and turns."""
    finals = [u.final_latency for u in utterances if u.final_latency is not None]
    after_speech = [u.final_after_speech for u in utterances if u.final_after_speech is not None]
    firsts = [u.first_partial for u in utterances if u.first_partial is not None]
    long_ones = [u for u in utterances if u.item.duration > PARTIAL_TARGET_SECONDS]
    live_wer, _ = scores([(u.item.text, " ".join(t for _, t in u.completed)) for u in utterances])
    return {
        "utterances": len(utterances),
        "final_latency_median": median(finals),
        "final_latency_p90": round(p90(finals), 2),
        "final_after_speech_median": median(after_speech),
        "final_after_speech_p90": round(p90(after_speech), 2),
        "first_partial_median": median(firsts),
        "first_partial_p90": round(p90(firsts), 2),
        "partials_before_end_over_3s": (
            f"{sum(u.partial_in_time for u in long_ones)}/{len(long_ones)}"
        ),
        "wer_live": round(100 * (live_wer or 0), 2),
        "turns": sum(len(u.completed) for u in utterances),
        "without_completed": [u.item.name for u in utterances if not u.completed],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=0, help="the first N clips (0: all)")
    parser.add_argument("--gap", type=float, default=None, help="seconds of silence around clips")
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sockets")
    parser.add_argument(
        "--stagger", type=float, default=1.3, help="seconds between the sessions' starts"
    )
    parser.add_argument(
        "--silence-ms",
        type=int,
        default=None,
        help="server_vad silence_duration_ms (default: OpenAI's, 500)",
    )
    parser.add_argument(
        "--with-file",
        help="a file transcribed over and over meanwhile ('long': the 232.6 s long-form clip)",
    )
    parser.add_argument("--no-offline", action="store_true", help="skip the offline WER")
    parser.add_argument(
        "--server-tree", type=Path, default=REPO_ROOT, help="run another checkout's server"
    )
    parser.add_argument("--out", help="append the figures to this JSON-lines file")
    parser.add_argument("--details", action="store_true", help="a row per clip, with the texts")
    parser.add_argument(
        "--server-log", default="WARNING", help="the server's LOG_LEVEL (DEBUG: every decode)"
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="semantic_vad per eagerness against server_vad, on clips with a mid-sentence pause",
    )
    parser.add_argument("--pause-ms", type=int, default=600, help="with --semantic: the pause")
    args = parser.parse_args()
    args.gap_given = args.gap is not None
    if args.gap is None:
        args.gap = 1.5
    if args.semantic:
        from bench.semantic_vad import run

        run(args)
        return

    every = manifest_items()
    items = [i for i in every if not i.name.startswith("long:")]
    if args.limit:
        items = items[: args.limit]
    file_path = args.with_file
    if file_path == "long":
        file_path = next(i.path for i in every if i.name.startswith("long:"))
    turn_detection: dict[str, Any] = {"type": "server_vad"}
    if args.silence_ms is not None:
        turn_detection["silence_duration_ms"] = args.silence_ms
    sessions = max(1, args.sessions)
    plans = [session_plan(items, args.gap, k * len(items) // sessions) for k in range(sessions)]

    process, base = start_server(
        args.model, args.device, args.server_log, args.server_tree, sessions
    )
    try:
        load_before = os.getloadavg()[0]
        all_events, file_times = asyncio.run(
            run_sessions(base, plans, turn_detection, args.stagger, file_path)
        )
        load_after = os.getloadavg()[0]
        first = plans[0][0]
        offline_texts = [""] * len(first) if args.no_offline else offline(base, first)
    finally:
        process.terminate()
        process.wait(30)

    per_session = []
    for (utterances, _), events in zip(plans, all_events, strict=True):
        assign(events, utterances)
        per_session.append(figures(utterances))
    pooled = figures([u for utterances, _ in plans for u in utterances])
    offline_wer, _ = scores([(u.item.text, o) for u, o in zip(first, offline_texts, strict=True)])
    result = {
        "model": args.model,
        "device": args.device,
        "sessions": sessions,
        "silence_duration_ms": args.silence_ms or 500,
        "with_file": os.path.basename(file_path) if file_path else None,
        "server_tree": str(args.server_tree),
        "audio_seconds": round(len(plans[0][1]) / 2 / RATE, 1),
        **pooled,
        "wer_offline": None if args.no_offline else round(100 * (offline_wer or 0), 2),
        "per_session": per_session,
        "file_request_seconds": file_times,
        "load_average": [round(load_before, 1), round(load_after, 1)],
    }
    print("| figure | median | p90 |\n|---|---|---|")
    print(
        f"| final latency (s) | {result['final_latency_median']} | {result['final_latency_p90']} |"
    )
    print(
        f"| final latency after the end of speech (s) | {result['final_after_speech_median']} | "
        f"{result['final_after_speech_p90']} |"
    )
    print(f"| first partial after the start of speech (s) | {result['first_partial_median']} | "
          f"{result['first_partial_p90']} |")  # fmt: skip
    print(f"\npartials before the end of utterances > 3 s: {result['partials_before_end_over_3s']}")
    print(
        f"WER live {result['wer_live']}% vs offline {result['wer_offline']}% "
        f"({result['utterances']} utterances, {result['turns']} turns, {sessions} session(s) of "
        f"{result['audio_seconds']} s, silence {result['silence_duration_ms']} ms)"
    )
    print(f"load average before/after: {result['load_average']}; "
          f"no completed: {result['without_completed']}")  # fmt: skip
    if sessions > 1:
        print(
            "\n| session | final s (median / p90) | after speech s | first partial s | WER % "
            "| turns | without completed |"
        )
        print("|---|---|---|---|---|---|---|")
        for k, f in enumerate(per_session):
            print(
                f"| {k + 1} | {f['final_latency_median']} / {f['final_latency_p90']} | "
                f"{f['final_after_speech_median']} | {f['first_partial_median']} | "
                f"{f['wer_live']} | {f['turns']} | {len(f['without_completed'])} |"
            )
    if file_path:
        print(f"\nfile requests meanwhile ({os.path.basename(file_path)}): {file_times} s")
    late = [u for u in first if u.item.duration > PARTIAL_TARGET_SECONDS and not u.partial_in_time]
    for u in late:
        print(f"  no partial in time: {u.item.name} ({u.item.duration:.1f} s), first partial "
              f"{u.first_partial}")  # fmt: skip
    if args.details:
        print(
            "\n| clip | s | turns | final s | after speech s | first partial s | live | offline |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for u, text in zip(first, offline_texts, strict=True):
            live = " ".join(t for _, t in u.completed)
            print(
                f"| {u.item.name} | {u.item.duration:.1f} | {len(u.completed)} | "
                f"{u.final_latency or 0:.2f} | {u.final_after_speech or 0:.2f} | "
                f"{u.first_partial or 0:.2f} | {live} | {text} |"
            )
    if args.out:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
