"""HTTP mode: an OpenAI-compatible speech API, the native job JSON, /ping, and the web page."""
