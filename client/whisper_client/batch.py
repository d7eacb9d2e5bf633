"""Transcribe a folder tree through an endpoint: bounded concurrency, resumable, atomic outputs.

    discover (ffprobe) ─> skip what the journal says is done ─> N worker threads, each:
        prepare the audio once ─> submit + wait (retried on retryable errors, a bounded number
        of times) ─> write every output atomically ─> journal the file
    ─> summary (and OUT/.whisper-batch/failures.json listing each failure with its error)

At most ``concurrency`` jobs are in flight at once, which bounds both the load on the endpoint
and the money being spent at any moment. A failure that a new job could fix (``FAILED``,
``TIMED_OUT``, an expired result, an unreachable endpoint) is retried; one that it could not (a
corrupt file, a file too large, a cancelled job) or that could duplicate a job (an uncertain
submission, see ``api.py``) is not. A wrong API key or endpoint id stops the whole batch: every
other file would fail the same way.

Ctrl-C stops submitting, lets submissions in flight return their job ids, cancels every job this
run started and has not seen finish, and leaves the finished files journaled, so that the next
run resumes where this one stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from whisper_client.api import RUN_MAX_BODY_BYTES, JobStatus, RunPodClient
from whisper_client.discover import MediaFile, discover
from whisper_client.errors import (
    AuthError,
    ClientError,
    ConfigError,
    EndpointNotFound,
    Interrupted,
    JobError,
)
from whisper_client.journal import Entry, Journal, file_sha256, settings_fingerprint
from whisper_client.outputs import (
    FORMATS,
    output_bases,
    output_names,
    render,
    worker_output_format,
    write_atomic,
)
from whisper_client.policy import ExecutionPolicy
from whisper_client.progress import LogProgress, Progress, human_duration
from whisper_client.transcribe import build_input, run_job, validate_options

logger = logging.getLogger(__name__)

STATE_DIR = ".whisper-batch"
#: errors after which every other file would fail too: the batch stops
_FATAL = (AuthError, EndpointNotFound, ConfigError)

State = Literal["done", "failed", "interrupted", "not_attempted"]


@dataclass(frozen=True)
class BatchConfig:
    audio_dir: Path
    out_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = FORMATS
    concurrency: int = 4
    retries: int = 2
    retry_delay: float = 5.0
    job_timeout: float | None = 3600.0
    transcode: bool = True
    policy: ExecutionPolicy | None = None
    webhook: str | None = None


@dataclass(frozen=True)
class FileOutcome:
    file: MediaFile
    state: State
    attempts: int = 0
    error: str | None = None
    status: str | None = None
    fatal: bool = False


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: list[FileOutcome] = field(default_factory=list)
    not_finished: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False
    fatal: str | None = None
    failures_file: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 all done, 1 some files failed, 2 the batch could not go on, 130 Ctrl-C."""
        if self.interrupted:
            return 130
        if self.fatal:
            return 2
        return 1 if self.failed or self.not_finished else 0


