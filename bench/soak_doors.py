"""Soak of the HTTP and WebSocket doors under hostile traffic: are normal clients still served?

    .venv/bin/python bench/soak_doors.py                      # 40 s idle, then 180 s of load
    .venv/bin/python bench/soak_doors.py --idle 30 --load 120 --json soak_doors.json

Starts the worker as it runs in production (``WORKER_MODE=http python handler.py``, tiny.en by
default) with a fresh ``TMPDIR``, then runs two phases against it on loopback:

1. **idle**: the normal clients alone, for the baseline latencies;
2. **load**: the same normal clients beside slow and hostile ones.

Normal clients, one thread each, one request after another: a multipart upload of a short clip
(``/v1/audio/transcriptions``), a base64 job (``/v1/jobs``), and a live session that streams the
JFK clip at 4x real time over ``/v1/realtime`` and commits (latency: commit to ``completed``).

Slow and hostile clients (load phase only): 6 uploads and 2 JSON bodies that drip a byte every
2 s (reconnecting when cut off), a ``/v1/jobs`` URL whose server drips a byte a second, 3
WebSocket senders looping 12 MB ``append`` + ``clear`` from 127.0.0.2 (the normal live client
comes from 127.0.0.1: on Linux all of 127.0.0.0/8 is loopback, so they are two clients for
``LIVE_MAX_SESSIONS_PER_CLIENT``; with the default 2 of 4 places per client, the third sender
reconnects as fast as it is refused), and a stream of garbage: deep JSON, 40 KB headers, an HLS
playlist of a local file, requests that are not HTTP. ``/ping`` is asked every 0.1 s
throughout, from the bench's process and from a process of its own (the bench's threads share
one GIL); the server's resident memory (PSS, children included: ffmpeg) is sampled every 0.5 s.
``--health-port`` serves ``/ping`` on a ``PORT_HEALTH`` of its own; ``--py-spy PATH`` records
the server for the first 15 s of the load phase (which threads hold the GIL, and what the event
loop's thread is busy with), as folded stacks beside ``--json``.

At the end the server gets SIGTERM; the figures: normal requests served (and failed) in each
phase, their median and p90 latency and the load/idle ratio, the normal live client's turns
served and connects refused, ``/ping``'s worst latency in each phase, the load average, peak
RSS, how the hostile requests were answered, and the files left in ``TMPDIR`` after the process
exits. Not a unit test: timings depend on the machine, so they are reported.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from websockets.sync.client import connect

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WHISPER_WORKER_SHARED", REPO_ROOT.parent / "shared"))
BENCH = SHARED / "benchmark"
MIB = 1024 * 1024
FFMPEG_PCM24K = ("-f", "s16le", "-ac", "1", "-ar", "24000", "pipe:1")
#: on Linux all of 127.0.0.0/8 is loopback: the normal live client and the hostile sockets
#: come from different addresses, so they are different clients (LIVE_MAX_SESSIONS_PER_CLIENT)
NORMAL_SOURCE = "127.0.0.1"
HOSTILE_SOURCE = "127.0.0.2"
_FLOOD_APPEND = json.dumps(
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(9 * MIB)).decode()}
)


@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    ping: list[float] = field(default_factory=list)
    hostile: Counter[str] = field(default_factory=Counter)
    #: the normal live client's connects refused, by error code
    live_refused: Counter[str] = field(default_factory=Counter)

    def served(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


class Soak:
    def __init__(self, base: str, health: str) -> None:
        self.base = base
        self.health = health
        self.ws_base = base.replace("http://", "ws://")
        self.phase = Phase("idle")
        self.stop = threading.Event()
        self.hostile_on = threading.Event()
        self.rss_peak = 0.0
        self.rss: list[float] = []
        self.t0 = time.monotonic()
        #: (seconds since the start, what, value): RSS samples and /ping latencies
        self.timeline: list[tuple[float, str, float]] = []

    # ---------------------------------------------------------------- normal clients

    def loop(self, kind: str, work: Callable[[], None]) -> None:
        while not self.stop.is_set():
            phase = self.phase
            began = time.monotonic()
            try:
                work()
            except Exception as e:  # a normal request that failed is counted, not fatal
                phase.failures[f"{kind}: {type(e).__name__}: {str(e)[:80]}"] += 1
                time.sleep(0.5)
                continue
            if phase is self.phase:
                phase.served(kind, time.monotonic() - began)

    def upload(self, clip: bytes) -> Callable[[], None]:
        def work() -> None:
            reply = httpx.post(
                f"{self.base}/v1/audio/transcriptions",
                files={"file": ("clip.flac", clip, "audio/flac")},
                data={"model": "whisper-1"},
                timeout=300,
            )
            reply.raise_for_status()
            assert reply.json()["text"].strip()

        return work

    def job(self, clip: bytes) -> Callable[[], None]:
        body = {"input": {"audio": {"base64": base64.b64encode(clip).decode()}}}

        def work() -> None:
            reply = httpx.post(f"{self.base}/v1/jobs", json=body, timeout=300)
            reply.raise_for_status()

        return work

    def live(self, pcm24k: bytes) -> None:
        """A live session per round: stream at 4x real time, commit, time until completed."""
        step = 24000 * 2 // 2  # 0.5 s
        while not self.stop.is_set():
            phase = self.phase
            try:
                with connect(
                    f"{self.ws_base}/v1/realtime?intent=transcription",
                    max_size=None,
                    source_address=(NORMAL_SOURCE, 0),
                ) as ws:
                    first = json.loads(ws.recv(timeout=60))
                    if first["type"] == "error":
                        phase.live_refused[first["error"]["code"]] += 1
                        time.sleep(1)
                        continue
                    update = {
                        "type": "session.update",
                        "session": {
                            "type": "transcription",
                            "audio": {"input": {"turn_detection": None}},
                        },
                    }
                    ws.send(json.dumps(update))
                    for start in range(0, len(pcm24k), step):
                        chunk = base64.b64encode(pcm24k[start : start + step]).decode()
                        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                        time.sleep(0.125)
                    committed = time.monotonic()
                    ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                    while True:
                        event = json.loads(ws.recv(timeout=120))
                        if event["type"] == "error":
                            raise RuntimeError(event["error"]["code"])
                        if event["type"].endswith("transcription.completed"):
                            break
                    if phase is self.phase:
                        phase.served("realtime", time.monotonic() - committed)
            except Exception as e:
                phase.failures[f"realtime: {type(e).__name__}: {str(e)[:80]}"] += 1
                time.sleep(1)

    def ping(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    client.get(f"{self.health}/ping").raise_for_status()
                    self.phase.ping.append(time.monotonic() - began)
                    self.timeline.append((began - self.t0, "ping", time.monotonic() - began))
                except Exception as e:
                    self.phase.failures[f"ping: {type(e).__name__}"] += 1
                time.sleep(0.1)

    def memory(self, pid: int) -> None:
        """PSS (proportional set size) of the server and its children (ffmpeg): RSS would
        count a child caught between fork and exec as a second copy of the server."""
        process = psutil.Process(pid)
        while not self.stop.is_set():
            try:
                rss = process.memory_full_info().pss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_full_info().pss
            except psutil.Error:
                return
            mib = rss / MIB
            self.rss.append(mib)
            self.timeline.append((time.monotonic() - self.t0, "rss", mib))
            self.rss_peak = max(self.rss_peak, mib)
            time.sleep(0.5)

    # ---------------------------------------------------------------- hostile clients

    def hostile(self, kind: str, work: Callable[[], str]) -> None:
        self.hostile_on.wait()
        while not self.stop.is_set():
            try:
                outcome = work()
            except Exception as e:
                outcome = type(e).__name__
            self.phase.hostile[f"{kind}: {outcome}"] += 1

    def drip(self, path: str, content_type: str, head: bytes) -> Callable[[], str]:
        host, port = self.base.removeprefix("http://").split(":")

        def work() -> str:
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                    + b"%x\r\n%s\r\n" % (len(head), head)
                )
                sock.settimeout(2)
                while not self.stop.is_set():
                    try:
                        reply = sock.recv(4096)
                        return _status_of(reply)
                    except TimeoutError:
                        pass
                    try:
                        sock.sendall(b"1\r\nx\r\n")
                    except OSError:
                        return "closed"
            return "stopped"

        return work

    def ws_flood(self) -> str:
        """From ``HOSTILE_SOURCE``: loop 12 MB appends and clears, reconnecting at once when
        closed or refused (the 12 MB event is built once: the bench's own CPU is not the
        server's)."""
        append = _FLOOD_APPEND
        clear = json.dumps({"type": "input_audio_buffer.clear"})
        sent = 0
        with connect(
            f"{self.ws_base}/v1/realtime?intent=transcription",
            max_size=None,
            source_address=(HOSTILE_SOURCE, 0),
        ) as ws:
            while not self.stop.is_set() and sent < 20:
                ws.send(append)
                ws.send(clear)
                sent += 1
        return "20 appends" if sent == 20 else "stopped"

    def garbage(self, playlist: bytes) -> str:
        deep = "[" * 100_000 + "]" * 100_000
        replies = [
            httpx.post(f"{self.base}/v1/jobs", content=deep.encode(), timeout=60),
            httpx.get(f"{self.base}/ping", headers={"X-Junk": "a" * 40_000}, timeout=60),
            httpx.post(
                f"{self.base}/v1/audio/transcriptions",
                files={"file": ("list.m3u8", playlist, "audio/mpeg")},
                data={"model": "whisper-1"},
                timeout=60,
            ),
            httpx.get(f"{self.base}/v1/audio/transcriptions", timeout=60),
        ]
        host, port = self.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            sock.settimeout(10)
            raw = _status_of(sock.recv(4096))
        time.sleep(0.5)
        return " ".join([*(str(r.status_code) for r in replies), raw])


def pinger(url: str, out: Path) -> None:
    """``--pinger``: ask ``url`` every 0.1 s from a process of its own (the bench's threads
    share one GIL with its in-process pinger) and write ``wall-clock latency`` lines."""
    with httpx.Client(timeout=60) as client, out.open("w", buffering=1) as f:
        while True:
            began, wall = time.monotonic(), time.time()
            try:
                client.get(url).raise_for_status()
                f.write(f"{wall:.3f} {time.monotonic() - began:.4f}\n")
            except httpx.HTTPError:
                f.write(f"{wall:.3f} -1\n")
            time.sleep(0.1)


def separate_pings(path: Path, t0_wall: float) -> list[tuple[float, float]]:
    rows = []
    for line in path.read_text().splitlines():
        wall, latency = line.split()
        rows.append((float(wall) - t0_wall, float(latency)))
    return rows


def _status_of(reply: bytes) -> str:
    return reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/1.1 ") else "closed"


def dripping_server() -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/slow.flac"


def pcm24k(path: Path) -> bytes:
    raw = subprocess.run(
        [*("ffmpeg", "-nostdin", "-v", "error", "-i", str(path)), *FFMPEG_PCM24K],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").tobytes()


def buckets(timeline: list[tuple[float, str, float]], width: float = 10.0) -> list[str]:
    """Per ``width`` seconds: the peak RSS (MiB) and the slowest /ping (s), from the bench's
    process and from the pinger's own."""
    rows: dict[int, dict[str, float]] = {}
    for at, what, value in timeline:
        row = rows.setdefault(int(at // width), {})
        row[what] = max(row.get(what, 0.0), value)
    return [
        f"{k * width:.0f}s rss {row.get('rss', 0):.0f} ping {row.get('ping', 0):.2f}"
        f" (own process {row.get('ping2', 0):.2f})"
        for k, row in sorted(rows.items())
    ]


def summary(phase: Phase) -> dict[str, Any]:
    out: dict[str, Any] = {"served": {}, "failed": dict(phase.failures)}
    for kind, values in phase.latencies.items():
        ordered = sorted(values)
        out["served"][kind] = {
            "n": len(values),
            "median_s": round(statistics.median(values), 3),
            "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        }
    out["ping_worst_s"] = round(max(phase.ping), 3) if phase.ping else None
    out["ping_n"] = len(phase.ping)
    if "realtime" in phase.latencies or phase.live_refused:
        out["live_turns"] = {
            "served": len(phase.latencies.get("realtime", [])),
            "refused": dict(phase.live_refused),
        }
    if phase.hostile:
        out["hostile"] = dict(phase.hostile)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=float, default=40.0, help="seconds of the idle phase")
    parser.add_argument("--load", type=float, default=180.0, help="seconds of the load phase")
    parser.add_argument(
        "--floods", type=int, default=3, help="hostile sockets (with the live client: the cap)"
    )
    parser.add_argument("--model", default=os.environ.get("WHISPER_MODEL", "tiny.en"))
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument(
        "--health-port", action="store_true", help="serve /ping on a PORT_HEALTH of its own"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PY_SPY",
        help="record the server with this py-spy for the first 15 s of the load phase: the "
        "threads holding the GIL, and the event loop's own busy stacks (folded, beside --json)",
    )
    parser.add_argument("--pinger", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pinger:
        pinger(args.pinger[0], Path(args.pinger[1]))
        return 0

    clip = BENCH / "en_jfk.flac"
    clip_bytes = clip.read_bytes()
    live_pcm = pcm24k(clip)
    area = Path(tempfile.mkdtemp(prefix="soak-doors-"))
    with socket.socket() as s, socket.socket() as h:
        s.bind(("127.0.0.1", 0))
        h.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        health_port = h.getsockname()[1] if args.health_port else port
    env = {
        **os.environ,
        "WORKER_MODE": "http",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PORT_HEALTH": str(health_port),
        "WHISPER_MODEL": args.model,
        "ALLOW_PRIVATE_URLS": "true",  # so the dripping URL is downloaded (and cut off)
        "TMPDIR": str(area),
        "LOG_LEVEL": "WARNING",
    }
    log = open(area.parent / f"{area.name}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "handler.py"], cwd=REPO_ROOT, env=env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    health = f"http://127.0.0.1:{health_port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{health}/ping").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        server.kill()
        raise SystemExit("the server did not become ready")

    soak = Soak(base, health)
    t0_wall = time.time() - (time.monotonic() - soak.t0)
    ping_log = area.parent / f"{area.name}.pings"
    separate = subprocess.Popen(
        [sys.executable, __file__, "--pinger", f"{health}/ping", str(ping_log)], cwd=REPO_ROOT
    )
    playlist = (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:30.0,\nfile://{clip}\n#EXT-X-ENDLIST\n"
    ).encode()
    httpd, slow_url = dripping_server()
    boundary = "soakboundary"
    form_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    threads = [
        threading.Thread(target=soak.memory, args=(server.pid,)),
        threading.Thread(target=soak.ping),
        threading.Thread(target=soak.loop, args=("upload", soak.upload(clip_bytes))),
        threading.Thread(target=soak.loop, args=("job", soak.job(clip_bytes))),
        threading.Thread(target=soak.live, args=(live_pcm,)),
    ]
    multipart = f"multipart/form-data; boundary={boundary}"
    json_head = b'{"input": {"audio": {"base64": "'
    hostile: list[tuple[str, Callable[[], str]]] = [
        *[("drip upload", soak.drip("/v1/audio/transcriptions", multipart, form_head))] * 6,
        *[("drip json", soak.drip("/v1/jobs", "application/json", json_head))] * 2,
        *[("ws flood", soak.ws_flood)] * args.floods,
        ("garbage", lambda: soak.garbage(playlist)),
        (
            "slow url",
            lambda: str(
                httpx.post(
                    f"{base}/v1/jobs",
                    json={"input": {"audio": {"url": slow_url}}},
                    timeout=600,
                ).status_code
            ),
        ),
    ]
    threads += [threading.Thread(target=soak.hostile, args=h) for h in hostile]
    for thread in threads:
        thread.daemon = True
        thread.start()
    started = time.monotonic()
    time.sleep(args.idle)
    idle = soak.phase
    rss_idle_peak = soak.rss_peak
    soak.phase = Phase("load")
    hostile_from = time.monotonic() - soak.t0
    spies = []
    if args.py_spy:
        stem = (args.json or Path("soak_doors")).with_suffix("")
        for what, flags in (("gil", ["--gil"]), ("threads", [])):
            command = [args.py_spy, "record", "--pid", str(server.pid), "--duration", "15"]
            command += ["--rate", "50", "--threads", "--format", "raw", *flags]
            command += ["-o", f"{stem}.{what}.folded"]
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    loads = [os.getloadavg()[0]]
    soak.hostile_on.set()
    ends = time.monotonic() + args.load
    while time.monotonic() < ends:
        time.sleep(min(10.0, max(0.0, ends - time.monotonic())))
        loads.append(os.getloadavg()[0])
    for spy in spies:
        spy.wait(60)
    load = soak.phase
    soak.stop.set()
    stopped_at = time.monotonic() - soak.t0
    time.sleep(2)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(90)
        exit_code: int | None = server.returncode
    except subprocess.TimeoutExpired:
        server.kill()
        exit_code = None
    httpd.shutdown()
    separate.terminate()
    separate.wait(10)
    left = sorted(p.name for p in area.iterdir())
    pings = separate_pings(ping_log, t0_wall)

    report: dict[str, Any] = {
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min_during_load": [min(loads), max(loads)],
        "ping_from_its_own_process": {
            "idle_worst_s": max((v for t, v in pings if t < hostile_from), default=None),
            "load_worst_s": max((v for t, v in pings if t >= hostile_from), default=None),
            "failed_while_serving": sum(1 for t, v in pings if v < 0 and t < stopped_at),
        },
        "health_port": "its own" if args.health_port else "the API's",
        "seconds": round(time.monotonic() - started, 1),
        "idle": summary(idle),
        "load": summary(load),
        "rss_mib": {
            "idle_peak": round(rss_idle_peak, 1),
            "peak": round(soak.rss_peak, 1),
            "end": round(soak.rss[-1], 1) if soak.rss else None,
        },
        "exit_code_after_sigterm": exit_code,
        "temp_left": left,
    }
    ratios = {}
    for kind, figures in report["load"]["served"].items():
        base_figures = report["idle"]["served"].get(kind)
        if base_figures:
            ratios[kind] = round(figures["median_s"] / base_figures["median_s"], 2)
    report["median_latency_ratio_load_over_idle"] = ratios
    report["hostile_from_s"] = round(hostile_from, 1)
    report["every_10_s"] = buckets(
        soak.timeline + [(t, "ping2", v) for t, v in pings if t < soak.timeline[-1][0] + 5]
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
