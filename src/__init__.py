"""whisper-worker: a RunPod serverless worker for Whisper speech-to-text."""
