"""The batch transcriber: discovery by content, output naming and atomic writes, the journal and
progress, then whole runs against the local endpoint with the real handler and real clips."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import srt
import webvtt
from whisper_client.batch import STATE_DIR, BatchConfig, BatchSummary, run_batch
from whisper_client.cli import main
from whisper_client.discover import discover
from whisper_client.errors import ClientError
from whisper_client.journal import Entry, Journal
from whisper_client.local_endpoint import LocalEndpoint
from whisper_client.outputs import FORMATS, output_bases, render, write_atomic
from whisper_client.progress import BarProgress, LogProgress, make_progress

from tests.client_helpers import (
    API_KEY,
    SHORT_CLIPS,
    GatedHandler,
    add_junk,
    completed_jobs,
    fast_client,
    make_clip_folder,
    real_endpoint,
)
from tests.conftest import BENCHMARK_DIR, Clip, wer

WORKER_OUTPUT = {
    "transcription": {
        "text": " Hello there. ",
        "language": "en",
        "srt": "1\n00:00:00,000 --> 00:00:01,000\nHello there.\n",
        "vtt": "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nHello there.\n",
    },
    "metadata": {"model": "tiny.en"},
}


# -- the pieces ------------------------------------------------------------------------------


def test_discovery_goes_by_content(tmp_path: Path) -> None:
    root = make_clip_folder(tmp_path / "in")
    add_junk(root)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    out = root / "transcripts"  # an output folder inside the input is never read back
    out.mkdir()
    shutil.copyfile(BENCHMARK_DIR / "en_jfk.flac", out / "old.flac")

    found = {f.rel: f for f in discover(root, exclude=[out])}

    assert set(found) == {"broken.wav", *(name for _, name in SHORT_CLIPS)}
    assert found["talks/deep/recording"].duration is not None  # no extension, found by content
    assert found["broken.wav"].duration is None  # kept: its extension says audio
    assert found["en_jfk.flac"].duration == pytest.approx(11.0, abs=0.05)


def test_outputs_share_a_stem_unless_two_inputs_would_collide() -> None:
    bases = output_bases(["a/talk.wav", "a/talk.MP3", "a/other.flac", "b/talk.wav", "noext"])
    assert bases == {
        "a/talk.wav": "a/talk.wav",
        "a/talk.MP3": "a/talk.MP3",
        "a/other.flac": "a/other",
        "b/talk.wav": "b/talk",
        "noext": "noext",
    }


def test_outputs_come_from_the_workers_answer() -> None:
    assert render(WORKER_OUTPUT, "txt") == "Hello there.\n"
    assert render(WORKER_OUTPUT, "srt") == WORKER_OUTPUT["transcription"]["srt"]
    assert json.loads(render(WORKER_OUTPUT, "json")) == WORKER_OUTPUT
    with pytest.raises(ClientError, match="'vtt'"):
        render({"transcription": {"text": "x"}}, "vtt")


def test_an_interrupted_write_leaves_the_old_file_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sub" / "talk.srt"
    write_atomic(target, "old\n")

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new, but never finished\n")

    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["talk.srt"]


def test_the_journal_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record(Entry("a.wav", 10, 1, "ab", "s", ("a.json",)))
    journal.record(Entry("b.wav", 20, 2, "cd", "s", ("b.json",)))
    with open(path, "a") as f:
        f.write('{"rel": "c.wav", "size": 3')  # the run died mid-write

    again = Journal(path)
    assert again.lookup("b.wav") == Entry("b.wav", 20, 2, "cd", "s", ("b.json",))
    assert again.lookup("c.wav") is None


def test_log_lines_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    progress = make_progress(io.StringIO())
    assert isinstance(progress, LogProgress)
    progress.begin(2, 7200.0)
    progress.advance("a.wav", True, 3600.0, "60.0 min of audio")
    progress.advance("b.wav", False, 3600.0, "job x FAILED: bad")
    progress.end()
    assert "2 files to transcribe, 2.00 h of audio" in caplog.text
    assert "[1/2] done a.wav" in caplog.text
    assert "[2/2] FAILED b.wav (job x FAILED: bad)" in caplog.text


def test_a_bar_in_audio_time_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = make_progress(stream)
    assert isinstance(progress, BarProgress)
    progress.begin(2, 7200.0)
    progress.advance("a.wav", True, 3600.0, "")
    progress.end()
    shown = stream.getvalue()
    assert "1.00/2.00 h audio" in shown
    assert "files 1/2, failed 0" in shown


def test_options_are_validated_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_clip_folder(tmp_path / "in", SHORT_CLIPS[:1])
    out = tmp_path / "out"
    args = ["batch", str(root), str(out), "--endpoint", "ep", "--api-key", API_KEY]
    # nothing listens on this port: a request would fail differently
    code = main([*args, "--base-url", "http://127.0.0.1:9/v2", "--beam-size", "0"])

    assert code == 2
    assert "beam_size" in capsys.readouterr().err
    assert not out.exists()


# -- whole runs against the real handler -------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LocalEndpoint, GatedHandler]]:
    with real_endpoint() as pair:
        yield pair


def batch(
    endpoint: LocalEndpoint,
    root: Path,
    out: Path,
    *,
    retries: int = 2,
    formats: tuple[str, ...] = FORMATS,
) -> BatchSummary:
    config = BatchConfig(
        root, out, {"language": "en"}, formats, concurrency=2, retries=retries, retry_delay=0.0
    )
    with fast_client(endpoint) as client:
        return run_batch(client, config)


def test_a_folder_is_transcribed_and_a_rerun_skips_it(
    live: tuple[LocalEndpoint, GatedHandler],
    tmp_path: Path,
    manifest: list[Clip],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, _ = live
    root = make_clip_folder(tmp_path / "in")
    add_junk(root)
    out = tmp_path / "out"
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    args = ["batch", str(root), str(out), "--endpoint", endpoint.endpoint_id]
    args += ["--base-url", endpoint.base_url, "--concurrency", "2", "--language", "en"]
    before = completed_jobs(endpoint)

    assert main(args) == 1  # the corrupt file failed
    first = capsys.readouterr().err
    assert "done 4, skipped 0, failed 1" in first
    assert completed_jobs(endpoint) == before + 4

    texts = {c.path.name: c.text for c in manifest}
    for source, name in SHORT_CLIPS:
        base = out / Path(name).with_suffix("")  # talks/timit.wav -> OUT/talks/timit.{format}
        answer = json.loads(Path(f"{base}.json").read_text())
        duration = answer["transcription"]["duration"]
        cues = list(srt.parse(Path(f"{base}.srt").read_text()))
        assert cues and cues[-1].end.total_seconds() <= duration + 0.01
        assert [c.start for c in cues] == sorted(c.start for c in cues)
        assert webvtt.from_string(Path(f"{base}.vtt").read_text()).captions
        assert wer(texts[source], Path(f"{base}.txt").read_text()) < 0.5, name
    assert not list(out.rglob("*.tmp"))
    failures = json.loads((out / STATE_DIR / "failures.json").read_text())["failed"]
    assert [f["file"] for f in failures] == ["broken.wav"]
    assert "not readable as audio" in failures[0]["error"]

    assert main(args) == 1
    assert "done 0, skipped 4, failed 1" in capsys.readouterr().err
    assert completed_jobs(endpoint) == before + 4  # the rerun sent nothing

    (root / "broken.wav").unlink()
    assert main(args) == 0
    assert not (out / STATE_DIR / "failures.json").exists()


def test_changed_sources_are_redone_touched_ones_are_not(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path
) -> None:
    endpoint, _ = live
    root = make_clip_folder(tmp_path / "in", SHORT_CLIPS[1:3])
    out = tmp_path / "out"
    assert batch(endpoint, root, out).done == 2

    touched, edited = root / "talks/stuff_it.wav", root / "talks/timit.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    data = bytearray(edited.read_bytes())
    data[-100] ^= 0x01  # same size, one sample changed
    edited.write_bytes(bytes(data))
    before = completed_jobs(endpoint)

    summary = batch(endpoint, root, out)

    assert (summary.done, summary.skipped) == (1, 1)
    assert completed_jobs(endpoint) == before + 1
    assert batch(endpoint, root, out).skipped == 2  # the touch was journaled: no rehash loop
    assert batch(endpoint, root, out, formats=("txt",)).done == 2  # other settings: redone


def test_failures_are_retried_a_bounded_number_of_times_through_429_and_503(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path
) -> None:
    endpoint, gated = live
    root = make_clip_folder(tmp_path / "in", SHORT_CLIPS[2:3])
    endpoint.faults.add(429, 2, routes=["run"], retry_after=0)
    endpoint.faults.add(503, 2, routes=["status"])

    gated.fail_next(1)
    recovered = batch(endpoint, root, tmp_path / "out1", retries=2)
    assert recovered.done == 1 and not recovered.failed
    assert endpoint.faults.pending() == 0

    gated.fail_next(5)
    given_up = batch(endpoint, root, tmp_path / "out2", retries=1)
    gated.fail_next(0)
    assert given_up.exit_code == 1
    [failure] = json.loads((tmp_path / "out2" / STATE_DIR / "failures.json").read_text())["failed"]
    assert failure["attempts"] == 2 and failure["status"] == "FAILED"
    assert "injected worker failure" in failure["error"]


def test_ctrl_c_cancels_the_jobs_in_flight_and_the_next_run_resumes(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path
) -> None:
    endpoint, gated = live
    root = make_clip_folder(tmp_path / "in", SHORT_CLIPS[1:4])
    out = tmp_path / "out"

    class CtrlCAfterFirstFile(LogProgress):
        def advance(self, rel: str, ok: bool, audio_seconds: float, detail: str) -> None:
            super().advance(rel, ok, audio_seconds, detail)
            raise KeyboardInterrupt

    config = BatchConfig(root, out, {"language": "en"}, concurrency=1, retry_delay=0.0)
    with gated.hold(let_through=1), fast_client(endpoint) as client:
        summary = run_batch(client, config, progress=CtrlCAfterFirstFile())
        jobs = endpoint.queue.health()["jobs"]

    assert summary.interrupted and summary.exit_code == 130
    assert summary.done == 1 and summary.not_finished == 2
    assert jobs["inQueue"] == jobs["inProgress"] == 0  # every started job was cancelled
    resumed = batch(endpoint, root, out)
    assert (resumed.done, resumed.skipped) == (2, 1)


def test_the_batch_shows_the_workers_progress(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path, manifest: list[Clip]
) -> None:
    """A long file decoded sequentially reports progress; the batch's display receives it."""
    endpoint, _ = live
    long_form = next(c for c in manifest if c.long_form)
    root = tmp_path / "in"
    root.mkdir()
    shutil.copyfile(long_form.path, root / "chapter.flac")
    seen: list[tuple[str, float]] = []

    class Recording(LogProgress):
        def working(self, rel: str, fraction: float) -> None:
            super().working(rel, fraction)
            seen.append((rel, fraction))

    options = {"language": "en", "vad_filter": False}
    config = BatchConfig(root, tmp_path / "out", options, concurrency=1, retry_delay=0.0)
    with fast_client(endpoint) as client:
        summary = run_batch(client, config, progress=Recording())
    assert summary.done == 1
    assert seen and {rel for rel, _ in seen} == {"chapter.flac"}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] <= 1
