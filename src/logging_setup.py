"""The worker's log configuration: its own records, and a RunPod SDK that cannot leak payloads.

Two sources write logs in a worker process:

* Python ``logging`` (the worker, faster-whisper, ffmpeg-python...). The worker's own modules
  never log transcript text, audio or URL query strings; :class:`RedactingFilter` is a second
  line of defence on the root handler for what a third-party library might log: it cuts URL
  query strings and userinfo, and long base64 runs, out of every formatted message.
* The RunPod SDK's ``RunPodLogger``, which prints to stdout by itself. At ``DEBUG`` (its default
  when ``RUNPOD_LOG_LEVEL`` is unset) it prints every job's input and whole output
  (``rp_job.run_job``: "Handler output: ...", "run_job return: ...", ``rp_local``: "Retrieved
  local job: ..."), i.e. transcripts and base64 audio. :func:`quiet_runpod_sdk` drops the SDK's
  ``DEBUG`` and ``TRACE`` messages whatever ``RUNPOD_LOG_LEVEL``, ``RUNPOD_DEBUG_LEVEL`` or
  ``--rp_log_level`` say; ``INFO`` and above (job started/finished, errors) still print.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

#: the SDK levels that carry job payloads; never printed by a worker
SDK_SUPPRESSED_LEVELS = frozenset({"TRACE", "DEBUG"})

_URL_SECRET = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/?#@]*@)?(?P<rest>[^\s?#]*)[?#][^\s'\"<>]*"
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#@]*@")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{256,}")


def redact_text(text: str) -> str:
    """``text`` without URL query strings, fragments, userinfo or long base64 runs."""
    text = _URL_SECRET.sub(r"\g<scheme>\g<rest>?<redacted>", text)
    text = _URL_USERINFO.sub(r"\g<scheme><redacted>@", text)
    return _BASE64_RUN.sub(lambda m: f"<{len(m.group())} base64 characters>", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message through :func:`redact_text` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Root logging to stderr at ``level`` (a level name), every handler redacting."""
    logging.basicConfig(
        level=level.strip().upper() or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def quiet_runpod_sdk() -> None:
    """Make the RunPod SDK's logger drop its ``DEBUG``/``TRACE`` messages for good.

    ``RunPodLogger`` is a singleton whose ``debug``/``trace`` methods all go through
    ``self.log``; the instance's ``log`` is replaced by one that returns early for those levels,
    so a later ``set_level("DEBUG")`` (``--rp_log_level``) cannot bring them back. Idempotent.
    """
    from runpod.serverless.modules.rp_logger import RunPodLogger

    sdk = RunPodLogger()
    if getattr(sdk, "_worker_quieted", False):
        return
    sdk_log = RunPodLogger.log

    def log(message: Any, message_level: str = "INFO", job_id: str | None = None) -> None:
        if str(message_level).upper() in SDK_SUPPRESSED_LEVELS:
            return
        sdk_log(sdk, message, message_level, job_id)

    sdk.log = log
    if sdk.level in SDK_SUPPRESSED_LEVELS:
        sdk.level = "INFO"
    sdk._worker_quieted = True
