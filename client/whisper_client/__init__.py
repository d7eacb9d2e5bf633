"""The client side: send audio to a RunPod endpoint running this worker, and get transcripts back.

Its own package (``client/pyproject.toml``): it depends on the worker only through the JSON it
sends, and never imports the worker or the model (``local_endpoint.load_handler`` imports the
worker's ``handler`` by name, on demand, for ``serve``)::

    from whisper_client import RunPodClient, transcribe

    with RunPodClient("ENDPOINT_ID", os.environ["RUNPOD_API_KEY"]) as client:
        result = transcribe(client, "meeting.m4a", {"language": "en"})
        print(result.text)

Modules: ``api`` (the REST client), ``policy`` (retry, poll and execution policies), ``payload``
and ``probe`` (ffmpeg/ffprobe), ``transcribe`` (one job), ``batch`` with ``discover``, ``journal``,
``outputs`` and ``progress`` (a folder), ``local_endpoint`` and ``local_queue`` (RunPod's API on
this machine), ``options`` (the worker's options, checked against ``options.schema.json``),
``redact`` (URLs as logs may show them), ``cli`` (``whisper-client``).
"""

from whisper_client.api import EXPIRED, TERMINAL_STATES, JobStatus, RunPodClient
from whisper_client.batch import BatchConfig, BatchSummary, run_batch
from whisper_client.errors import ClientError
from whisper_client.policy import ExecutionPolicy, PollPolicy, RetryPolicy
from whisper_client.transcribe import Transcription, transcribe

__all__ = [
    "EXPIRED",
    "TERMINAL_STATES",
    "BatchConfig",
    "BatchSummary",
    "ClientError",
    "ExecutionPolicy",
    "JobStatus",
    "PollPolicy",
    "RetryPolicy",
    "RunPodClient",
    "Transcription",
    "run_batch",
    "transcribe",
]
