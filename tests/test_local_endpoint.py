"""The local endpoint speaks RunPod's API: routes, JSON shapes, auth, the job lifecycle, policy,
expiry, counters, faults and webhooks. Handlers here are small functions (the real handler runs
in the client and batch tests); time moves through a fake clock, never through sleeps."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from whisper_client.api import JobStatus
from whisper_client.local_endpoint import LocalEndpoint
from whisper_client.local_queue import RUN_RETENTION_S, RUNSYNC_RETENTION_S

from tests.client_helpers import API_KEY, FakeTime, GatedHandler, fast_client

OK = {"transcription": {"text": "hello"}}


class Api:
    """Raw HTTP against one endpoint, to check shapes exactly as a non-Python client sees them."""

    def __init__(self, endpoint: LocalEndpoint) -> None:
        self.endpoint = endpoint
        self.root = f"{endpoint.base_url}/{endpoint.endpoint_id}"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)

    def close(self) -> None:
        self.http.close()

    def post(self, route: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(f"{self.root}/{route}", json=body, **kw)

    def get(self, route: str, **kw: Any) -> httpx.Response:
        return self.http.get(f"{self.root}/{route}", **kw)

    def run(self, job_input: Any = None, **extra: Any) -> str:
        answer = self.post("run", {"input": job_input or {"n": 1}, **extra})
        assert answer.status_code == 200, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        answer = self.get(f"status/{job_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def wait_done(self, job_id: str) -> JobStatus:
        with fast_client(self.endpoint) as client:
            return client.wait(job_id, timeout=30)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def gated() -> GatedHandler:
    return GatedHandler(lambda job: {**OK, "echo": job["input"]})


@pytest.fixture
def endpoint(gated: GatedHandler, clock: FakeTime) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint(
        gated, endpoint_id="ep", api_key=API_KEY, clock=clock.clock, webhook_retry_delay=0.0
    )
    ep.start()
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture
def api(endpoint: LocalEndpoint) -> Iterator[Api]:
    api = Api(endpoint)
    yield api
    api.close()


def test_run_status_shapes_follow_runpod(api: Api) -> None:
    answer = api.post("run", {"input": {"n": 1}})
    assert answer.status_code == 200
    assert set(answer.json()) == {"id", "status"}
    assert answer.json()["status"] == "IN_QUEUE"

    done = api.wait_done(answer.json()["id"])
    assert done.status == "COMPLETED"
    assert done.output == {**OK, "echo": {"n": 1}}
    body = api.status(answer.json()["id"])
    assert set(body) == {"id", "status", "delayTime", "executionTime", "output"}


def test_jobs_queue_behind_a_busy_worker(api: Api, gated: GatedHandler) -> None:
    with gated.hold():
        first = api.run()
        assert gated.entered.wait(10)
        second = api.run()
        assert api.status(first)["status"] == "IN_PROGRESS"
        assert api.status(second)["status"] == "IN_QUEUE"
        assert api.get("health").json() == {
            "jobs": {"completed": 0, "failed": 0, "inProgress": 1, "inQueue": 1, "retried": 0},
            "workers": {"idle": 0, "running": 1},
        }
    assert api.wait_done(first).status == "COMPLETED"
    assert api.wait_done(second).status == "COMPLETED"
    assert api.get("health").json()["jobs"]["completed"] == 2


def test_cancel_removes_a_queued_job_and_stops_a_running_one(api: Api, gated: GatedHandler) -> None:
    with gated.hold():
        running = api.run()
        assert gated.entered.wait(10)
        queued = api.run()
        assert api.post(f"cancel/{queued}").json() == {"id": queued, "status": "CANCELLED"}
        assert api.post(f"cancel/{running}").json() == {"id": running, "status": "CANCELLED"}
    assert api.wait_done(running).output is None  # the handler's late answer is dropped
    assert queued not in gated.job_ids  # never reached the handler
    assert api.post("cancel/unknown").status_code == 404


def test_handler_errors_make_failed_jobs_as_on_runpod() -> None:
    def handler(job: dict[str, Any]) -> Any:
        if job["input"] == "raise":
            raise ValueError("boom")
        return {"error": "audio: not decodable"}

    with LocalEndpoint(handler, endpoint_id="ep", api_key=API_KEY) as ep:
        api = Api(ep)
        failed = api.wait_done(api.run("bad audio"))
        crashed = api.wait_done(api.run("raise"))
        health = api.get("health").json()
        api.close()
    assert (failed.status, failed.error, failed.output) == ("FAILED", "audio: not decodable", None)
    assert crashed.status == "FAILED"
    assert json.loads(crashed.error or "") == {"error_type": "ValueError", "error_message": "boom"}
    assert health["jobs"]["failed"] == 2


def test_execution_timeout_is_honoured(api: Api, gated: GatedHandler, clock: FakeTime) -> None:
    with gated.hold():
        job = api.run(policy={"executionTimeout": 6000})
        assert gated.entered.wait(10)
        clock.advance(5.9)
        assert api.status(job)["status"] == "IN_PROGRESS"
        clock.advance(0.2)
        timed_out = api.status(job)
    assert timed_out["status"] == "TIMED_OUT"
    assert timed_out["executionTime"] == 6000
    assert api.get("health").json()["jobs"]["failed"] == 1


def test_after_the_ttl_the_job_is_gone(api: Api, gated: GatedHandler, clock: FakeTime) -> None:
    with gated.hold():
        job = api.run(policy={"ttl": 10_000})
        assert gated.entered.wait(10)
        clock.advance(10.0)
        assert api.get(f"status/{job}").status_code == 404
        with fast_client(api.endpoint) as client:
            assert client.status(job).status == "EXPIRED"


def test_results_are_kept_30_minutes_after_run_and_1_after_runsync(
    api: Api, clock: FakeTime
) -> None:
    job = api.run()
    api.wait_done(job)
    synced = api.post("runsync", {"input": {"n": 2}}).json()
    assert synced["status"] == "COMPLETED" and synced["id"].startswith("sync-")

    clock.advance(RUNSYNC_RETENTION_S + 1)
    assert api.get(f"status/{synced['id']}").status_code == 404
    assert api.status(job)["status"] == "COMPLETED"
    clock.advance(RUN_RETENTION_S)
    assert api.get(f"status/{job}").status_code == 404


def test_runsync_returns_the_status_when_the_wait_runs_out(api: Api, gated: GatedHandler) -> None:
    with gated.hold():
        answer = api.post("runsync?wait=1000", {"input": {"n": 1}}).json()
        assert answer["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert api.wait_done(answer["id"]).status == "COMPLETED"


def test_purge_queue_cancels_queued_jobs_only(api: Api, gated: GatedHandler) -> None:
    with gated.hold():
        running = api.run()
        assert gated.entered.wait(10)
        queued = [api.run(), api.run()]
        assert api.post("purge-queue").json() == {"removed": 2, "status": "completed"}
        assert all(api.status(j)["status"] == "CANCELLED" for j in queued)
    assert api.wait_done(running).status == "COMPLETED"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Bearer {API_KEY}"}, 200),
        ({"Authorization": API_KEY}, 200),  # RunPod takes the bare key too
    ],
)
def test_auth(endpoint: LocalEndpoint, headers: dict[str, str], code: int) -> None:
    answer = httpx.get(f"{endpoint.base_url}/ep/health", headers=headers)
    assert answer.status_code == code


def test_another_endpoint_id_is_404(api: Api, endpoint: LocalEndpoint) -> None:
    answer = api.http.get(f"{endpoint.base_url}/other/health")
    assert answer.status_code == 404


def test_status_is_get_as_on_runpod(api: Api) -> None:
    job = api.run()
    assert api.post(f"status/{job}").status_code == 405


@pytest.mark.parametrize(
    "body",
    [
        {"no_input": 1},
        {"input": {}, "policy": {"executionTimeout": 5000}},
        {"input": {}, "policy": {"ttl": 9000}},
        {"input": {}, "webhook": 12},
    ],
)
def test_malformed_requests_are_400(api: Api, body: dict[str, Any]) -> None:
    assert api.post("run", body).status_code == 400


def test_bodies_over_runpods_limits_are_413(api: Api) -> None:
    over_run = b'{"input": "' + b"A" * 10_000_000 + b'"}'
    assert api.http.post(f"{api.root}/run", content=over_run).status_code == 413
    assert api.http.post(f"{api.root}/runsync", content=over_run).status_code == 200
    assert api.http.post(f"{api.root}/runsync?wait=x", content=b"{}").status_code == 400


def test_faults_answer_first_and_queue_nothing(api: Api, endpoint: LocalEndpoint) -> None:
    endpoint.faults.add(429, 2, routes=["run"], retry_after=1.5)
    endpoint.faults.add(503, 1)

    first = api.post("run", {"input": {}})
    assert first.status_code == 429 and first.headers["retry-after"] == "1.5"
    assert api.post("run", {"input": {}}).status_code == 429
    assert api.get("health").status_code == 503  # the catch-all fault
    assert api.get("health").json()["jobs"]["inQueue"] == 0
    assert api.post("run", {"input": {}}).status_code == 200
    assert endpoint.faults.served == {"run:429": 2, "health:503": 1}


def test_fault_specs_from_the_command_line(endpoint: LocalEndpoint) -> None:
    endpoint.faults.add_spec("status:503:4")
    endpoint.faults.add_spec("*:500:1")
    assert endpoint.faults.pending() == 5
    with pytest.raises(ValueError, match="ROUTE:STATUS:TIMES"):
        endpoint.faults.add_spec("status-503")
    with pytest.raises(ValueError, match="unknown route"):
        endpoint.faults.add_spec("stats:503:1")


def test_the_webhook_gets_the_final_status(api: Api) -> None:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job = api.run({"n": 3}, webhook=f"http://127.0.0.1:{server.server_port}/hook")
        assert arrived.wait(30)
    finally:
        server.shutdown()
        server.server_close()
    assert received[0]["id"] == job
    assert received[0]["status"] == "COMPLETED"
    assert received[0]["output"]["echo"] == {"n": 3}
