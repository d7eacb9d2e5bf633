"""The client side: send audio to a RunPod endpoint running this worker, and get transcripts back.

It never imports the model (``local_endpoint.load_handler`` does, on demand, for ``serve``)::

    from src.client import RunPodClient, transcribe

    with RunPodClient("ENDPOINT_ID", os.environ["RUNPOD_API_KEY"]) as client:
        result = transcribe(client, "meeting.m4a", {"language": "en"})
        print(result.text)

Modules: ``api`` (the REST client), ``policy`` (retry, poll and execution policies), ``payload``
and ``probe`` (ffmpeg/ffprobe), ``transcribe`` (one job), ``batch`` with ``discover``, ``journal``,
``outputs`` and ``progress`` (a folder), ``local_endpoint`` and ``local_queue`` (RunPod's API on
this machine), ``cli`` (``python -m src.client``).
"""

from src.client.api import EXPIRED, TERMINAL_STATES, JobStatus, RunPodClient
from src.client.batch import BatchConfig, BatchSummary, run_batch
from src.client.errors import ClientError
from src.client.policy import ExecutionPolicy, PollPolicy, RetryPolicy
from src.client.transcribe import Transcription, transcribe

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
