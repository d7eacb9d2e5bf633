"""The RunPod REST client: retry, deadline and /run-safety logic with a scripted transport and fake
time (no network, no sleeps), then end to end against the local endpoint and the real handler."""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from whisper_client.api import EXPIRED, RunPodClient
from whisper_client.errors import (
    AuthError,
    ConfigError,
    DeadlineExceeded,
    EndpointNotFound,
    Interrupted,
    JobError,
    PayloadTooLarge,
    ServiceUnavailable,
    SubmissionUncertain,
)
from whisper_client.local_endpoint import LocalEndpoint
from whisper_client.policy import ExecutionPolicy, PollPolicy, RetryPolicy
from whisper_client.redact import redact_url
from whisper_client.transcribe import transcribe

from tests.client_helpers import (
    API_KEY,
    FakeTime,
    GatedHandler,
    Script,
    completed_jobs,
    fast_client,
    real_endpoint,
    scripted_client,
)
from tests.conftest import REPO_ROOT, Clip, wer

QUEUED = {"id": "job-1", "status": "IN_QUEUE"}
RUNNING = {"id": "job-1", "status": "IN_PROGRESS"}
DONE = {"id": "job-1", "status": "COMPLETED", "output": {"transcription": {"text": "hi"}}}


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


# -- retries of calls that are safe to repeat --------------------------------------------------


def test_status_retries_transient_failures_with_growing_jittered_backoff(time: FakeTime) -> None:
    script = Script().on("status", 503, httpx.ConnectError("refused"), 502, DONE)
    client = scripted_client(script, time, rng=random.Random(7))

    status = client.status("job-1")

    assert status.status == "COMPLETED"
    assert script.count("status") == 4
    # equal jitter: retry n waits between half and all of base * 2**n (0.5 s, 1 s, 2 s)
    assert len(time.sleeps) == 3
    for n, slept in enumerate(time.sleeps):
        ceiling = 0.5 * 2**n
        assert ceiling / 2 <= slept <= ceiling
    assert time.sleeps[0] < time.sleeps[2]


def test_jitter_spreads_clients_apart() -> None:
    policy = RetryPolicy(base_delay=1.0)
    delays = {round(policy.delay(3, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 10
    assert all(4.0 <= d <= 8.0 for d in delays)


def test_retry_after_header_sets_the_delay(time: FakeTime) -> None:
    busy = httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"})
    script = Script().on("health", busy, {"jobs": {}, "workers": {}})

    assert scripted_client(script, time).health() == {"jobs": {}, "workers": {}}
    assert time.sleeps == [7.0]


def test_retries_are_bounded(time: FakeTime) -> None:
    script = Script().on("health", 503)
    client = scripted_client(script, time, retry=RetryPolicy(attempts=4, base_delay=0.5))

    with pytest.raises(ServiceUnavailable, match="4 attempts") as caught:
        client.health()

    assert caught.value.retryable
    assert script.count("health") == 4
    assert len(time.sleeps) == 3


def test_client_errors_are_not_retried(time: FakeTime) -> None:
    script = Script().on("health", 401)
    with pytest.raises(AuthError):
        scripted_client(script, time).health()
    assert script.count("health") == 1
    assert time.sleeps == []


# -- /run: repeated only when no job can exist -------------------------------------------------


@pytest.mark.parametrize("refusal", [429, 503, 408])
def test_run_is_repeated_when_refused_before_queuing(time: FakeTime, refusal: int) -> None:
    script = Script().on("run", refusal, refusal, QUEUED)

    status = scripted_client(script, time).run({"x": 1})

    assert (status.id, status.status) == ("job-1", "IN_QUEUE")
    assert script.count("run") == 3


def test_run_is_repeated_when_the_connection_was_never_made(time: FakeTime) -> None:
    script = Script().on("run", httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), QUEUED)

    assert scripted_client(script, time).run({"x": 1}).id == "job-1"
    assert script.count("run") == 3


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("no answer"), httpx.RemoteProtocolError("closed"), httpx.ReadError("reset")],
)
def test_run_is_never_repeated_once_it_may_have_arrived(time: FakeTime, failure: Exception) -> None:
    script = Script().on("run", failure, QUEUED)

    with pytest.raises(SubmissionUncertain, match="not sent again") as caught:
        scripted_client(script, time).run({"x": 1})

    assert script.count("run") == 1
    assert not caught.value.retryable


@pytest.mark.parametrize("status", [500, 502, 504])
def test_run_is_never_repeated_after_an_ambiguous_server_error(time: FakeTime, status: int) -> None:
    script = Script().on("run", status, QUEUED)

    with pytest.raises(SubmissionUncertain):
        scripted_client(script, time).run({"x": 1})

    assert script.count("run") == 1


