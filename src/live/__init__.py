"""Live transcription: the streaming policy and session state, with no transport in it.

``session`` (``LiveSession``: audio in, turns and words out, decodes asked of the caller),
``turns`` (server VAD turn detection), ``vad`` (Silero scored incrementally), ``agreement``
(LocalAgreement-2), ``pcm`` (raw client audio to 16 kHz), ``buffer``, ``events`` (what a session
emits) and ``settings`` (per-process limits). The WebSocket door is ``src/server/realtime.py``.
"""
