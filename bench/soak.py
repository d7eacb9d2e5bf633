"""Soak: N jobs through ``handler.handler`` in one process; does memory level off, is /tmp clean?

    .venv/bin/python bench/soak.py                  # 500 jobs on WHISPER_MODEL (default tiny.en)
    .venv/bin/python bench/soak.py --jobs 100 --json soak.json

Jobs cycle through successes (short real clips from the benchmark set, as base64, in several
output formats) and failures (bad base64, bytes that are not audio, a URL on a blocked address,
an unknown option, a decoder failure on a truncated container). Every ``--every`` jobs the
process's resident memory (psutil) is sampled and the temp area is searched for files the worker
made. The temp area is a fresh directory (``tempfile.tempdir``), so anything left in it was left
by these jobs.

Prints a table and a JSON summary: jobs, failures, RSS at start, after warm-up and at the end,
the RSS slope over the last half (MiB per 100 jobs, least squares), and temp files left. Not a
unit test: memory figures depend on the machine, so they are reported, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WHISPER_WORKER_SHARED", REPO_ROOT.parent / "shared"))
MIB = 1024 * 1024
MP4_TO_PIPE = ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov", "pipe:1"]


@dataclass
class Sample:
    jobs: int
    rss_mib: float
    temp_files: int
    failures: int
    seconds: float


def short_clips(limit: int = 4, max_seconds: float = 4.0) -> list[Path]:
    """The shortest English clips of the benchmark set."""
    rows = [
        json.loads(line)
        for line in (SHARED / "benchmark" / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    rows = [r for r in rows if r["language"] == "en" and float(r["duration_s"]) <= max_seconds]
    rows.sort(key=lambda r: float(r["duration_s"]))
    return [SHARED / "benchmark" / r["file"] for r in rows[:limit]]


def truncated_container(clip: Path) -> bytes:
    """An MP4 cut before its index: ffmpeg finds no usable stream (a decoder failure)."""
    mp4 = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip), "-c:a", "aac", *MP4_TO_PIPE],
        capture_output=True,
    ).stdout
    return mp4[:200] if mp4 else b"\x00\x00\x00\x20ftypisom" + b"\x00" * 100


def build_jobs(clips: list[Path]) -> list[dict[str, Any]]:
    """One cycle of job inputs: every clip as a success, then the five kinds of failure."""
    b64 = [base64.b64encode(c.read_bytes()).decode("ascii") for c in clips]
    formats = ["text", "json", "srt", "vtt"]
    successes = [
        {"audio": {"base64": data}, "options": {"output_format": formats[i % len(formats)]}}
        for i, data in enumerate(b64)
    ]
    failures = [
        {"audio": {"base64": "this is *not* base64!"}},
        {"audio": {"base64": base64.b64encode(os.urandom(4096)).decode()}},
        {"audio": {"url": "http://169.254.169.254/latest/meta-data/?X-Amz-Signature=x"}},
        {"audio": {"base64": b64[0]}, "options": {"no_such_option": True}},
        {"audio": {"base64": base64.b64encode(truncated_container(clips[0])).decode()}},
    ]
    return successes + failures


def temp_files(area: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(area))


def slope_per_100(samples: list[Sample]) -> float:
    """Least-squares slope of RSS (MiB) per 100 jobs."""
    n = len(samples)
    if n < 2:
        return 0.0
    xs = [s.jobs for s in samples]
    ys = [s.rss_mib for s in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--every", type=int, default=50, help="sample every N jobs")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()

    os.environ.setdefault("WHISPER_MODEL", "tiny.en")
    area = Path(tempfile.mkdtemp(prefix="soak-tmp-"))
    tempfile.tempdir = str(area)
    sys.path.insert(0, str(REPO_ROOT))
    import handler

    logging.basicConfig(level=logging.ERROR)  # the worker's INFO lines would bury the table

    process = psutil.Process()
    rss = lambda: process.memory_info().rss / MIB  # noqa: E731
    rss_start = rss()
    started = time.perf_counter()
    handler.get_processor()
    cycle = build_jobs(short_clips())
    expected_failures = 5
    rss_loaded = rss()

    samples: list[Sample] = [Sample(0, rss_loaded, temp_files(area), 0, 0.0)]
    failures = 0
    print(f"{'jobs':>6} {'RSS MiB':>9} {'temp files':>10} {'failures':>8} {'seconds':>8}")
    print(f"{0:>6} {rss_loaded:>9.1f} {samples[0].temp_files:>10} {0:>8} {0.0:>8.1f}")
    for i in range(args.jobs):
        job_input = cycle[i % len(cycle)]
        out = handler.handler({"id": f"soak-{i:05d}", "input": job_input})
        if "error" in out:
            failures += 1
            if "internal error" in out["error"]:
                print(f"job {i}: unexpected internal error: {out['error']}", file=sys.stderr)
        if (i + 1) % args.every == 0 or i + 1 == args.jobs:
            s = Sample(i + 1, rss(), temp_files(area), failures, time.perf_counter() - started)
            samples.append(s)
            print(
                f"{s.jobs:>6} {s.rss_mib:>9.1f} {s.temp_files:>10} {s.failures:>8} "
                f"{s.seconds:>8.1f}"
            )

    warm = next((s for s in samples if s.jobs >= len(cycle) * 2), samples[-1])
    last_half = [s for s in samples if s.jobs >= args.jobs // 2]
    left = sorted(str(p.relative_to(area)) for p in area.rglob("*"))
    summary = {
        "jobs": args.jobs,
        "failures": failures,
        "expected_failures": args.jobs // len(cycle) * expected_failures
        + max(0, args.jobs % len(cycle) - (len(cycle) - expected_failures)),
        "rss_mib": {
            "start": round(rss_start, 1),
            "model_loaded": round(rss_loaded, 1),
            "after_warm_up": round(warm.rss_mib, 1),
            "warm_up_jobs": warm.jobs,
            "end": round(samples[-1].rss_mib, 1),
        },
        "rss_slope_last_half_mib_per_100_jobs": round(slope_per_100(last_half), 2),
        "temp_files_left": len(left),
        "temp_left_names": left[:20],
        "seconds": round(samples[-1].seconds, 1),
        "model": os.environ["WHISPER_MODEL"],
        "machine": f"{platform.machine()}, {psutil.cpu_count()} CPUs, {platform.python_version()}",
        "samples": [asdict(s) for s in samples],
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if left:
        return 1
    area.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