def test_run_refused_on_every_attempt_is_retryable_unavailability(time: FakeTime) -> None:
    script = Script().on("run", 429)
    client = scripted_client(script, time, retry=RetryPolicy(attempts=3, base_delay=0.1))

    with pytest.raises(ServiceUnavailable, match="nothing was queued") as caught:
        client.run({"x": 1})

    assert caught.value.retryable
    assert script.count("run") == 3


def test_submissions_use_a_connection_that_is_never_reused() -> None:
    client = RunPodClient("ep", API_KEY)
    pool = client._submit_http._transport._pool  # type: ignore[attr-defined]
    assert pool._max_keepalive_connections == 0
    client.close()


# -- request shape and errors ------------------------------------------------------------------


def test_requests_carry_bearer_key_explicit_timeouts_and_pass_policy_through(
    time: FakeTime,
) -> None:
    script = Script().on("run", QUEUED)
    policy = ExecutionPolicy(execution_timeout_ms=900_000, ttl_ms=3_600_000)

    scripted_client(script, time).run({"a": 1}, webhook="https://hook.test/x", policy=policy)

    request = script.requests[0]
    assert request.url.path == "/v2/ep/run"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.content) == {
        "input": {"a": 1},
        "webhook": "https://hook.test/x",
        "policy": {"executionTimeout": 900_000, "ttl": 3_600_000},
    }
    timeout = request.extensions["timeout"]
    assert all(timeout[k] is not None for k in ("connect", "read", "write", "pool"))


def test_wrong_key_is_a_clear_auth_error_without_the_key(time: FakeTime) -> None:
    with pytest.raises(AuthError) as caught:
        scripted_client(Script().on("run", 401), time).run({"x": 1})
    message = str(caught.value)
    assert "RUNPOD_API_KEY" in message and "401" in message
    assert API_KEY not in message


def test_unknown_endpoint_is_reported_as_such(time: FakeTime) -> None:
    with pytest.raises(EndpointNotFound, match="endpoint 'ep' not found"):
        scripted_client(Script().on("health", 404), time).health()


def test_body_over_the_limit_is_refused_before_sending(time: FakeTime) -> None:
    script = Script().on("run", QUEUED)
    with pytest.raises(PayloadTooLarge, match="URL"):
        scripted_client(script, time).run({"audio": {"base64": "A" * 10_000_001}})
    assert script.requests == []


def test_server_413_is_payload_too_large(time: FakeTime) -> None:
    with pytest.raises(PayloadTooLarge, match="URL"):
        scripted_client(Script().on("run", 413), time).run({"x": 1})


def test_missing_configuration_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="RUNPOD_API_KEY"):
        RunPodClient("ep", "")
    with pytest.raises(ConfigError, match="endpoint id"):
        RunPodClient("", API_KEY)
    with pytest.raises(ConfigError, match="http"):
        RunPodClient("ep", API_KEY, base_url="ftp://example.test")


def test_execution_policy_bounds_are_runpods() -> None:
    with pytest.raises(ConfigError, match="executionTimeout"):
        ExecutionPolicy(execution_timeout_ms=5000)
    with pytest.raises(ConfigError, match="ttl"):
        ExecutionPolicy(ttl_ms=9_999)
    assert ExecutionPolicy().to_json() == {}


