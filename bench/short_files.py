"""Short files through the HTTP route: this tree against another commit's, in the same run.

    git worktree add /work/baseline <commit>                    # the code to compare against
    .venv/bin/python -m bench.short_files --baseline /work/baseline --model tiny.en
    .venv/bin/python -m bench.short_files --baseline /work/baseline --model base --rounds 2

Two servers run as deployed (``WORKER_MODE=http python handler.py``, each its own process, the
baseline's from its own directory with this checkout's models and virtualenv), both up for the
whole run. Each of the benchmark's 40 short English clips is posted once to each server's
``/v1/audio/transcriptions`` (the official ``openai`` SDK, ``language="en"``), one request at a
time, the two servers in turn clip by clip (a shared machine's load falls on both alike), after
one warm-up request each. Per server: the sum of the requests' wall times (upload, decode,
transcription, response: what a client waits), the speed-up (baseline time / this tree's time),
and the pooled WER (Whisper's English normaliser) against the references. The load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import httpx

from bench.data import REPO_ROOT, manifest_items
from bench.live import start_server
from bench.metrics import scores


def post(client: httpx.Client, path: str) -> tuple[float, str]:
    with open(path, "rb") as f:
        data = f.read()
    started = time.perf_counter()
    response = client.post(
        "/v1/audio/transcriptions",
        files={"file": (os.path.basename(path), data)},
        data={"model": "whisper-1", "language": "en"},
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, str(response.json()["text"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="a worktree of the commit to compare")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the 40 clips")
    parser.add_argument("--out", help="append the figures to this JSON-lines file")
    args = parser.parse_args()

    items = [i for i in manifest_items() if not i.name.startswith("long:")]
    trees = {"baseline": Path(args.baseline).resolve(), "this tree": REPO_ROOT}
    servers = {
        name: start_server(args.model, args.device, "WARNING", tree=tree)
        for name, tree in trees.items()
    }
    headers = {"Authorization": f"Bearer {os.environ.get('API_KEY', 'none')}"}
    try:
        clients = {
            name: httpx.Client(base_url=base, timeout=600, headers=headers)
            for name, (_, base) in servers.items()
        }
        for client in clients.values():
            post(client, items[0].path)  # warm-up
        load_before = os.getloadavg()[0]
        times = {name: 0.0 for name in trees}
        texts: dict[str, list[tuple[str, str]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for item in items:
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    elapsed, text = post(clients[name], item.path)
                    times[name] += elapsed
                    if round_ == 0:
                        texts[name].append((item.text, text))
        load_after = os.getloadavg()[0]
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(30)
    audio = sum(i.duration for i in items) * args.rounds
    result = {
        "model": args.model,
        "device": args.device,
        "clips": len(items),
        "rounds": args.rounds,
        "audio_seconds": round(audio, 1),
        "baseline": str(trees["baseline"]),
        "seconds": {name: round(t, 2) for name, t in times.items()},
        "speedup": round(times["baseline"] / times["this tree"], 2),
        "wer": {name: round(100 * (scores(pairs)[0] or 0), 2) for name, pairs in texts.items()},
        "load_average": [round(load_before, 1), round(load_after, 1)],
    }
    print("| server | requests | wall s | s per clip | RTF | WER % |\n|---|---|---|---|---|---|")
    for name in trees:
        n = len(items) * args.rounds
        print(
            f"| {name} | {n} | {times[name]:.2f} | {times[name] / n:.3f} | "
            f"{audio / times[name]:.1f} | {result['wer'][name]} |"
        )
    print(
        f"\n{args.model}: this tree {result['speedup']}x the baseline's speed; load average "
        f"before/after {result['load_average']}"
    )
    if args.out:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
