"""Speed, accuracy and memory of the worker against openai-whisper, in one command.

    .venv/bin/python -m bench.run            # full run (about 15 minutes on a 2-core CPU)
    .venv/bin/python -m bench.run --quick    # a few minutes: 8 short clips, no 10-minute file
    .venv/bin/python -m bench.run --device cuda --model large-v3-turbo
    .venv/bin/python -m bench.run --model base --quick --datasets long-form --no-extras \
        --configs "openai-whisper (reference),worker (handler)"   # the long-form clip alone

Every (configuration, dataset) pair runs in its own process, so its peak RSS is its own and no
configuration warms caches for the next. Ratios compare configurations measured in the same run
(the machine may be shared: compare ratios, not absolute figures across runs). Results go to
stdout as a Markdown table and to ``--out`` as JSON lines. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import REPO_ROOT, Dataset, build, manifest_items
from bench.metrics import scores

REFERENCE = "openai-whisper (reference)"
CONFIGS = (
    REFERENCE,
    "faster-whisper sequential",
    "faster-whisper batched",
    "worker engine sequential",
    "worker (handler) beam 5",
    "worker (handler)",
)
#: the worker's default run, and the same with the job asking for beam 5 (the long-audio path's
#: own default is 3: this row shows what that choice changes)
WORKER_BEAM = {"worker (handler)": None, "worker (handler) beam 5": 5}
MARK = "BENCH-RESULT "
#: ``--device cuda`` precision for the library configurations (the worker picks its own)
FP = {"cpu": ("float32", "int8"), "cuda": ("float16", "float16")}


@dataclass
class Row:
    config: str
    dataset: str
    audio_s: float
    wall_s: float
    load_s: float
    peak_rss_mb: float
    wer: float | None
    coverage: float | None
    texts: list[str]
    redecoded: int | None = None
    continued: int | None = None

    @property
    def rtf(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


# --- child processes --------------------------------------------------------------------------


def _worker_env(args: argparse.Namespace, engine: str = "faster-whisper") -> None:
    os.environ.update(
        {"WHISPER_ENGINE": engine, "WHISPER_MODEL": args.model, "DEVICE": args.device}
    )
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _transcriber(config: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """Load ``config`` and return (transcribe(item) -> text, what to ask for re-decode stats)."""
    from src.config import Settings
    from src.models.locate import resolve_model

    model_dir = Settings.from_env().model_dir  # the checkout's models/ (scripts/setup.sh)
    openai_fp, faster_fp = FP[args.device]
    if config == REFERENCE:
        import torch
        import whisper

        if args.reference_threads:
            torch.set_num_threads(args.reference_threads)
        checkpoint = resolve_model("openai-whisper", args.model, model_dir).path
        model = whisper.load_model(str(checkpoint), device=args.device)

        def reference(path: str) -> str:
            # as a user runs it: the file path (whisper decodes it with ffmpeg), beam 5
            result = model.transcribe(path, language="en", beam_size=5, fp16=openai_fp == "float16")
            return str(result["text"])

        return reference, None
    if config.startswith("faster-whisper"):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        ct2 = resolve_model("faster-whisper", args.model, model_dir).path
        fw = WhisperModel(str(ct2), device=args.device, compute_type=faster_fp)
        if config.endswith("batched"):
            pipeline = BatchedInferencePipeline(fw)

            def batched(path: str) -> str:
                segments, _ = pipeline.transcribe(path, language="en", beam_size=5, batch_size=8)
                return "".join(s.text for s in segments)

            return batched, None

        def sequential(path: str) -> str:
            segments, _ = fw.transcribe(path, language="en", beam_size=5)
            return "".join(s.text for s in segments)

        return sequential, None

    _worker_env(args)
    import handler

    processor = handler.get_processor()  # loaded and warmed up, as at worker start
    if config == "worker engine sequential":
        from src.audio.decode import decode_audio
        from src.engines.base import DecodeOptions

        engine = processor.engine

        def engine_sequential(path: str) -> str:
            audio = decode_audio(Path(path))
            return str(engine.transcribe_sequential(audio, DecodeOptions(language="en")).text)  # type: ignore[attr-defined]

        return engine_sequential, None

    beam = WORKER_BEAM.get(config)

    def worker(path: str) -> str:
        job_input: dict[str, Any] = {"audio": {"base64": _b64(path)}}
        if beam is not None:
            job_input["options"] = {"beam_size": beam}
        job = {"id": "bench", "input": job_input}
        started = time.perf_counter()
        output = handler.handler(job)
        worker.wall += time.perf_counter() - started  # type: ignore[attr-defined]
        if "error" in output:
            raise RuntimeError(output["error"])
        return str(output["transcription"]["text"])

    worker.wall = 0.0  # type: ignore[attr-defined]
    return worker, processor


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def child_dataset(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    transcribe, processor = _transcriber(args.child, args)
    load_s = time.perf_counter() - started
    dataset = Dataset.load(Path(args.dataset))
    texts, wall, redecoded, continued = [], 0.0, 0, 0
    is_worker = processor is not None
    for item in dataset.items:
        if is_worker:
            from src.engines.batched import BatchStats

            processor.engine.batched.last_stats = BatchStats()
        t = time.perf_counter()
        texts.append(transcribe(item.path))
        wall += time.perf_counter() - t
        if is_worker:
            redecoded += len(processor.engine.batched.last_stats.redecoded)
            continued += processor.engine.batched.last_stats.continued
    if is_worker:
        wall = transcribe.wall  # the handler call only: the client's base64 encoding is not ours
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "load_s": load_s, "peak_rss_mb": peak, "texts": texts,
            "redecoded": redecoded if is_worker else None,
            "continued": continued if is_worker else None}  # fmt: skip


def child_cold(args: argparse.Namespace) -> dict[str, Any]:
    """Process start -> worker ready -> first job done, for one engine."""
    t0 = args.t0
    _worker_env(args, args.cold)
    import handler

    imported = time.time() - t0
    handler.get_processor()
    ready = time.time() - t0
    jfk = next(i for i in manifest_items() if i.name == "en_jfk.flac")
    output = handler.handler({"id": "cold", "input": {"audio": {"base64": _b64(jfk.path)}}})
    first = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"imported_s": imported, "ready_s": ready, "first_job_s": first,
            "peak_rss_mb": peak, "ok": "error" not in output}  # fmt: skip


def child_memory(args: argparse.Namespace) -> dict[str, Any]:
    """RSS of the worker across ``--jobs`` handler jobs on the shortest English clip."""
    import psutil

    _worker_env(args)
    import handler

    handler.get_processor()
    clip = min((i for i in manifest_items() if not i.name.startswith("long:")),
               key=lambda i: i.duration)  # fmt: skip
    job = {"id": "mem", "input": {"audio": {"base64": _b64(clip.path)}}}
    process = psutil.Process()
    rss: dict[int, float] = {}
    checkpoints = {1, 10, args.jobs // 2, args.jobs}
    for n in range(1, args.jobs + 1):
        if "error" in handler.handler(job):
            raise RuntimeError("memory job failed")
        if n in checkpoints:
            rss[n] = process.memory_info().rss / 2**20
    return {"jobs": args.jobs, "clip_s": clip.duration, "rss_mb": rss}


# --- the parent -------------------------------------------------------------------------------


def _spawn(extra: list[str], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.run", "--device", args.device, "--model", args.model]
    cmd += ["--reference-threads", str(args.reference_threads)]
    cmd += extra
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK) :]))
    tail = proc.stderr.strip().splitlines()[-5:]
    raise RuntimeError(f"{' '.join(extra)} failed ({proc.returncode}): " + " | ".join(tail))


def _row_json(row: Row, reference: Row | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "config": row.config,
        "dataset": row.dataset,
        "audio_s": round(row.audio_s, 1),
        "wall_s": round(row.wall_s, 2),
        "rtf": round(row.rtf, 1),
        "wer": None if row.wer is None else round(100 * row.wer, 2),
        "coverage": None if row.coverage is None else round(100 * row.coverage, 2),
        "peak_rss_mb": round(row.peak_rss_mb),
        "load_s": round(row.load_s, 2),
    }
    if reference is not None and reference.rtf > 0:
        out["x_reference"] = round(row.rtf / reference.rtf, 2)
        if row.wer is not None and reference.wer is not None:
            out["wer_delta_pts"] = round(100 * (row.wer - reference.wer), 2)
    if row.redecoded is not None:
        out["redecoded_chunks"] = row.redecoded
        out["continued_windows"] = row.continued
    if row.wer is None:  # silence and music: what did it write?
        out["text"] = " | ".join(t.strip() for t in row.texts)[:200]
    return out


def _table(records: list[dict[str, Any]]) -> str:
    head = ("| dataset | configuration | audio s | wall s | RTF | x ref | WER % | Δ WER pts "
            "| coverage % | peak RSS MB | notes |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for r in records:
        if "dataset" not in r:
            continue
        note = r.get("text", "")
        if note == "" and r.get("wer") is None:
            note = "(no text)"
        if r.get("continued_windows"):
            note = f"{r['continued_windows']} windows continued " + note
        if r.get("redecoded_chunks"):
            note = f"{r['redecoded_chunks']} chunks re-decoded " + note

        def f(key: str, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "" if v is None else str(v)

        lines.append(
            f"| {r['dataset']} | {r['config']} | {r['audio_s']} | {r['wall_s']} | {r['rtf']} "
            f"| {f('x_reference')} | {f('wer')} | {f('wer_delta_pts')} | {f('coverage')} "
            f"| {r['peak_rss_mb']} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer clips")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="tiny.en", help="the same weights for every engine")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines (default: none)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    parser.add_argument(
        "--datasets",
        default=None,
        help="comma-separated dataset names or their first word ('long-form,joined'); default all",
    )
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the cold starts and the memory check"
    )
    parser.add_argument("--jobs", type=int, default=None, help="memory check jobs (200; quick 30)")
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=0,
        help="torch threads for the reference (0: torch's default, as a user runs it; 1 keeps "
        "it from collapsing when the CPU is shared, see bench/README.md)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--cold", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (30 if args.quick else 200)

    if args.child or args.cold or args.memory:
        if args.child:
            result = child_dataset(args)
        elif args.cold:
            result = child_cold(args)
        else:
            result = child_memory(args)
        print(MARK + json.dumps(result), flush=True)
        return 0

    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    records: list[dict[str, Any]] = []
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "model": args.model,
        "cpus": len(os.sched_getaffinity(0)),
        "quick": args.quick,
        "reference_threads": args.reference_threads or "torch default",
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    out = open(args.out, "w") if args.out else None  # noqa: SIM115 - written as rows arrive

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)
        if out:
            out.write(json.dumps(record) + "\n")
            out.flush()

    emit({"run": meta})
    with tempfile.TemporaryDirectory(prefix="whisper-bench-") as tmp:
        datasets = build(Path(tmp), quick=args.quick)
        if args.datasets:
            wanted = [w.strip() for w in args.datasets.split(",")]
            datasets = [
                d for d in datasets if any(d.name == w or d.name.split()[0] == w for w in wanted)
            ]
        for dataset in datasets:
            path = dataset.save(Path(tmp) / f"{abs(hash(dataset.name))}.json")
            reference: Row | None = None
            for config in configs:
                raw = _spawn(["--child", config, "--dataset", str(path)], args)
                pairs = [(i.text, t) for i, t in zip(dataset.items, raw["texts"], strict=True)]
                wer, coverage = scores(pairs)
                row = Row(
                    config,
                    dataset.name,
                    dataset.seconds,
                    raw["wall_s"],
                    raw["load_s"],
                    raw["peak_rss_mb"],
                    wer,
                    coverage,
                    raw["texts"],
                    raw["redecoded"],
                    raw["continued"],
                )
                if config == REFERENCE:
                    reference = row
                emit(_row_json(row, reference))
    for engine in () if args.no_extras else ("faster-whisper", "openai-whisper"):
        cold = _spawn(["--cold", engine, "--t0", repr(time.time())], args)
        emit({"cold_start": engine, **{k: round(v, 2) if isinstance(v, float) else v
                                       for k, v in cold.items()}})  # fmt: skip
    if not args.no_extras:
        memory = _spawn(["--memory", "--jobs", str(args.jobs)], args)
        rss = {int(k): v for k, v in memory["rss_mb"].items()}
        emit({"memory_jobs": memory["jobs"], "clip_s": memory["clip_s"],
              "rss_mb": {k: round(v, 1) for k, v in sorted(rss.items())},
              "growth_after_job_10_mb": round(rss[max(rss)] - rss[10], 1)})  # fmt: skip
    emit({"load_average_after": round(os.getloadavg()[0], 2)})
    if out:
        out.close()
    print()
    print(_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