def test_logs_and_messages_never_hold_the_key_or_a_query_string(
    time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script().on("run", 429, QUEUED).on("status", 503, RUNNING, DONE)
    client = scripted_client(script, time)

    job = client.run({"audio": {"url": "https://bucket.test/a.wav?X-Signature=s3cr3t"}})
    client.wait(job.id)

    assert caplog.records
    assert API_KEY not in caplog.text
    assert "s3cr3t" not in caplog.text
    assert (
        redact_url("https://u:p@bucket.test:8443/a.wav?sig=1#f") == "https://bucket.test:8443/a.wav"
    )


# -- waiting: poll intervals, terminal states, deadline ----------------------------------------


def test_wait_polls_at_growing_intervals_up_to_a_ceiling(time: FakeTime) -> None:
    script = Script().on("status", *([QUEUED] * 3 + [RUNNING] * 4 + [DONE]))

    status = scripted_client(script, time).wait("job-1")

    assert status.status == "COMPLETED"
    assert time.sleeps == [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 4.0]


@pytest.mark.parametrize("terminal", ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"])
def test_every_terminal_state_ends_the_wait(time: FakeTime, terminal: str) -> None:
    script = Script().on("status", RUNNING, {"id": "job-1", "status": terminal})
    client = scripted_client(script, time)

    assert client.wait("job-1").status == terminal
    assert script.count("status") == 2


def test_status_404_after_the_ttl_is_reported_as_expired(time: FakeTime) -> None:
    script = Script().on("status", RUNNING, 404)

    status = scripted_client(script, time).wait("job-1")

    assert status.status == EXPIRED
    assert status.terminal
    assert "ttl" in (status.error or "")


def test_deadline_is_wall_time_and_the_job_is_cancelled(time: FakeTime) -> None:
    script = Script().on("status", RUNNING).on("cancel", {"id": "job-1", "status": "CANCELLED"})
    client = scripted_client(script, time)
    started = time.now

    with pytest.raises(DeadlineExceeded, match="10 s"):
        client.wait("job-1", timeout=10.0)

    assert time.now - started == pytest.approx(10.0)  # no sleep past the deadline
    assert script.count("cancel") == 1


def test_deadline_counts_slow_status_calls_too(time: FakeTime) -> None:
    """Unlike runpod-python's ``output(timeout)``, time spent inside calls counts."""

    def slow_status(request: httpx.Request) -> httpx.Response:
        time.advance(3.0)
        return httpx.Response(200, json=RUNNING)

    client = RunPodClient(
        "ep",
        API_KEY,
        transport=httpx.MockTransport(slow_status),
        clock=time.clock,
        sleep=time.sleep,
        poll=PollPolicy(initial=0.5, maximum=0.5),
    )
    started = time.now
    with pytest.raises(DeadlineExceeded):
        client.wait("job-1", timeout=10.0, cancel_on_timeout=False)
    assert time.now - started < 14.0  # one call at most past the deadline


def test_no_cancel_on_deadline_when_asked_not_to(time: FakeTime) -> None:
    script = Script().on("status", RUNNING).on("cancel", {"id": "job-1", "status": "CANCELLED"})
    with pytest.raises(DeadlineExceeded):
        scripted_client(script, time).wait("job-1", timeout=3.0, cancel_on_timeout=False)
    assert script.count("cancel") == 0


def test_a_job_that_cannot_be_watched_is_cancelled_before_giving_up(time: FakeTime) -> None:
    script = Script().on("status", 503).on("cancel", {"id": "job-1", "status": "CANCELLED"})
    with pytest.raises(ServiceUnavailable):
        scripted_client(script, time).wait("job-1")
    assert script.count("cancel") >= 1


def test_interrupt_stops_the_wait_and_started_jobs_are_cancelled() -> None:
    time = FakeTime()
    script = Script().on("run", QUEUED).on("status", RUNNING)
    script.on("cancel", {"id": "job-1", "status": "CANCELLED"})
    holder: list[RunPodClient] = []

    def sleep_then_ctrl_c(seconds: float) -> None:
        time.sleep(seconds)
        holder[0].interrupt()

    client = RunPodClient(
        "ep", API_KEY, transport=script.transport(), clock=time.clock, sleep=sleep_then_ctrl_c
    )
    holder.append(client)
    job = client.run({"x": 1})

    with pytest.raises(Interrupted):
        client.wait(job.id)
    assert client.started_jobs() == ("job-1",)
    assert client.cancel_started() == ["job-1"]
    assert client.started_jobs() == ()
    with pytest.raises(Interrupted):
        client.run({"x": 2})  # nothing new is sent once interrupted
    assert script.count("run") == 1


def test_runsync_returns_the_output_or_hands_over_to_polling(time: FakeTime) -> None:
    script = Script().on("runsync", DONE)
    status = scripted_client(script, time).run_sync({"x": 1}, wait_s=30)
    assert status.output == {"transcription": {"text": "hi"}}
    assert script.requests[0].url.params["wait"] == "30000"

    script = Script().on("runsync", RUNNING).on("status", DONE)
    client = scripted_client(script, time)
    assert client.run_sync({"x": 1}).status == "IN_PROGRESS"
    assert client.started_jobs() == ("job-1",)
    assert client.wait("job-1").status == "COMPLETED"


# -- end to end: the local endpoint around the real handler ------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LocalEndpoint, GatedHandler]]:
    with real_endpoint() as pair:
        yield pair


def test_e2e_a_file_is_transcribed_from_opus(
    live: tuple[LocalEndpoint, GatedHandler], jfk: Clip
) -> None:
    endpoint, _ = live
    with fast_client(endpoint) as client:
        result = transcribe(client, jfk.path, {"language": "en", "output_format": "all"})

    assert wer(jfk.text, result.text) < 0.15
    assert result.transcription["srt"].startswith("1\n")
    assert client.started_jobs() == ()


def test_e2e_runsync_path(live: tuple[LocalEndpoint, GatedHandler], manifest: list[Clip]) -> None:
    endpoint, _ = live
    clip = next(c for c in manifest if c.path.name == "en_timit_LDC93S1.wav")
    with fast_client(endpoint) as client:
        result = transcribe(client, clip.path, {"language": "en"}, sync=True, timeout=60)
    assert result.job_id.startswith("sync-")
    assert wer(clip.text, result.text) < 0.5


def test_e2e_corrupt_audio_sent_as_is_fails_in_the_worker(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path
) -> None:
    endpoint, _ = live
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + bytes(range(256)) * 20)
    with fast_client(endpoint) as client, pytest.raises(JobError) as caught:
        transcribe(client, junk, transcode=False)
    assert caught.value.status == "FAILED"
    assert caught.value.retryable
    assert "audio" in str(caught.value).lower()


def test_e2e_a_job_is_cancelled_mid_run(live: tuple[LocalEndpoint, GatedHandler]) -> None:
    endpoint, gated = live
    with fast_client(endpoint) as client:
        with gated.hold():
            job = client.run({"audio": {"url": "https://example.invalid/a.wav"}})
            assert gated.entered.wait(60)
            assert client.status(job.id).status == "IN_PROGRESS"
            assert client.cancel(job.id).status == "CANCELLED"
        # the handler ran on after the cancel; its answer was dropped
        assert client.wait(job.id, timeout=60).status == "CANCELLED"
        assert client.status(job.id).output is None


def test_e2e_the_client_rides_through_429_and_503(
    live: tuple[LocalEndpoint, GatedHandler], manifest: list[Clip]
) -> None:
    endpoint, _ = live
    clip = next(c for c in manifest if c.path.name == "en_ls-test-clean_1089-134686-0001.wav")
    endpoint.faults.add(429, 2, routes=["run"], retry_after=0)
    endpoint.faults.add(503, 3, routes=["status"])
    before = completed_jobs(endpoint)
    with fast_client(endpoint) as client:
        result = transcribe(client, clip.path, {"language": "en"}, timeout=120)

    assert wer(clip.text, result.text) < 0.5
    assert endpoint.faults.served == {"run:429": 2, "status:503": 3}
    assert endpoint.faults.pending() == 0
    assert completed_jobs(endpoint) == before + 1  # refused submissions queued nothing


def test_e2e_payload_over_the_limit(
    live: tuple[LocalEndpoint, GatedHandler], tmp_path: Path
) -> None:
    endpoint, _ = live
    big = tmp_path / "long.wav"
    with wave.open(str(big), "wb") as w:  # 5.5 minutes of 16 kHz silence: 10.6 MB as is
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000 * 330))
    before = completed_jobs(endpoint)

    with fast_client(endpoint) as client, pytest.raises(PayloadTooLarge, match="URL"):
        transcribe(client, big, transcode=False)
    # the server enforces it as well: RunPod's 10 MB on /run
    refused = httpx.post(
        f"{endpoint.base_url}/{endpoint.endpoint_id}/run",
        content=b'{"input": "' + b"A" * 10_000_000 + b'"}',
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert refused.status_code == 413
    assert completed_jobs(endpoint) == before


def test_e2e_wrong_api_key_gives_a_clear_message(
    live: tuple[LocalEndpoint, GatedHandler], jfk: Clip, capsys: pytest.CaptureFixture[str]
) -> None:
    from whisper_client.cli import main

    endpoint, _ = live
    args = ["run", str(jfk.path), "--endpoint", endpoint.endpoint_id, "--base-url"]
    code = main([*args, endpoint.base_url, "--api-key", "wrong-key"])

    err = capsys.readouterr().err
    assert code == 2
    assert "refused the API key (HTTP 401)" in err
    assert "RUNPOD_API_KEY" in err
    assert "wrong-key" not in err


def test_e2e_ctrl_c_cancels_the_started_job(
    live: tuple[LocalEndpoint, GatedHandler], jfk: Clip
) -> None:
    endpoint, gated = live
    command = [sys.executable, "-m", "whisper_client", "run", str(jfk.path), "--language", "en"]
    command += ["--endpoint", endpoint.endpoint_id, "--base-url", endpoint.base_url]
    env = {"RUNPOD_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"}
    with gated.hold():
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert gated.entered.wait(120), "the job never reached the worker"
            job_id = gated.job_ids[-1]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        status = endpoint.queue.get(job_id)
    assert proc.returncode == 130, err.decode()
    assert status is not None and status["status"] == "CANCELLED"
    assert job_id in err.decode()


def test_the_client_never_imports_the_model() -> None:
    code = (
        "import sys, whisper_client, whisper_client.cli, whisper_client.local_endpoint\n"
        "heavy = {'faster_whisper', 'ctranslate2', 'torch', 'whisper', 'handler'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
