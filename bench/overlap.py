"""Jobs that overlap against jobs one at a time, in the same run: jobs per minute, each job's
latency, and whether the transcripts are the same.

    .venv/bin/python -m bench.overlap                          # base, 24 clips, 4 at once
    .venv/bin/python -m bench.overlap --model tiny.en --jobs 4 --clients 4 --doors queue

24 short real clips of the benchmark (at most 12 s each, in the manifest's order, each job
naming its clip's language) are served by a local HTTP server at a realistic pace: 300 ms to
the first byte, then 2 MB/s. The same model (loaded once) runs:

* ``queue url`` / ``queue base64``: the queue worker as RunPod's SDK drives it: every job through
  ``rp_job.run_job`` with the async ``concurrent_handler``, at most ``concurrency`` at a time (what
  ``JobScaler`` does with ``concurrency_modifier``); 1 is the worker before overlap. All jobs are
  queued at once (a backlog), so jobs per minute is 24 over the wall time to the last output, and
  a job's latency counts its wait in the queue.
* ``http url`` / ``http upload``: the HTTP mode in this process (``create_app``, uvicorn),
  ``MAX_CONCURRENT_JOBS`` = 1 and then ``--jobs``, with ``--clients`` clients sending the 24
  requests: ``POST /v1/jobs`` with the URL (the server downloads), and the OpenAI route with the
  file uploaded (multipart). A request's latency is the client's, end to end.

"same transcripts" counts the jobs whose text is the same with and without overlap (each mode's
text is compared with the one-at-a-time run of the same door and input). The machine may be
shared, so each door and input runs four times in the order one, overlap, overlap, one (ABBA):
a load that rises or falls during the pair weighs on both modes alike. Jobs per minute is over
both runs of a mode, latencies are the median and the worst of both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.server
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import BENCHMARK_DIR, REPO_ROOT

#: the pace the clips are served at
FIRST_BYTE_SECONDS = 0.3
BYTES_PER_SECOND = 2_000_000
CHUNK_BYTES = 16 * 1024
MAX_CLIP_SECONDS = 12.0


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    language: str


@dataclass
class Run:
    """One mode's runs together (both halves of the ABBA order)."""

    door: str
    source: str
    concurrency: int
    wall: float
    latencies: list[float]
    texts: list[str]

    @property
    def jobs_per_minute(self) -> float:
        return 60.0 * len(self.latencies) / self.wall

    def add(self, other: Run) -> Run:
        """This run and ``other`` (the same mode) as one; the texts are the first run's."""
        wall = self.wall + other.wall
        latencies = self.latencies + other.latencies
        return Run(self.door, self.source, self.concurrency, wall, latencies, self.texts)


def clips(count: int) -> list[Clip]:
    lines = (BENCHMARK_DIR / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    short = [r for r in rows if not r.get("long_form") and r["duration_s"] <= MAX_CLIP_SECONDS]
    chosen = [Clip(r["file"], BENCHMARK_DIR / r["file"], r["language"]) for r in short[:count]]
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} clips of at most {MAX_CLIP_SECONDS} s")
    return chosen


class PacedServer:
    """The clips over HTTP at ``FIRST_BYTE_SECONDS`` to the first byte, then
    ``BYTES_PER_SECOND``, one thread per request."""

    def __init__(self, files: list[Clip]) -> None:
        bodies = {f"/{c.name}": c.path.read_bytes() for c in files}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = bodies.get(self.path)
                time.sleep(FIRST_BYTE_SECONDS)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                for at in range(0, len(body), CHUNK_BYTES):
                    chunk = body[at : at + CHUNK_BYTES]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(len(chunk) / BYTES_PER_SECOND)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, clip: Clip) -> str:
        return f"{self.base}/{clip.name}"


def job_input(clip: Clip, source: str, server: PacedServer) -> dict[str, Any]:
    if source == "url":
        audio = {"url": server.url(clip)}
    else:
        audio = {"base64": base64.b64encode(clip.path.read_bytes()).decode("ascii")}
    return {"audio": audio, "options": {"language": clip.language}}


async def bounded(
    works: list[Callable[[], Awaitable[str]]], concurrency: int
) -> tuple[float, list[float], list[str]]:
    """Run ``works`` with at most ``concurrency`` at once, all queued at the start."""
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    latencies = [0.0] * len(works)
    texts = [""] * len(works)

    async def one(index: int) -> None:
        async with gate:
            texts[index] = await works[index]()
        latencies[index] = time.perf_counter() - started

    await asyncio.gather(*(one(i) for i in range(len(works))))
    return time.perf_counter() - started, latencies, texts


