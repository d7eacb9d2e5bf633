"""The one form of a URL allowed in the client's logs and messages (as the worker logs them)."""

from __future__ import annotations

from urllib.parse import urlsplit

_MAX_LOGGED_PATH = 200


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: the URL without userinfo, query string or fragment.

    A presigned link's signature lives in its query string, and a key can sit in its userinfo:
    neither may reach a log. A long path is cut short; a URL that does not parse is replaced by
    a placeholder rather than echoed.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    path = parts.path
    if len(path) > _MAX_LOGGED_PATH:
        path = path[:_MAX_LOGGED_PATH] + "..."
    return f"{parts.scheme.lower()}://{netloc}{path}"
