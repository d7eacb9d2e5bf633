"""The client's exception tree: what can go wrong between a user's machine and an endpoint.

    ClientError                  base; ``retryable`` says whether a later, fresh attempt may succeed
    ├── ConfigError              no endpoint id / API key, bad option: found before anything is sent
    ├── AuthError                401/403: the API key is missing, wrong, or not for this endpoint
    ├── EndpointNotFound         404 on an endpoint route: wrong endpoint id or base URL
    ├── RequestRejected          another 4xx: the endpoint refused the request as malformed
    │   └── PayloadTooLarge      the body is over RunPod's limit (checked before sending, or 413)
    ├── AudioPrepError           ffmpeg/ffprobe could not read or transcode a local file
    ├── ServiceUnavailable       connection errors, 429 or 5xx outlasted the retries
    ├── SubmissionUncertain      /run may have queued a job but gave no answer; never repeated
    ├── JobError                 the job ended in FAILED, CANCELLED, TIMED_OUT or EXPIRED
    ├── DeadlineExceeded         the client's own deadline passed while waiting for the job
    └── Interrupted              the client was interrupted (Ctrl-C) before or while waiting

``retryable`` is what the batch transcriber reads to decide whether to submit a file again: only
failures after which a new job can plausibly succeed, and none that could duplicate a job that
may still be running, are retryable.

Messages name what was wrong and what to do; they never carry the API key, audio, transcript
text or a URL's query string.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client raises on purpose."""

    retryable: bool = False


class ConfigError(ClientError, ValueError):
    """The client cannot start: a missing endpoint id or key, or an invalid option."""


class AuthError(ClientError):
    """The endpoint refused the API key (HTTP 401 or 403)."""


class EndpointNotFound(ClientError):
    """HTTP 404 on an endpoint route: the endpoint id or the base URL is wrong."""


class RequestRejected(ClientError):
    """The endpoint answered 4xx to a request it considered malformed."""


class PayloadTooLarge(RequestRejected):
    """The request body is over the endpoint's limit: the audio must be passed as a URL."""


class AudioPrepError(ClientError):
    """A local file could not be read or transcoded (corrupt, no audio stream, no ffmpeg)."""


class ServiceUnavailable(ClientError):
    """The endpoint stayed unreachable or overloaded (connection errors, 429, 5xx) past the retries.

    Retryable: nothing was queued by the failing call (``/run`` only ends here when its request
    was refused or never sent), so a later attempt cannot duplicate a job.
    """

    retryable = True


class SubmissionUncertain(ClientError):
    """``/run`` was sent but no answer came back: a job may or may not have been queued.

    Not retryable: RunPod offers no idempotency key, so sending the request again could start
    (and bill) the same job twice. The user decides, e.g. after a look at the RunPod console.
    """


class JobError(ClientError):
    """The job reached a terminal state other than ``COMPLETED``.

    ``FAILED``, ``TIMED_OUT`` and ``EXPIRED`` are retryable (the job is over, a new one may
    succeed); ``CANCELLED`` is not, because someone asked for it.
    """

    def __init__(self, job_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.retryable = status in ("FAILED", "TIMED_OUT", "EXPIRED")


class DeadlineExceeded(ClientError):
    """The client's deadline passed before the job finished (the job is cancelled if asked)."""


class Interrupted(ClientError):
    """The client was interrupted (Ctrl-C) before sending or while waiting."""