def queue_run(files: list[Clip], source: str, concurrency: int, server: PacedServer) -> Run:
    from runpod.serverless.modules.rp_job import run_job

    import handler

    def work(n: int, clip: Clip) -> Callable[[], Awaitable[str]]:
        async def go() -> str:
            job = {"id": f"bench-{n}", "input": job_input(clip, source, server)}
            result = await run_job(handler.concurrent_handler, job)
            if "error" in result:
                raise RuntimeError(f"{clip.name}: {result['error']}")
            text: str = result["output"]["transcription"]["text"]
            return text

        return go

    works = [work(n, c) for n, c in enumerate(files)]
    wall, latencies, texts = asyncio.run(bounded(works, concurrency))
    return Run("queue", source, concurrency, wall, latencies, texts)


def http_run(
    files: list[Clip], source: str, concurrency: int, clients: int, server: PacedServer
) -> Run:
    import dataclasses

    import httpx
    import uvicorn

    import handler
    from src.server.app import build_servers, create_app, run_servers
    from src.server.settings import ServerSettings

    settings = ServerSettings.from_env(
        {**os.environ, "HOST": "127.0.0.1", "PORT": str(_free_port()), "MAX_QUEUE": "64"}
    )
    settings = dataclasses.replace(
        settings, worker=dataclasses.replace(settings.worker, max_concurrent_jobs=concurrency)
    )
    app = create_app(settings, handler.get_processor)
    servers: list[uvicorn.Server] = build_servers(app)
    thread = threading.Thread(target=lambda: asyncio.run(run_servers(app, servers)), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/ping").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the HTTP mode did not start")
        time.sleep(0.1)

    async def scenario() -> tuple[float, list[float], list[str]]:
        async with httpx.AsyncClient(timeout=600) as client:

            def work(clip: Clip) -> Callable[[], Awaitable[str]]:
                async def go() -> str:
                    if source == "url":
                        body = {"input": job_input(clip, "url", server)}
                        reply = await client.post(f"{base}/v1/jobs", json=body)
                        reply.raise_for_status()
                        text: str = reply.json()["transcription"]["text"]
                        return text
                    reply = await client.post(
                        f"{base}/v1/audio/transcriptions",
                        files={"file": (clip.name, clip.path.read_bytes())},
                        data={"model": "whisper-1", "language": clip.language},
                    )
                    reply.raise_for_status()
                    text = reply.json()["text"]
                    return text

                return go

            return await bounded([work(c) for c in files], clients)

    try:
        wall, latencies, texts = asyncio.run(scenario())
    finally:
        for one in servers:
            one.should_exit = True
        thread.join(30)
    return Run("http", source, concurrency, wall, latencies, texts)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _row(run: Run, reference: Run) -> str:
    same = sum(a.strip() == b.strip() for a, b in zip(run.texts, reference.texts, strict=True))
    median = statistics.median(run.latencies)
    worst = max(run.latencies)
    ratio = run.jobs_per_minute / reference.jobs_per_minute
    return (
        f"| {run.door} | {run.source} | {run.concurrency} | {run.wall:.1f} | "
        f"{run.jobs_per_minute:.1f} | {ratio:.2f}x | {median:.1f} | {worst:.1f} | "
        f"{same}/{len(run.texts)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=4, help="jobs at once with overlap (4)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP clients at once (4)")
    parser.add_argument(
        "--doors", default="queue,http", help="which doors to measure: queue, http (both)"
    )
    args = parser.parse_args()
    os.environ.update(
        {
            "WHISPER_MODEL": args.model,
            "ALLOW_PRIVATE_URLS": "true",
            "LOG_LEVEL": "WARNING",
            "RUNPOD_LOG_LEVEL": "WARN",  # not the SDK's "Started." line for each job
        }
    )
    os.chdir(REPO_ROOT)
    from src.logging_setup import configure_logging

    configure_logging("WARNING")
    import handler

    handler.get_processor()  # loaded and warmed once, outside every timing
    files = clips(args.clips)
    server = PacedServer(files)
    doors = args.doors.split(",")
    print(
        f"model {args.model}, {len(files)} clips, served at {FIRST_BYTE_SECONDS * 1000:.0f} ms "
        f"to first byte and {BYTES_PER_SECOND / 1e6:.0f} MB/s; overlap: {args.jobs} jobs at once"
        f"; HTTP: {args.clients} clients"
    )
    print(
        "| door | input | jobs at once | wall s (2 runs) | jobs/min | vs one at a time | "
        "latency median s | latency max s | same transcripts |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for door in doors:
        for source in ("url", "base64") if door == "queue" else ("url", "upload"):
            done: dict[int, Run] = {}
            for concurrency in (1, args.jobs, args.jobs, 1):  # ABBA
                if door == "queue":
                    run = queue_run(files, source, concurrency, server)
                else:
                    run = http_run(files, source, concurrency, args.clients, server)
                done[concurrency] = done[concurrency].add(run) if concurrency in done else run
            print(_row(done[1], done[1]), flush=True)
            print(_row(done[args.jobs], done[1]), flush=True)


if __name__ == "__main__":
    main()
