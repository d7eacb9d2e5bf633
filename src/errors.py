"""The worker's exception tree: one module, every error a caller can see.

``handler.py`` alone turns these into RunPod's ``{"error": "..."}``; the message of each is
written for the caller (which field was wrong and what was expected) and never carries a
traceback, audio, transcript text or a URL's query string.

    WorkerError                    base of everything the worker raises on purpose
    ├── InvalidRequest             the job's input is malformed (field named in the message)
    │   └── UnsupportedOption      a valid option the loaded model cannot honour
    ├── AudioError                 the audio could not be obtained or decoded
    │   ├── TooLarge               over a size or duration cap (HTTP: 413)
    │   ├── DownloadError          the URL could not be fetched (status, timeout)
    │   │   ├── BlockedAddress     the URL (or a redirect) points at a forbidden address
    │   │   └── DownloadTooLarge   the body is over the byte cap (also a ``TooLarge``)
    │   └── DecodeError            the bytes are not decodable audio (empty, corrupt, no stream)
    └── ModelError                 the model failed while transcribing or could not be loaded
        └── OutOfMemory            the accelerator (or host) ran out of memory during a decode

``BlockedAddress`` subclasses ``DownloadError`` (and so ``AudioError``) because, for the caller,
a refused address is one more reason a URL cannot be fetched; tests and logs can still tell it
apart.

``OutOfMemory`` is raised by an engine when its runtime reports exhausted memory; the processor
retries such a job once with lighter settings (beam size 1) before reporting it.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every error the worker raises on purpose."""

    #: short machine-readable kind, returned beside the message
    kind = "worker_error"


class InvalidRequest(WorkerError, ValueError):
    """The job input is malformed: unknown key, wrong type, out-of-range value."""

    kind = "invalid_request"


class UnsupportedOption(InvalidRequest):
    """A well-formed option the loaded model cannot honour (e.g. translate on ``tiny.en``)."""

    kind = "unsupported_option"


class AudioError(WorkerError):
    """The audio could not be obtained or decoded."""

    kind = "audio_error"


class TooLarge(AudioError):
    """The audio is over one of the worker's caps: bytes (``MAX_DOWNLOAD_BYTES``) or seconds
    (``MAX_AUDIO_SECONDS``)."""

    kind = "too_large"


class DownloadError(AudioError):
    """A URL could not be fetched: bad status, timeout, too large, bad scheme."""

    kind = "download_error"


class BlockedAddress(DownloadError):
    """The URL or one of its redirects resolves to a private, loopback or link-local address."""

    kind = "blocked_address"


class DownloadTooLarge(DownloadError, TooLarge):
    """A download whose body is (or declares itself) over the byte cap."""

    kind = "too_large"


class DecodeError(AudioError):
    """The bytes are not decodable audio: empty, corrupt, or without an audio stream."""

    kind = "decode_error"


class ModelError(WorkerError):
    """The model could not be loaded or failed while transcribing."""

    kind = "model_error"


class OutOfMemory(ModelError):
    """The engine ran out of (accelerator) memory while transcribing; retried once, lighter."""

    kind = "out_of_memory"


#: how the runtimes word it: CTranslate2 ("CUDA failed with error out of memory"), torch
#: ("CUDA out of memory. Tried to allocate ..."), cuBLAS/cuDNN ("CUBLAS_STATUS_ALLOC_FAILED")
_OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error`` (or an exception it was raised from) is an out-of-memory failure.

    torch raises ``torch.cuda.OutOfMemoryError`` (a ``RuntimeError``); CTranslate2 raises a
    plain ``RuntimeError`` whose message says "out of memory". The type is matched by name so
    that torch need not be imported to ask.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OutOfMemory) or type(error).__name__ == "OutOfMemoryError":
            return True
        if isinstance(error, RuntimeError) and any(
            marker in str(error).lower() for marker in _OOM_MARKERS
        ):
            return True
        error = error.__cause__
    return False


def model_error(error: Exception, what: str = "transcription") -> WorkerError:
    """Our error for a runtime's failure (CTranslate2, torch): ``OutOfMemory`` when it ran out
    of memory, else ``ModelError``; the message names only the exception's type (its text can
    quote input). Our own errors pass through unchanged."""
    if isinstance(error, WorkerError):
        return error
    if is_out_of_memory(error):
        return OutOfMemory(f"{what} failed: out of memory ({type(error).__name__})")
    return ModelError(f"{what} failed: {type(error).__name__}")
