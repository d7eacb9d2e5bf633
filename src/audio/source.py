"""Getting a job's audio bytes into its working directory: a guarded URL download, or base64.

A URL comes from whoever submits the job, so the download is treated as hostile:

* only ``http`` and ``https``; credentials in the URL are refused;
* the host is resolved once per hop and *every* address it resolves to must be public (not
  private, loopback, link-local such as the 169.254.169.254 metadata service, multicast,
  reserved, or an IPv6 form embedding one of those); the socket is then opened to that checked
  address, never to a second lookup, so DNS rebinding cannot swap in an internal address;
* redirects are followed by hand, at most ``max_redirects``, and each hop is checked again;
* the body is streamed to disk under a byte cap, refused early when ``Content-Length`` already
  says too much, with connect and per-read timeouts, an overall deadline, and a minimum pace
  (``MIN_RATE`` bytes a second on average once ``RATE_GRACE`` seconds have passed): a server
  that drips a byte now and then is cut off within seconds, not at the overall deadline;
* a shutdown (:func:`abort_downloads`) ends every download under way at once, so a stalled
  server never keeps the process, or a job's temp directory, alive;
* ``Accept-Encoding: identity`` is sent and the body is written as received, so a compressed
  body cannot expand past the cap.

URLs reach logs and error messages only through :func:`redact_url`: presigned URLs carry their
secret in the query string.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urljoin, urlsplit

import certifi

from src.config import DownloadLimits
from src.errors import (
    BlockedAddress,
    DecodeError,
    DownloadError,
    DownloadTooLarge,
    InvalidRequest,
    TooLarge,
)
from src.request import AudioInput

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; raises ``OSError`` (e.g. ``socket.gaierror``) on failure
Resolver = Callable[[str, int], Sequence[IPAddress]]
#: decides whether one resolved address may be connected to
AddressCheck = Callable[[IPAddress], bool]

#: the default overall wall-clock limit of one download (``DOWNLOAD_TOTAL_TIMEOUT``)
MAX_DOWNLOAD_SECONDS = DownloadLimits.total_timeout
#: the least average pace of a download's body, in bytes a second, counted from the request
#: once ``RATE_GRACE`` seconds have passed (1 GiB at this pace would take 9 hours: only a
#: server that drips falls behind it)
MIN_RATE = 32 * 1024
RATE_GRACE = 10.0

_FIELD_URL = "audio.url"
_FIELD_BASE64 = "audio.base64"
_SCHEMES = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 256 * 1024
_USER_AGENT = "whisper-worker/0.1"
_MAX_LOGGED_PATH = 200


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is an ordinary internet address a download may connect to.

    ``is_global`` is the base; multicast and reserved ranges are refused on top of it (Python
    counts multicast as global), and IPv6 addresses that carry an IPv4 address (mapped, 6to4,
    NAT64 well-known prefix, Teredo) are judged by the IPv4 address they lead to.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local
    )


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to, in the system's preferred order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


@dataclass(frozen=True)
class Network:
    """How a download reaches the outside world; tests replace parts of it.

    ``resolve`` looks the host up, ``is_allowed`` judges each address (skipped when
    ``DownloadLimits.allow_private`` is set), ``ca_file`` is the PEM bundle of trusted
    certificate authorities (``None``: certifi's, as ``requests`` uses).
    """

    resolve: Resolver = resolve_host
    is_allowed: AddressCheck = is_public_address
    ca_file: str | None = None


DEFAULT_NETWORK = Network()


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: the URL without userinfo, query string or fragment.

    This is the only form of a URL allowed in logs and error messages. A long path is cut
    short; a URL that does not parse is replaced by a placeholder rather than echoed.
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


@dataclass(frozen=True)
class UploadedAudio:
    """Audio a door has already received as a file (an HTTP upload): the door wrote it under
    its own byte cap into a directory it removes afterwards. Never built from a job's JSON, so
    no request can name a path on the worker."""

    path: Path


#: where a job's audio comes from: the job's URL or base64, or a door's upload
AudioSource = AudioInput | UploadedAudio


def fetch_audio(audio: AudioSource, workdir: Path, limits: DownloadLimits) -> Path:
    """Write the job's audio into ``workdir`` and return the file's path (an upload is used
    where it lies, after its size is checked against the cap).

    The caller creates and removes ``workdir``, so every file made here goes with it.
    """
    if isinstance(audio, UploadedAudio):
        size = audio.path.stat().st_size
        if size > limits.max_bytes:
            raise TooLarge(
                f"file: the upload is {size} bytes, over the limit of {limits.max_bytes} bytes"
            )
        if size == 0:
            raise DecodeError("file: the upload holds no audio (0 bytes)")
        return audio.path
    if audio.url is not None:
        return download_url(audio.url, workdir, limits)
    if audio.base64 is not None:
        return decode_base64(audio.base64, workdir, limits.max_bytes)
    raise InvalidRequest("audio: give exactly one of 'url' or 'base64'")


# --------------------------------------------------------------------------------------------
# URL download


class _Downloads:
    """The sockets of the downloads under way in this process, so that a shutdown can end them
    all at once (``shutdown`` wakes a thread blocked reading from one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.aborted = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.aborted:
                sock.close()
                raise DownloadError(f"{_FIELD_URL}: the worker is shutting down")
            self._sockets.add(sock)

    def discard(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def abort(self) -> int:
        with self._lock:
            self.aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(sockets)


_downloads = _Downloads()


def resume_downloads() -> None:
    """Allow downloads again after :func:`abort_downloads` (a server started anew in the same
    process, as tests do)."""
    _downloads.aborted = False


def abort_downloads() -> int:
    """End every download under way (each raises ``DownloadError``) and refuse new ones: for a
    process that is shutting down. Returns how many were under way."""
    count = _downloads.abort()
    if count:
        logger.info("shutdown: %d download(s) under way ended", count)
    return count


@dataclass(frozen=True)
class _Target:
    """One hop's URL, parsed and checked for scheme, host and port."""

    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, no brackets
    port: int
    host_header: str
    request_target: str  # path and query, percent-encoded
    redacted: str


def download_url(
    url: str,
    dest_dir: Path,
    limits: DownloadLimits,
    *,
    network: Network = DEFAULT_NETWORK,
    total_timeout: float | None = None,
) -> Path:
    """Download ``url`` into a new file in ``dest_dir`` under the guards in the module docstring.

    Raises ``BlockedAddress`` for a refused address (of the URL or a redirect) and
    ``DownloadError`` for every other failure; ``DecodeError`` for an empty body.
    ``total_timeout`` overrides ``limits.total_timeout``.
    """
    started = time.monotonic()
    deadline = started + (limits.total_timeout if total_timeout is None else total_timeout)
    current = url
    first = redact_url(url)
    for hop in range(limits.max_redirects + 1):
        target = _parse_target(current, hop)
        addresses = _allowed_addresses(target, hop, limits, network)
        conn = _connect(target, addresses, limits, network)
        pace = _Pace(started, deadline, limits)
        sock = conn.sock
        try:
            _downloads.add(sock)
            pace.arm(sock, 0)
            with closing(conn), closing(_send(conn, target, limits)) as response:
                if response.status in _REDIRECTS:
                    current = _redirect_location(response, current, target)
                    logger.debug(
                        "redirect %d: %s -> %s", hop + 1, target.redacted, redact_url(current)
                    )
                    continue
                declared = _check_response(response, target, limits)
                path, size = _save_body(response, dest_dir, target, pace, sock, declared)
        finally:
            _downloads.discard(sock)
            conn.close()
        logger.info(
            "downloaded %s: %d bytes in %.2f s (%d redirects)",
            first,
            size,
            time.monotonic() - started,
            hop,
        )
        return path
    raise DownloadError(
        f"{_FIELD_URL}: {first} redirected more than {limits.max_redirects} times; "
        "give the final URL of the audio"
    )


def _parse_target(url: str, hop: int) -> _Target:
    """Split and check one URL; every message uses the redacted form."""
    where = _hop_label(hop, redact_url(url))
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise DownloadError(f"{_FIELD_URL}: {where} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise DownloadError(
            f"{_FIELD_URL}: {where} uses the scheme {scheme or 'none'!r}; "
            "only http:// and https:// URLs can be downloaded"
        )
    if parts.username is not None or parts.password is not None:
        raise DownloadError(
            f"{_FIELD_URL}: credentials in the URL (user:password@) are not supported; "
            "use a presigned URL instead"
        )
    if not parts.hostname:
        raise DownloadError(f"{_FIELD_URL}: {where} has no host name")
    host = _ascii_host(parts.hostname, where)
    port = port if port is not None else _SCHEMES[scheme]
    bracketed = f"[{host}]" if ":" in host else host
    explicit_port = parts.port is not None and parts.port != _SCHEMES[scheme]
    request_target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        request_target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return _Target(
        scheme=scheme,
        host=host,
        port=port,
        host_header=f"{bracketed}:{port}" if explicit_port else bracketed,
        request_target=request_target,
        redacted=redact_url(url),
    )


def _ascii_host(hostname: str, where: str) -> str:
    """An IP literal as is (an IPv6 zone's ``%25`` decoded), else the IDNA form of the name."""
    literal = _ip_literal(hostname.replace("%25", "%", 1))
    if literal is not None:
        return str(literal)
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise DownloadError(f"{_FIELD_URL}: {where} has an invalid host name") from None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _hop_label(hop: int, redacted: str) -> str:
    return redacted if hop == 0 else f"redirect {hop} to {redacted}"


def _allowed_addresses(
    target: _Target, hop: int, limits: DownloadLimits, network: Network
) -> Sequence[IPAddress]:
    """Resolve the host once and refuse it if any of its addresses is not allowed.

    An IP literal is judged as written; names go through ``network.resolve``, and every
    address they resolve to must pass, since any of them may be the one connected to.
    """
    where = _hop_label(hop, target.redacted)
    literal = _ip_literal(target.host)
    try:
        addresses = [literal] if literal is not None else network.resolve(target.host, target.port)
    except (OSError, ValueError):
        raise DownloadError(f"{_FIELD_URL}: could not resolve the host of {where}") from None
    if not addresses:
        raise DownloadError(f"{_FIELD_URL}: the host of {where} has no addresses")
    if limits.allow_private:
        return addresses
    refused = [ip for ip in addresses if not network.is_allowed(ip)]
    if refused:
        logger.warning("refused %s: resolves to non-public %s", target.redacted, refused[0])
        raise BlockedAddress(
            f"{_FIELD_URL}: {where} points to a private, loopback, link-local or reserved "
            "address; only public internet addresses can be downloaded from"
        )
    return addresses


def _connect(
    target: _Target, addresses: Sequence[IPAddress], limits: DownloadLimits, network: Network
) -> http.client.HTTPConnection:
    """Open a connection to one of the checked addresses (in order), TLS-wrapped for https.

    The socket is made here, to an address that passed the check, and handed to
    ``http.client``, which then never resolves the name itself. TLS verifies the certificate
    against the URL's host name (also sent as SNI), not against the address.
    """
    sock = _open_socket(target, addresses, limits)
    sock.settimeout(limits.read_timeout)
    if target.scheme == "https":
        sock = _wrap_tls(sock, target, network)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=limits.read_timeout)
    conn.sock = sock
    return conn


def _open_socket(
    target: _Target, addresses: Sequence[IPAddress], limits: DownloadLimits
) -> socket.socket:
    last_error: OSError | None = None
    for ip in addresses:
        try:
            return socket.create_connection((str(ip), target.port), timeout=limits.connect_timeout)
        except OSError as e:
            last_error = e
    if isinstance(last_error, TimeoutError):
        reason = f"timed out after {limits.connect_timeout:g} s"
    elif isinstance(last_error, ConnectionRefusedError):
        reason = "connection refused"
    else:
        reason = _os_reason(last_error)
    raise DownloadError(
        f"{_FIELD_URL}: could not connect to {target.redacted} ({reason})"
    ) from last_error


def _wrap_tls(sock: socket.socket, target: _Target, network: Network) -> socket.socket:
    context = ssl.create_default_context(cafile=network.ca_file or certifi.where())
    try:
        return context.wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as e:
        sock.close()
        raise DownloadError(
            f"{_FIELD_URL}: the TLS certificate of {target.redacted} could not be verified "
            f"({e.verify_message})"
        ) from e
    except (ssl.SSLError, OSError) as e:
        sock.close()
        raise DownloadError(
            f"{_FIELD_URL}: the TLS handshake with {target.redacted} failed ({_os_reason(e)})"
        ) from e


def _send(
    conn: http.client.HTTPConnection, target: _Target, limits: DownloadLimits
) -> http.client.HTTPResponse:
    """GET the target and read the response head."""
    headers = {
        "Host": target.host_header,
        "User-Agent": _USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    try:
        conn.request("GET", target.request_target, headers=headers)
        return conn.getresponse()
    except TimeoutError as e:
        raise DownloadError(
            f"{_FIELD_URL}: {target.redacted} did not answer within {limits.read_timeout:g} s"
        ) from e
    except (http.client.HTTPException, OSError) as e:
        raise DownloadError(
            f"{_FIELD_URL}: the request to {target.redacted} failed ({_os_reason(e)})"
        ) from e


def _redirect_location(response: http.client.HTTPResponse, current: str, target: _Target) -> str:
    location = response.getheader("Location")
    if not location:
        raise DownloadError(
            f"{_FIELD_URL}: {target.redacted} answered HTTP {response.status} "
            "without a Location to redirect to"
        )
    return urljoin(current, location.strip())


def _check_response(
    response: http.client.HTTPResponse, target: _Target, limits: DownloadLimits
) -> int | None:
    """Refuse error statuses, and a body whose declared size is already over the cap.

    Returns the declared size (``None`` when the body is chunked or close-delimited).
    """
    if response.status >= 400:
        raise DownloadError(f"{_FIELD_URL}: {target.redacted} answered HTTP {response.status}")
    if not 200 <= response.status < 300:
        raise DownloadError(
            f"{_FIELD_URL}: {target.redacted} answered HTTP {response.status}; expected 200"
        )
    declared = _content_length(response)
    if declared is not None and declared > limits.max_bytes:
        raise DownloadTooLarge(
            f"{_FIELD_URL}: {target.redacted} is {declared} bytes, over the limit of "
            f"{limits.max_bytes} bytes"
        )
    return declared


def _content_length(response: http.client.HTTPResponse) -> int | None:
    raw = response.getheader("Content-Length")
    chunked = "chunked" in (response.getheader("Transfer-Encoding") or "").lower()
    if raw is None or chunked:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class _Pace:
    """When the next read of a download must return: the sooner of the read timeout, the
    overall deadline, and what the minimum average pace allows for the bytes received."""

    started: float
    deadline: float
    limits: DownloadLimits

    def due(self, received: int) -> tuple[float, str]:
        """The time by which more must arrive, and what is broken if it does not."""
        now = time.monotonic()
        candidates = [
            (now + self.limits.read_timeout, "stall"),
            (self.deadline, "total"),
            (self.started + RATE_GRACE + received / MIN_RATE, "rate"),
        ]
        return min(candidates)

    def arm(self, sock: socket.socket | None, received: int) -> str:
        """Set the socket's timeout for its next read; returns which limit that timeout is."""
        due, why = self.due(received)
        if sock is not None:
            sock.settimeout(max(due - time.monotonic(), 0.001))
        return why


def _save_body(
    response: http.client.HTTPResponse,
    dest_dir: Path,
    target: _Target,
    pace: _Pace,
    sock: socket.socket | None,
    declared: int | None,
) -> tuple[Path, int]:
    """Stream the body into a new file in ``dest_dir``; remove the file on any failure."""
    fd, name = tempfile.mkstemp(prefix="audio-", dir=dest_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            size = _copy_capped(response, out, target, pace, sock)
        if declared is not None and size < declared:
            raise DownloadError(
                f"{_FIELD_URL}: the connection to {target.redacted} closed before the whole "
                f"body arrived ({size} of {declared} bytes)"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink()
        raise DecodeError(f"{_FIELD_URL}: {target.redacted} returned an empty body")
    return path, size


def _copy_capped(
    response: http.client.HTTPResponse,
    out: BinaryIO,
    target: _Target,
    pace: _Pace,
    sock: socket.socket | None,
) -> int:
    """Copy the body to ``out`` until its end, the byte cap, the deadline or the pace.

    ``read1`` returns after one socket read, so the cap and the deadline are checked between
    small reads rather than after a whole large chunk has trickled in; each read's timeout is
    what the pace leaves (``_Pace``).
    """
    limits = pace.limits
    size = 0
    while True:
        why = pace.arm(sock, size)
        try:
            chunk = response.read1(_CHUNK)
        except TimeoutError as e:
            raise DownloadError(_timeout_message(why, target, limits, size)) from e
        except http.client.IncompleteRead as e:
            raise DownloadError(
                f"{_FIELD_URL}: the connection to {target.redacted} closed before the whole "
                f"body arrived ({size + len(e.partial)} bytes received)"
            ) from e
        except (http.client.HTTPException, OSError) as e:
            raise DownloadError(
                f"{_FIELD_URL}: the download of {target.redacted} failed ({_os_reason(e)})"
            ) from e
        if _downloads.aborted:
            raise DownloadError(f"{_FIELD_URL}: the worker is shutting down")
        if not chunk:
            return size
        size += len(chunk)
        if size > limits.max_bytes:
            raise DownloadTooLarge(
                f"{_FIELD_URL}: {target.redacted} is larger than the limit of "
                f"{limits.max_bytes} bytes"
            )
        if time.monotonic() > pace.deadline:
            raise DownloadError(
                f"{_FIELD_URL}: the download of {target.redacted} took longer than the time allowed"
            )
        out.write(chunk)


def _timeout_message(why: str, target: _Target, limits: DownloadLimits, size: int) -> str:
    if why == "rate":
        return (
            f"{_FIELD_URL}: the download of {target.redacted} was too slow ({size} bytes; at "
            f"least {MIN_RATE} bytes a second on average after the first {RATE_GRACE:g} s)"
        )
    if why == "total":
        return f"{_FIELD_URL}: the download of {target.redacted} took longer than the time allowed"
    return (
        f"{_FIELD_URL}: the download of {target.redacted} stalled: no data for "
        f"{limits.read_timeout:g} s"
    )


def _os_reason(error: BaseException | None) -> str:
    """A short reason for a network error that never includes a URL."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, http.client.HTTPException):
        return type(error).__name__
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    return type(error).__name__ if error is not None else "unknown error"


# --------------------------------------------------------------------------------------------
# base64


#: whitespace is dropped; the URL-safe alphabet is mapped onto the standard one
_BASE64_TABLE = str.maketrans(
    {"-": "+", "_": "/", " ": None, "\t": None, "\n": None, "\r": None, "\v": None, "\f": None}
)


def decode_base64(data: str, dest_dir: Path, max_bytes: int) -> Path:
    """Decode base64 audio (plain, or a ``data:...;base64,`` URL) into a new file in ``dest_dir``.

    Whitespace and line breaks are ignored, the URL-safe alphabet and missing padding are
    accepted. Anything else that is not base64 is an ``InvalidRequest``, as is a payload over
    ``max_bytes``; a payload that decodes to nothing is a ``DecodeError`` (there is no audio).
    """
    compact = _strip_data_prefix(data).translate(_BASE64_TABLE)
    compact += "=" * (-len(compact) % 4)
    estimated = len(compact) // 4 * 3 - compact[-2:].count("=")
    if estimated > max_bytes:
        raise TooLarge(_too_large(estimated, max_bytes))
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"{_FIELD_BASE64}: not valid base64; expected the audio file's bytes in standard or "
            "URL-safe base64, optionally as a data:audio/...;base64, URL"
        ) from None
    if not raw:
        raise DecodeError(f"{_FIELD_BASE64}: holds no audio (0 bytes after decoding)")
    if len(raw) > max_bytes:
        raise TooLarge(_too_large(len(raw), max_bytes))
    fd, name = tempfile.mkstemp(prefix="audio-", dir=dest_dir)
    with os.fdopen(fd, "wb") as out:
        out.write(raw)
    logger.info("decoded base64 audio: %d bytes", len(raw))
    return Path(name)


def _strip_data_prefix(data: str) -> str:
    """The payload of a ``data:`` URL, or ``data`` itself when it has no such prefix."""
    start = data[:256]
    lead = len(start) - len(start.lstrip())
    head = start[lead:]
    if head[:5].lower() != "data:":
        return data
    comma = head.find(",")
    if comma < 0:
        raise InvalidRequest(f"{_FIELD_BASE64}: a data: URL needs a ',' before its payload")
    params = head[5:comma].lower().split(";")
    if "base64" not in (p.strip() for p in params[1:]):
        raise InvalidRequest(
            f"{_FIELD_BASE64}: a data: URL must be base64-encoded (data:audio/...;base64,...)"
        )
    return data[lead + comma + 1 :]


def _too_large(size: int, max_bytes: int) -> str:
    return f"{_FIELD_BASE64}: the audio is {size} bytes, over the limit of {max_bytes} bytes"
