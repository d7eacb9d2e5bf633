"""The same long file through the HTTP mode and through the queue handler: time and peak RSS.

    .venv/bin/python -m bench.http_vs_queue                 # the 232.6 s long-form clip, 3 runs
    .venv/bin/python -m bench.http_vs_queue --repeat 5 --model base

Each door runs in a process of its own, both started before the first request, with the same
model; requests go to them in turn (queue, HTTP, HTTP stream, queue, ...):

* ``queue``: ``handler.handler({"input": {"audio": {"base64": ...}}})`` as RunPod calls it
  (the base64 encoding is the client's work and is not timed);
* ``http``: ``WORKER_MODE=http python handler.py``, the file posted with the official ``openai``
  SDK to ``/v1/audio/transcriptions`` over loopback (timed from the client: upload, multipart
  parsing, queue, decode, response);
* ``http stream``: the same with ``stream=true``: time to the first ``transcript.text.delta`` and
  to ``transcript.text.done``.

Peak RSS is the process's high-water mark (``VmHWM``; ``ru_maxrss`` for the queue child), model
included. Wall figures are the median of ``--repeat`` runs, after one warm-up request each that is
not counted. The machine may be shared: interleaving spreads its load over all three rows;
compare the rows of one run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import REPO_ROOT, manifest_items
from bench.metrics import scores

MARK = "BENCH-RESULT "


def _clip(name: str) -> Any:
    items = manifest_items()
    if name == "long":
        return next(i for i in items if i.name.startswith("long:"))
    return next(i for i in items if Path(i.path).name == name)


def _env(model: str) -> dict[str, str]:
    return {**os.environ, "WHISPER_MODEL": model, "LOG_LEVEL": "WARNING"}


def child_queue(args: argparse.Namespace) -> None:
    """The queue door in a process of its own: one job per ``run`` line on stdin, the peak RSS
    on ``exit``."""
    os.environ.update(_env(args.model))
    import handler

    handler.get_processor()
    clip = _clip(args.clip)
    job = {"id": "bench", "input": {"audio": {"base64": base64.b64encode(
        Path(clip.path).read_bytes()).decode()}, "options": {"output_format": "json"}}}  # fmt: skip
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(MARK + json.dumps({"peak_rss_mb": peak}), flush=True)
            return
        started = time.perf_counter()
        output = handler.handler(job)
        wall = time.perf_counter() - started
        if "error" in output:
            raise RuntimeError(output["error"])
        reply = {"wall": wall, "text": output["transcription"]["text"]}
        print(MARK + json.dumps(reply), flush=True)


class QueueDoor:
    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, "-m", "bench.http_vs_queue", "--child", "queue"]
        cmd += ["--model", args.model, "--clip", args.clip]
        self.process = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=_env(args.model), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                return dict(json.loads(line[len(MARK) :]))
        raise RuntimeError("the queue child ended")

    def run(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("exit\n")
        self.process.stdin.flush()
        peak = float(self._reply()["peak_rss_mb"])
        self.process.wait(60)
        return peak


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _high_water_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class HttpDoor:
    def __init__(self, args: argparse.Namespace) -> None:
        import httpx
        from openai import OpenAI

        port = _free_port()
        env = {**_env(args.model), "WORKER_MODE": "http", "HOST": "127.0.0.1", "PORT": str(port)}
        self.process = subprocess.Popen(
            [sys.executable, "handler.py"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/ping").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not come up")
            time.sleep(0.1)
        clip = _clip(args.clip)
        self.upload = (Path(clip.path).name, Path(clip.path).read_bytes())
        self.client = OpenAI(base_url=f"{base}/v1", api_key="-", max_retries=0, timeout=1800)

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        result = self.client.audio.transcriptions.create(file=self.upload, model="whisper-1")
        return {"wall": time.perf_counter() - started, "text": result.text}

    def run_stream(self) -> dict[str, Any]:
        started = time.perf_counter()
        first, text = None, ""
        for event in self.client.audio.transcriptions.create(
            file=self.upload, model="whisper-1", stream=True
        ):
            if event.type == "transcript.text.delta" and first is None:
                first = time.perf_counter() - started
            elif event.type == "transcript.text.done":
                text = event.text
        return {"wall": time.perf_counter() - started, "first": first, "text": text}

    def close(self) -> float:
        peak = _high_water_mb(self.process.pid)
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--clip", default="long", help="'long' or a manifest file name")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["queue"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "queue":
        child_queue(args)
        return

    clip = _clip(args.clip)
    queue, http = QueueDoor(args), HttpDoor(args)
    runs: dict[str, list[dict[str, Any]]] = {"queue": [], "http": [], "stream": []}
    try:
        queue.run(), http.run(), http.run_stream()  # warm-up, not counted
        for _ in range(args.repeat):  # interleaved: a shared machine's load falls on all three
            runs["queue"].append(queue.run())
            runs["http"].append(http.run())
            runs["stream"].append(http.run_stream())
    finally:
        peaks = {"queue": queue.close()}
        peaks["http"] = peaks["stream"] = http.close()
    names = {"queue": "queue handler", "http": "HTTP /v1/audio/transcriptions",
             "stream": "HTTP, stream=true"}  # fmt: skip
    base = statistics.median(r["wall"] for r in runs["queue"])
    print(f"\n{clip.duration:.1f} s of audio ({Path(clip.path).name}), {args.model}, "
          f"median of {args.repeat} interleaved runs after a warm-up\n")  # fmt: skip
    print("| door | wall s | RTF | vs queue | first delta s | WER % | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for key, name in names.items():
        wall = statistics.median(r["wall"] for r in runs[key])
        wer, _ = scores([(clip.text, runs[key][-1]["text"])])
        firsts = [r["first"] for r in runs[key] if r.get("first") is not None]
        first_s = f"{statistics.median(firsts):.2f}" if firsts else ""
        print(
            f"| {name} | {wall:.2f} | {clip.duration / wall:.1f} | {wall / base:.3f} | {first_s} "
            f"| {100 * (wer or 0):.2f} | {peaks[key]:.0f} |"
        )
    for key, name in names.items():
        print(f"{name}: walls {[round(r['wall'], 2) for r in runs[key]]}")


if __name__ == "__main__":
    main()
