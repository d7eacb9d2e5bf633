"""A client of RunPod's serverless REST API: run, runsync, status, cancel, health, purge-queue.

Why not ``runpod.Endpoint`` (runpod-python 1.12, ``runpod/endpoint/runner.py``): its retry adapter
is mounted on ``http://`` only while the API is ``https://``, so it never retries; its
``output(timeout)`` counts one-second sleeps rather than wall time, so a slow status call
stretches the timeout without bound; and ``CANCELLED`` is not among its final states, so waiting
on a cancelled job spins until the timeout. This client keeps the same REST contract and fixes
those three: retries that are really mounted, a ``time.monotonic()`` deadline, and one set of
terminal states (``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMED_OUT``, and ``EXPIRED`` for a job
whose status 404s because its ttl or result retention passed).

Which calls are repeated, and why
---------------------------------
``/status``, ``/health``, ``/cancel`` and ``/purge-queue`` are repeated on connection errors, 408,
429 and 5xx, with backoff and jitter (``RetryPolicy``): reading a status twice is harmless, and
cancelling or purging twice has the same effect as once.

``/run`` (and ``/runsync``) create a job, and RunPod has no idempotency key: a request that is
sent twice can run, and bill, the same audio twice. So a submission is repeated only when the
first one provably did not create a job:

* the connection could not be made (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``): no
  byte of the request left this machine. Submissions use their own connection pool that never
  keeps a connection alive, so a stale pooled connection that the server closed while idle cannot
  masquerade as a failure after sending;
* the endpoint answered 408, 429 or 503: it refused the request before queuing it. RunPod sends
  429 when the endpoint's queue is full or the rate limit is hit, which happens before a job
  exists; 503 and 408 mean, by their definition in RFC 9110, that the request was not handled.

Anything else after the request was sent (a read timeout, a reset connection, 500, 502, 504) may
have queued a job: the client raises ``SubmissionUncertain`` and does not repeat it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from whisper_client.errors import (
    AuthError,
    ClientError,
    ConfigError,
    DeadlineExceeded,
    EndpointNotFound,
    Interrupted,
    JobError,
    PayloadTooLarge,
    RequestRejected,
    ServiceUnavailable,
    SubmissionUncertain,
)
from whisper_client.policy import ExecutionPolicy, PollPolicy, RetryPolicy
from whisper_client.redact import redact_url

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.runpod.ai/v2"
#: RunPod's request-body limits: 10 MB for /run, 20 MB for /runsync (decimal, the stricter reading)
RUN_MAX_BODY_BYTES = 10_000_000
RUNSYNC_MAX_BODY_BYTES = 20_000_000
#: uploads of up to 10 MB get a generous write timeout; reads are small JSON answers
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=120.0, pool=10.0)

SERVER_TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
#: the client's name for a job whose status answers 404: its ttl or result retention passed
EXPIRED = "EXPIRED"
TERMINAL_STATES = SERVER_TERMINAL_STATES | {EXPIRED}

#: answers after which a call that is safe to repeat is repeated
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: answers with which the endpoint refuses a submission before any job exists
SUBMIT_RETRY_STATUSES = frozenset({408, 429, 503})
#: transport errors raised before the first byte of a request was sent
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
_CANCEL_ATTEMPTS = 3


@dataclass(frozen=True)
class JobStatus:
    """One answer of ``/status`` (or ``/run``, ``/runsync``, ``/cancel``), as RunPod shapes it."""

    id: str
    status: str
    output: Any = None
    error: str | None = None
    delay_time_ms: int | None = None
    execution_time_ms: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    @classmethod
    def from_json(cls, data: Any, job_id: str = "") -> JobStatus:
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise ClientError("unexpected answer from the endpoint: it holds no job status")
        error = data.get("error")
        if error is not None and not isinstance(error, str):
            error = json.dumps(error)
        return cls(
            id=str(data.get("id") or job_id),
            status=data["status"],
            output=data.get("output"),
            error=error,
            delay_time_ms=_int_or_none(data.get("delayTime")),
            execution_time_ms=_int_or_none(data.get("executionTime")),
        )


def encode_body(
    job_input: Mapping[str, Any],
    *,
    webhook: str | None = None,
    policy: ExecutionPolicy | None = None,
) -> bytes:
    """The exact bytes sent to /run or /runsync: ``{"input": ..., "webhook"?, "policy"?}``."""
    body: dict[str, Any] = {"input": dict(job_input)}
    if webhook:
        body["webhook"] = webhook
    if policy is not None and policy.to_json():
        body["policy"] = policy.to_json()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RunPodClient:
    """One endpoint's REST API; thread-safe, so a batch can share one client across threads.

    ``transport`` (an ``httpx`` transport, e.g. ``httpx.MockTransport``), ``clock``, ``sleep`` and
    ``rng`` are injectable so that the retry and deadline logic is tested without a network or
    real sleeps. Without ``sleep``, waits are interruptible: ``interrupt()`` ends them at once.
    """

    def __init__(
        self,
        endpoint_id: str,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoint_id or "/" in endpoint_id or endpoint_id.strip() != endpoint_id:
            raise ConfigError(
                "no valid endpoint id: pass --endpoint or set RUNPOD_ENDPOINT_ID "
                "(the id shown on the endpoint's page in the RunPod console)"
            )
        if not api_key:
            raise ConfigError("no API key: set RUNPOD_API_KEY (or pass --api-key)")
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"base URL {redact_url(base_url)!r}: expected http:// or https://")
        self.endpoint_id = endpoint_id
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._poll = poll or PollPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "whisper-worker-client/0.1",
        }
        common: dict[str, Any] = {
            "headers": headers,
            "timeout": timeout,
            "transport": transport,
            "follow_redirects": False,  # a redirected POST could be replayed elsewhere
        }
        self._http = httpx.Client(**common)
        # never reuses a connection: see "Which calls are repeated" in the module docstring
        self._submit_http = httpx.Client(**common, limits=httpx.Limits(max_keepalive_connections=0))
        self._interrupted = threading.Event()
        self._lock = threading.Lock()
        self._started: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        self._submit_http.close()

    def __enter__(self) -> RunPodClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def interrupt(self) -> None:
        """Stop waiting: pending and future waits raise ``Interrupted``; no new job is submitted."""
        self._interrupted.set()

    def started_jobs(self) -> tuple[str, ...]:
        """Jobs this client submitted that it has not yet seen reach a terminal state."""
        with self._lock:
            return tuple(sorted(self._started))

    def cancel_started(self) -> list[str]:
        """Cancel every job this client started and has not seen finish (the Ctrl-C path).

        Works after ``interrupt()``; each cancel is tried a few times, without interruptible
        waits, so that a second Ctrl-C is not needed for the cleanup to finish.
        """
        return [job_id for job_id in self.started_jobs() if self._cancel_quietly(job_id)]

    # -- the API -----------------------------------------------------------------------------

    def run(
        self,
        job_input: Mapping[str, Any],
        *,
        webhook: str | None = None,
        policy: ExecutionPolicy | None = None,
    ) -> JobStatus:
        """Queue a job (``POST /run``); returns its id and first status (``IN_QUEUE``)."""
        body = encode_body(job_input, webhook=webhook, policy=policy)
        _check_size(len(body), RUN_MAX_BODY_BYTES, "run")
        return self._submit("run", body, self._timeout)

    def run_sync(
        self,
        job_input: Mapping[str, Any],
        *,
        wait_s: float = 90.0,
        webhook: str | None = None,
        policy: ExecutionPolicy | None = None,
    ) -> JobStatus:
        """``POST /runsync?wait=``: the finished job, or its current status if ``wait_s`` ran out.

        A job that is not finished when the call returns keeps running; ``wait()`` on its id.
        """
        body = encode_body(job_input, webhook=webhook, policy=policy)
        _check_size(len(body), RUNSYNC_MAX_BODY_BYTES, "runsync")
        wait_ms = round(min(max(wait_s, 1.0), 300.0) * 1000)
        t = self._timeout
        timeout = httpx.Timeout(
            connect=t.connect, read=wait_ms / 1000 + (t.read or 30.0), write=t.write, pool=t.pool
        )
        return self._submit(f"runsync?wait={wait_ms}", body, timeout)

    def status(self, job_id: str, *, deadline: float | None = None) -> JobStatus:
        """``GET /status/{id}``; a 404 (ttl or result retention passed) reads as ``EXPIRED``."""
        response = self._call("GET", f"status/{_quote(job_id)}", deadline=deadline)
        if response.status_code == 404:
            return _expired(job_id)
        return JobStatus.from_json(self._check(response, "status"), job_id)

    def cancel(
        self, job_id: str, *, attempts: int | None = None, interruptible: bool = True
    ) -> JobStatus:
        """``POST /cancel/{id}``: stops a running job, or removes a queued one."""
        response = self._call(
            "POST", f"cancel/{_quote(job_id)}", attempts=attempts, interruptible=interruptible
        )
        status = (
            _expired(job_id)
            if response.status_code == 404
            else JobStatus.from_json(self._check(response, "cancel"), job_id)
        )
        self._forget(job_id)
        logger.info("cancelled job %s: %s", job_id, status.status)
        return status

    def health(self) -> dict[str, Any]:
        """``GET /health``: job counters and worker states."""
        return _as_dict(self._check(self._call("GET", "health"), "health"), "health")

    def purge_queue(self) -> dict[str, Any]:
        """``POST /purge-queue``: removes every queued (not running) job of the endpoint."""
        return _as_dict(self._check(self._call("POST", "purge-queue"), "purge-queue"), "purge")

    def stream(self, job_id: str, *, timeout: float | None = None) -> Iterator[Any]:
        """``GET /stream/{id}`` until the job ends: each item the worker yields, as it arrives.

        For a worker whose handler is a generator (``STREAM_SEGMENTS=true`` here). Polls at the
        same growing intervals as ``wait``, within a monotonic deadline (the job is cancelled
        when it passes); a job that ends other than ``COMPLETED`` raises ``JobError``.
        """
        start = self._clock()
        deadline = None if timeout is None else start + timeout
        intervals = self._poll.intervals()
        try:
            while True:
                response = self._call("GET", f"stream/{_quote(job_id)}", deadline=deadline)
                if response.status_code == 404:
                    raise JobError(job_id, EXPIRED, f"job {job_id} is gone (ttl or retention)")
                body = _as_dict(self._check(response, "stream"), "stream")
                for item in body.get("stream") or ():
                    yield item.get("output") if isinstance(item, dict) else item
                status = str(body.get("status", "unknown"))
                if status in SERVER_TERMINAL_STATES:
                    self._forget(job_id)
                    if status != "COMPLETED":
                        reason = str(body.get("error") or "no reason given")[:500]
                        raise JobError(job_id, status, f"job {job_id} {status}: {reason}")
                    return
                self._pause(self._next_delay(intervals, deadline, job_id, status, timeout))
        except DeadlineExceeded:
            self._cancel_quietly(job_id)
            raise

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = True,
        on_status: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Poll until the job is terminal, at growing intervals, within a monotonic deadline.

        On the deadline the job is cancelled (unless ``cancel_on_timeout`` is false: it would
        otherwise keep running, and billing, for a result nobody collects) and
        ``DeadlineExceeded`` is raised. A job whose status stays unreachable past the retries is
        cancelled too, best effort, before ``ServiceUnavailable`` propagates, so that a caller
        that retries does not leave the first job running beside the second.
        """
        start = self._clock()
        deadline = None if timeout is None else start + timeout
        intervals = self._poll.intervals()
        last = "unknown"
        try:
            while True:
                status = self.status(job_id, deadline=deadline)
                if status.status != last:
                    logger.debug("job %s: %s", job_id, status.status)
                    last = status.status
                if on_status is not None:
                    on_status(status)
                if status.terminal:
                    self._forget(job_id)
                    logger.info(
                        "job %s %s after %.1f s", job_id, status.status, self._clock() - start
                    )
                    return status
                self._pause(self._next_delay(intervals, deadline, job_id, last, timeout))
        except DeadlineExceeded:
            if cancel_on_timeout:
                self._cancel_quietly(job_id)
            raise
        except ServiceUnavailable:
            self._cancel_quietly(job_id)
            raise

    # -- internals ---------------------------------------------------------------------------

    def _next_delay(
        self,
        intervals: Iterator[float],
        deadline: float | None,
        job_id: str,
        status: str,
        timeout: float | None,
    ) -> float:
        """The next poll interval, shortened to the deadline; ``DeadlineExceeded`` once past."""
        delay = next(intervals)
        if deadline is None:
            return delay
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded(
                f"job {job_id} still {status} after {timeout:g} s (the client's timeout)"
            )
        return min(delay, remaining)

    def _url(self, route: str) -> str:
        return f"{self.base_url}/{self.endpoint_id}/{route}"

    def _submit(self, route: str, body: bytes, timeout: httpx.Timeout) -> JobStatus:
        """Send a job-creating request; repeated only where no job can exist (module docstring)."""
        name = route.split("?")[0]
        headers = {"Content-Type": "application/json"}
        started = self._clock()
        for attempt in range(self._retry.attempts):
            if self._interrupted.is_set():
                raise Interrupted(f"interrupted before /{name} was sent")
            retry_after = None
            try:
                response = self._submit_http.post(
                    self._url(route), content=body, headers=headers, timeout=timeout
                )
            except _NOT_SENT as e:
                problem = f"could not connect ({type(e).__name__})"
            except httpx.TransportError as e:
                raise SubmissionUncertain(
                    f"/{name}: the request was sent but no answer came back ({type(e).__name__}); "
                    "a job may have been queued, so it is not sent again (a duplicate would run "
                    "and bill twice): check the endpoint's requests in the RunPod console"
                ) from None
            else:
                code = response.status_code
                if code not in SUBMIT_RETRY_STATUSES:
                    if code >= 500:
                        raise SubmissionUncertain(
                            f"/{name}: HTTP {code} ({_server_message(response)}) after the request "
                            "was received; a job may have been queued, so it is not sent again: "
                            "check the endpoint's requests in the RunPod console"
                        )
                    status = JobStatus.from_json(self._check(response, name))
                    if not status.id:
                        raise ClientError(f"/{name}: the endpoint answered without a job id")
                    if not status.terminal:
                        self._track(status.id)
                    logger.info(
                        "submitted job %s via /%s (%d bytes) in %.2f s: %s",
                        status.id,
                        name,
                        len(body),
                        self._clock() - started,
                        status.status,
                    )
                    return status
                problem = f"HTTP {code}"
                retry_after = _retry_after(response)
            if attempt + 1 < self._retry.attempts:
                delay = self._retry.delay(attempt, self._rng, retry_after)
                logger.info("/%s refused (%s), not queued; retry in %.2fs", name, problem, delay)
                self._pause(delay)
        raise ServiceUnavailable(
            f"/{name}: {problem} on all {self._retry.attempts} attempts; nothing was queued: "
            "the endpoint is unreachable or overloaded, try again later"
        )

    def _call(
        self,
        method: str,
        route: str,
        *,
        deadline: float | None = None,
        attempts: int | None = None,
        interruptible: bool = True,
    ) -> httpx.Response:
        """Send a request that is safe to repeat, repeating it on transient failures."""
        attempts = attempts or self._retry.attempts
        for attempt in range(attempts):
            retry_after = None
            try:
                response = self._http.request(
                    method, self._url(route), timeout=self._timeout_until(deadline)
                )
            except httpx.TransportError as e:
                problem = type(e).__name__
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt + 1 == attempts:
                break
            delay = self._retry.delay(attempt, self._rng, retry_after)
            if deadline is not None and self._clock() + delay >= deadline:
                raise DeadlineExceeded(f"{method} /{route}: {problem}, and the deadline is near")
            logger.info("%s /%s: %s; retry %d in %.2fs", method, route, problem, attempt + 1, delay)
            self._pause(delay, interruptible=interruptible)
        raise ServiceUnavailable(
            f"{method} /{route}: {problem} on all {attempts} attempts: "
            "the endpoint is unreachable or overloaded, try again later"
        )

    def _check(self, response: httpx.Response, name: str) -> Any:
        """The JSON of a 2xx answer, or the ``ClientError`` that says what went wrong."""
        code = response.status_code
        if 200 <= code < 300:
            try:
                return response.json()
            except ValueError:
                raise ClientError(f"/{name}: HTTP {code} with a body that is not JSON") from None
        if code in (401, 403):
            raise AuthError(
                f"the endpoint refused the API key (HTTP {code}): check RUNPOD_API_KEY "
                f"(or --api-key), and that the key may use endpoint {self.endpoint_id!r}"
            )
        if code == 404:
            raise EndpointNotFound(
                f"endpoint {self.endpoint_id!r} not found at {redact_url(self.base_url)} "
                "(HTTP 404): check the endpoint id and the base URL"
            )
        if code == 413:
            raise PayloadTooLarge(
                f"/{name}: the endpoint refused the request as too large (HTTP 413): "
                "pass the audio as a URL instead"
            )
        if 400 <= code < 500:
            raise RequestRejected(f"/{name}: HTTP {code}: {_server_message(response)}")
        raise ServiceUnavailable(f"/{name}: HTTP {code}: {_server_message(response)}")

    def _timeout_until(self, deadline: float | None) -> httpx.Timeout:
        """The request timeout, shortened so that one request cannot run far past ``deadline``."""
        if deadline is None:
            return self._timeout
        remaining = max(deadline - self._clock(), 1.0)
        t = self._timeout

        def cap(value: float | None) -> float:
            return remaining if value is None else min(value, remaining)

        return httpx.Timeout(
            connect=cap(t.connect), read=cap(t.read), write=cap(t.write), pool=cap(t.pool)
        )

    def _pause(self, seconds: float, *, interruptible: bool = True) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            if interruptible and self._interrupted.is_set():
                raise Interrupted("interrupted while waiting")
        elif interruptible:
            if self._interrupted.wait(seconds):
                raise Interrupted("interrupted while waiting")
        else:
            time.sleep(seconds)

    def _cancel_quietly(self, job_id: str) -> bool:
        """Cancel, best effort: a few tries, no interruptible waits, failures only logged."""
        try:
            self.cancel(job_id, attempts=_CANCEL_ATTEMPTS, interruptible=False)
        except ClientError as e:
            logger.warning("could not cancel job %s: %s", job_id, e)
            return False
        return True

    def _track(self, job_id: str) -> None:
        with self._lock:
            self._started.add(job_id)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._started.discard(job_id)


def _check_size(size: int, limit: int, route: str) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"the request body is {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit of "
            f"/{route}: pass the audio as a URL instead (e.g. a presigned S3 or GCS link)"
        )


def _expired(job_id: str) -> JobStatus:
    return JobStatus(
        id=job_id,
        status=EXPIRED,
        error=(
            "the endpoint no longer knows this job (HTTP 404): its ttl, or the retention of its "
            "result (30 minutes after /run, 1 minute after /runsync), has passed"
        ),
    )


def _quote(job_id: str) -> str:
    return urllib.parse.quote(job_id, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare for APIs and ignored)."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _server_message(response: httpx.Response) -> str:
    """The endpoint's own words about an error, short; the request is never echoed."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        if isinstance(data, dict):
            data = data.get("error") or data.get("message") or data
        text = str(data)
    return text[:300] or response.reason_phrase


def _as_dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ClientError(f"unexpected {what} answer from the endpoint: not a JSON object")
    return data


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
