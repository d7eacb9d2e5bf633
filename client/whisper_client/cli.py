"""``whisper-client``: transcribe a file or URL, a whole folder, or serve a local endpoint.

    run SOURCE          one local file or http(s) URL; the result on stdout or in --output
    batch IN OUT        every audio/video file under IN, mirrored into OUT; resumable
    health              the endpoint's job and worker counters
    serve               RunPod's REST API on this machine around the real handler.py

Exit codes: 0 success; 1 a job or a file failed; 2 a usage, configuration or key problem;
130 interrupted (Ctrl-C), after cancelling the jobs that were started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from pathlib import Path
from typing import Any

from whisper_client.api import DEFAULT_BASE_URL, RunPodClient
from whisper_client.batch import BatchConfig, BatchSummary, run_batch
from whisper_client.errors import AuthError, ClientError, ConfigError, EndpointNotFound
from whisper_client.outputs import FORMATS, render, worker_output_format, write_atomic
from whisper_client.policy import ExecutionPolicy
from whisper_client.progress import human_duration, make_progress
from whisper_client.transcribe import transcribe, validate_options

logger = logging.getLogger(__name__)

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a progress bar is shown on a terminal: per-job log lines would only push it around
    bar = args.command is _batch and sys.stderr.isatty()
    _setup_logging(args.verbose, quiet=bar)
    try:
        code: int = args.command(args)
    except (ConfigError, AuthError, EndpointNotFound) as e:
        _say(f"error: {e}")
        return EXIT_USAGE
    except ClientError as e:
        _say(f"error: {e}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    return code


# -- commands --------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    options = {**_options(args), "output_format": worker_output_format([args.format])}
    validate_options(options)  # before the client exists, so a typo needs no key or network
    with _client(args) as client, ThreadPoolExecutor(1) as pool:
        # the job runs in a thread so that Ctrl-C, which only the main thread sees, can cancel it
        future = pool.submit(
            transcribe,
            client,
            args.source,  # a URL, or a local path
            options,
            sync=args.sync,
            timeout=args.timeout,
            transcode=not args.no_transcode,
            webhook=args.webhook,
            policy=_policy(args),
            on_segment=_print_segment if args.stream else None,
        )
        try:
            result = future.result()
        except KeyboardInterrupt:
            client.interrupt()
            wait_for([future])  # a submission in flight returns its job id before the cancel
            cancelled = client.cancel_started()
            _say(f"interrupted; cancelled job(s): {', '.join(cancelled) or 'none'}")
            return EXIT_INTERRUPTED
    text = render(result.output, args.format)
    if args.output:
        write_atomic(Path(args.output), text)
        _say(f"job {result.job_id}: written to {args.output}")
    elif not args.stream:  # streamed segments are on stdout already
        sys.stdout.write(text)
    return 0


def _print_segment(item: dict[str, Any]) -> None:
    """One streamed segment as a line: ``[start -> end] text``."""
    segment = item.get("segment") or {}
    start, end = float(segment.get("start", 0.0)), float(segment.get("end", 0.0))
    sys.stdout.write(f"[{start:8.2f} -> {end:8.2f}] {str(segment.get('text', '')).strip()}\n")
    sys.stdout.flush()


def _batch(args: argparse.Namespace) -> int:
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    config = BatchConfig(
        audio_dir=Path(args.audio_dir),
        out_dir=Path(args.out_dir),
        options=_options(args),
        formats=formats,
        concurrency=args.concurrency,
        retries=args.retries,
        job_timeout=args.timeout,
        transcode=not args.no_transcode,
        policy=_policy(args),
        webhook=args.webhook,
    )
    with _client(args) as client:
        summary = run_batch(client, config, progress=make_progress(sys.stderr))
    _say(_describe(summary))
    return summary.exit_code


def _health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        sys.stdout.write(json.dumps(client.health(), indent=2) + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from whisper_client.local_endpoint import LocalEndpoint, load_handler
    except ImportError as e:
        raise ConfigError(
            f"serve needs {e.name or 'fastapi and uvicorn'}: run it in the worker's environment, "
            "with pip install './client[serve]'"
        ) from None

    key = args.api_key or os.environ.get("RUNPOD_API_KEY") or "local"
    endpoint = LocalEndpoint(
        load_handler(stream=args.stream, worker_dir=args.worker),
        endpoint_id=args.endpoint_id,
        api_key=key,
        workers=args.workers,
    )
    for spec in args.fault:
        endpoint.faults.add_spec(spec)
    base = f"http://{args.host}:{args.port}/v2"
    key_hint = "RUNPOD_API_KEY=local " if key == "local" else ""
    _say(
        f"local endpoint {args.endpoint_id!r} at {base}; try:\n"
        f"  {key_hint}whisper-client run FILE --endpoint {args.endpoint_id} --base-url {base}"
    )
    endpoint.serve_forever(args.host, args.port)
    return 0


# -- helpers ---------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> RunPodClient:
    return RunPodClient(
        args.endpoint or "",
        args.api_key or "",
        base_url=args.base_url,
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The transcription options from ``--options`` JSON, overridden by the explicit flags."""
    options: dict[str, Any] = {}
    if args.options:
        raw = Path(args.options[1:]).read_text() if args.options.startswith("@") else args.options
        try:
            options = json.loads(raw)
        except ValueError as e:
            raise ConfigError(f"--options: not JSON ({e})") from None
        if not isinstance(options, dict):
            raise ConfigError("--options: expected a JSON object")
    flags = {
        "language": args.language,
        "task": args.task,
        "beam_size": args.beam_size,
        "temperature": args.temperature,
        "initial_prompt": args.initial_prompt,
        "word_timestamps": True if args.word_timestamps else None,
        "vad_filter": False if args.no_vad else None,
        "denoise": True if args.denoise else None,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if args.vocabulary:
        try:
            options["custom_vocabulary"] = json.loads(Path(args.vocabulary).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--vocabulary {args.vocabulary}: {e}") from None
    return options


def _policy(args: argparse.Namespace) -> ExecutionPolicy | None:
    if args.execution_timeout is None and args.ttl is None:
        return None
    return ExecutionPolicy(
        execution_timeout_ms=None
        if args.execution_timeout is None
        else round(args.execution_timeout * 1000),
        ttl_ms=None if args.ttl is None else round(args.ttl * 1000),
    )


def _describe(s: BatchSummary) -> str:
    lines = [
        f"done {s.done}, skipped {s.skipped}, failed {len(s.failed)}, "
        f"not finished {s.not_finished}; {human_duration(s.audio_seconds)} of audio "
        f"in {human_duration(s.wall_seconds)}"
    ]
    if s.fatal:
        lines.append(f"stopped: {s.fatal}")
    if s.failures_file is not None:
        lines.append(f"failures and their errors: {s.failures_file}")
    return "\n".join(lines)


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _setup_logging(verbose: int, *, quiet: bool = False) -> None:
    level = logging.INFO if verbose or not quiet else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # one line per HTTP request is noise unless asked for (it never holds a key or a body)
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-client",
        description="Transcribe audio through a RunPod endpoint running this worker.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="transcribe one file or URL")
    run.add_argument("source", metavar="FILE_OR_URL")
    run.add_argument("--format", choices=FORMATS, default="txt", help="what to print (txt)")
    run.add_argument("-o", "--output", help="write the result to this file instead of stdout")
    run.add_argument("--sync", action="store_true", help="use /runsync (20 MB limit) not /run")
    run.add_argument("--timeout", type=float, default=None, help="give up (and cancel) after S s")
    run.add_argument(
        "--stream",
        action="store_true",
        help="print segments as they are decoded (a worker with STREAM_SEGMENTS=true)",
    )
    _endpoint_args(run)
    _transcription_args(run)
    run.set_defaults(command=_run)

    batch = commands.add_parser("batch", help="transcribe every audio/video file under a folder")
    batch.add_argument("audio_dir", metavar="AUDIO_DIR")
    batch.add_argument("out_dir", metavar="OUT_DIR")
    batch.add_argument("--concurrency", type=int, default=4, help="jobs in flight at once (4)")
    batch.add_argument("--format", default=",".join(FORMATS), help="outputs (json,srt,vtt,txt)")
    batch.add_argument("--retries", type=int, default=2, help="extra tries per file (2)")
    batch.add_argument("--timeout", type=float, default=3600.0, help="per file, seconds (3600)")
    _endpoint_args(batch)
    _transcription_args(batch)
    batch.set_defaults(command=_batch)

    health = commands.add_parser("health", help="the endpoint's job and worker counters")
    _endpoint_args(health, jobs=False)
    health.set_defaults(command=_health)

    serve = commands.add_parser("serve", help="RunPod's API locally, around handler.py")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--endpoint-id", default="local")
    serve.add_argument("--api-key", help="the key clients must send (RUNPOD_API_KEY, or 'local')")
    serve.add_argument("--workers", type=int, default=1, help="handler threads (1)")
    serve.add_argument(
        "--worker",
        metavar="DIR",
        default=".",
        help="the worker's checkout, whose handler.py is run (default: this directory)",
    )
    serve.add_argument(
        "--stream",
        action="store_true",
        help="serve the streaming worker (STREAM_SEGMENTS=true): segments via /stream",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ROUTE:STATUS:TIMES",
        help="answer ROUTE (or * for all) with STATUS, TIMES times, e.g. run:429:3",
    )
    serve.set_defaults(command=_serve)
    return parser


def _endpoint_args(parser: argparse.ArgumentParser, *, jobs: bool = True) -> None:
    group = parser.add_argument_group("endpoint")
    group.add_argument("--endpoint", default=os.environ.get("RUNPOD_ENDPOINT_ID"), help="id")
    group.add_argument(
        "--api-key",
        default=os.environ.get("RUNPOD_API_KEY"),
        help="prefer the RUNPOD_API_KEY variable: a flag shows in the process list",
    )
    group.add_argument("--base-url", default=os.environ.get("RUNPOD_BASE_URL") or DEFAULT_BASE_URL)
    if not jobs:
        return
    group.add_argument("--execution-timeout", type=float, help="policy.executionTimeout, s")
    group.add_argument("--ttl", type=float, help="policy.ttl: the job's whole lifetime, s")
    group.add_argument("--webhook", help="URL RunPod POSTs the final status to")
    group.add_argument(
        "--no-transcode", action="store_true", help="send local files as they are, not as Opus"
    )


def _transcription_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("transcription (checked locally before sending)")
    group.add_argument("--language", help="e.g. en, de; detected when left out")
    group.add_argument("--task", choices=("transcribe", "translate"))
    group.add_argument("--beam-size", type=int)
    group.add_argument("--temperature", type=float)
    group.add_argument("--initial-prompt")
    group.add_argument("--word-timestamps", action="store_true")
    group.add_argument("--no-vad", action="store_true", help="turn the VAD filter off")
    group.add_argument("--denoise", action="store_true")
    group.add_argument("--vocabulary", metavar="JSON_FILE", help='{"heard": "corrected", ...}')
    group.add_argument(
        "--options", metavar="JSON|@FILE", help="any other worker option, as a JSON object"
    )