class BatchRun:
    """One run over one folder; ``run()`` once."""

    def __init__(
        self,
        client: RunPodClient,
        config: BatchConfig,
        *,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.concurrency < 1 or config.retries < 0:
            raise ConfigError("concurrency must be at least 1 and retries at least 0")
        unknown = set(config.formats) - set(FORMATS)
        if unknown or not config.formats:
            raise ConfigError(f"formats: expected some of {', '.join(FORMATS)}")
        if not config.audio_dir.is_dir():
            raise ConfigError(f"{config.audio_dir}: not a folder")
        options = {**config.options, "output_format": worker_output_format(config.formats)}
        self._options = validate_options(options)
        self._client = client
        self._config = config
        self._progress = progress or LogProgress()
        self._clock = clock
        self._state_dir = config.out_dir / STATE_DIR
        self._journal = Journal(self._state_dir / "journal.jsonl")
        self._settings = settings_fingerprint(self._options, config.formats)
        self._stop = threading.Event()
        self._bases: dict[str, str] = {}

    def run(self) -> BatchSummary:
        started = self._clock()
        summary = BatchSummary()
        cfg = self._config
        files = discover(cfg.audio_dir, exclude=[cfg.out_dir])
        self._bases = output_bases(f.rel for f in files)
        todo = [f for f in files if not self._already_done(f)]
        summary.skipped = len(files) - len(todo)
        logger.info("%d media files found, %d already done", len(files), summary.skipped)
        self._progress.begin(len(todo), sum(f.duration or 0.0 for f in todo))
        try:
            self._run_all(todo, summary)
        finally:
            self._progress.end()
            summary.wall_seconds = self._clock() - started
            summary.failures_file = self._write_failures(summary.failed)
        return summary

    # -- the pool ----------------------------------------------------------------------------

    def _run_all(self, todo: list[MediaFile], summary: BatchSummary) -> None:
        pool = ThreadPoolExecutor(self._config.concurrency, thread_name_prefix="batch")
        futures = [pool.submit(self._process, f) for f in todo]
        pending = set(futures)
        stopping = False
        try:
            for future in as_completed(futures):
                pending.discard(future)
                outcome = future.result()
                self._count(outcome, summary)
                if outcome.fatal:
                    summary.fatal = outcome.error
                    stopping = True
                    break
        except KeyboardInterrupt:
            summary.interrupted = stopping = True
            logger.warning("interrupted: stopping, and cancelling the jobs in flight")
        except BaseException:
            stopping = True
            raise
        finally:
            if stopping:
                self._stop.set()
                self._client.interrupt()
            # submissions in flight return (and register) their job ids before the cancels
            pool.shutdown(wait=True, cancel_futures=True)
            if stopping:
                cancelled = self._client.cancel_started()
                if cancelled:
                    logger.warning("cancelled %d job(s): %s", len(cancelled), ", ".join(cancelled))
        for future in pending:
            if future.done() and not future.cancelled():
                self._count(future.result(), summary)
        summary.not_finished = len(todo) - summary.done - len(summary.failed)

    def _count(self, outcome: FileOutcome, summary: BatchSummary) -> None:
        duration = outcome.file.duration or 0.0
        if outcome.state == "done":
            summary.done += 1
            summary.audio_seconds += duration
            tries = "" if outcome.attempts == 1 else f", {outcome.attempts} tries"
            detail = f"{human_duration(duration)} of audio{tries}"
            self._progress.advance(outcome.file.rel, True, duration, detail)
        elif outcome.state == "failed":
            summary.failed.append(outcome)
            self._progress.advance(outcome.file.rel, False, duration, outcome.error or "")

    # -- one file ----------------------------------------------------------------------------

    def _process(self, file: MediaFile) -> FileOutcome:
        """Prepare the audio once, then submit and wait, retrying what a new job may fix."""
        if self._stop.is_set():
            return FileOutcome(file, "not_attempted")
        cfg = self._config
        try:
            digest = file_sha256(file.path)
            job_input, _ = build_input(
                file.path,
                self._options,
                body_limit=RUN_MAX_BODY_BYTES,
                transcode=cfg.transcode,
                duration=file.duration,
                webhook=cfg.webhook,
                policy=cfg.policy,
            )
        except Interrupted:
            return FileOutcome(file, "interrupted")
        except (ClientError, OSError) as e:
            return self._failure(file, e, attempts=0)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = run_job(
                    self._client,
                    job_input,
                    timeout=cfg.job_timeout,
                    webhook=cfg.webhook,
                    policy=cfg.policy,
                    on_status=functools.partial(self._job_progress, file.rel),
                )
                self._write(file, digest, result.output)
                return FileOutcome(file, "done", attempt)
            except ClientError as e:
                if isinstance(e, Interrupted) or self._stop.is_set():
                    return FileOutcome(file, "interrupted", attempt)
                if not e.retryable or attempt > cfg.retries:
                    return self._failure(file, e, attempt)
                delay = cfg.retry_delay * 2 ** (attempt - 1)
                logger.warning("%s: try %d: %s; again in %.0fs", file.rel, attempt, e, delay)
                if self._stop.wait(delay):
                    return FileOutcome(file, "interrupted", attempt)
            except OSError as e:  # the outputs could not be written: not the endpoint's fault
                return self._failure(file, e, attempt)

    def _job_progress(self, rel: str, status: JobStatus) -> None:
        """A running job's progress report (the worker's ``fraction``), shown for its file."""
        report = status.output
        if status.status == "IN_PROGRESS" and isinstance(report, dict):
            fraction = report.get("fraction")
            if isinstance(fraction, int | float):
                self._progress.working(rel, float(fraction))

    def _failure(self, file: MediaFile, error: Exception, attempts: int) -> FileOutcome:
        message = str(error) if isinstance(error, ClientError) else f"{file.rel}: {error}"
        return FileOutcome(
            file,
            "failed",
            attempts,
            error=message,
            status=error.status if isinstance(error, JobError) else None,
            fatal=isinstance(error, _FATAL),
        )

    def _write(self, file: MediaFile, digest: str, output: dict[str, Any]) -> None:
        """Every output, each atomically, then the journal line that marks the file done."""
        cfg = self._config
        names = output_names(self._bases[file.rel], cfg.formats)
        texts = [render(output, fmt) for fmt in cfg.formats]  # all or nothing is written
        for name, text in zip(names, texts, strict=True):
            write_atomic(cfg.out_dir / name, text)
        self._journal.record(
            Entry(file.rel, file.size, file.mtime_ns, digest, self._settings, names)
        )

    def _already_done(self, file: MediaFile) -> bool:
        cfg = self._config
        entry = self._journal.lookup(file.rel)
        names = output_names(self._bases[file.rel], cfg.formats)
        if entry is None or entry.settings != self._settings or entry.outputs != names:
            return False
        if not all((cfg.out_dir / name).is_file() for name in names):
            return False
        if (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns):
            return True
        if entry.size != file.size or file_sha256(file.path) != entry.sha256:
            logger.info("%s changed since it was transcribed: doing it again", file.rel)
            return False
        self._journal.record(dataclasses.replace(entry, mtime_ns=file.mtime_ns))
        return True

    def _write_failures(self, failed: list[FileOutcome]) -> Path | None:
        path = self._state_dir / "failures.json"
        if not failed:
            path.unlink(missing_ok=True)
            return None
        rows = [
            {"file": o.file.rel, "error": o.error, "status": o.status, "attempts": o.attempts}
            for o in sorted(failed, key=lambda o: o.file.rel)
        ]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        report = {"written_at": now, "failed": rows}
        write_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return path


def run_batch(
    client: RunPodClient, config: BatchConfig, *, progress: Progress | None = None
) -> BatchSummary:
    """Transcribe ``config.audio_dir`` into ``config.out_dir``; see the module docstring."""
    return BatchRun(client, config, progress=progress).run()
