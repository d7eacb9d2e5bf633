"""The audio source: guarded downloads from real local HTTP(S) servers, and base64.

Every server here listens on 127.0.0.x, which the address guard refuses; tests that need to get
through either set ``allow_private`` or trust one loopback address through ``Network``, the
same hook that swaps the resolver, so the guard's own code runs on every hop.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import ipaddress
import logging
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from src.audio.source import (
    Network,
    decode_base64,
    download_url,
    fetch_audio,
    is_public_address,
    redact_url,
)
from src.config import DownloadLimits
from src.errors import BlockedAddress, DecodeError, DownloadError, InvalidRequest, TooLarge
from src.request import AudioInput
from tests.conftest import BENCHMARK_DIR

CLIP = BENCHMARK_DIR / "en_one_two_three.wav"
SECRET = "s3cr3tSIG"
SECRET_QUERY = f"?X-Amz-Signature={SECRET}&X-Amz-Credential=AKIDEXAMPLE"

OPEN = DownloadLimits(allow_private=True, connect_timeout=2.0, read_timeout=2.0)
GUARDED = DownloadLimits(allow_private=False, connect_timeout=2.0, read_timeout=2.0)

# ------------------------------------------------------------------------------------------
# local servers

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.stop = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hang up on purpose in these tests (caps, timeouts); that is not an error."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LocalServer:
    httpd: _Server
    scheme: str = "http"
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def routes(self) -> dict[str, Route]:
        return self.httpd.routes

    @property
    def seen(self) -> list[Seen]:
        return self.httpd.seen

    @property
    def stop(self) -> threading.Event:
        return self.httpd.stop

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    started: list[LocalServer] = []

    def start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> LocalServer:
        httpd = _Server(host)
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        server = LocalServer(httpd, "https" if tls else "http")
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        server.threads.append(thread)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        for thread in server.threads:
            thread.join()


@pytest.fixture
def server(make_server: ServerFactory) -> LocalServer:
    srv = make_server()
    srv.routes["/clip.wav"] = send_body(CLIP.read_bytes())
    return srv


@pytest.fixture
def second_loopback(make_server: ServerFactory) -> LocalServer:
    """A server on 127.0.0.2, which ``TRUST_127_0_0_2`` lets through the guard."""
    try:
        srv = make_server("127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 is not routable here")
    srv.routes["/clip.wav"] = send_body(CLIP.read_bytes())
    return srv


TRUSTED = ipaddress.ip_address("127.0.0.2")
TRUST_127_0_0_2 = Network(is_allowed=lambda ip: ip == TRUSTED or is_public_address(ip))


def send_body(body: bytes, headers: dict[str, str] | None = None) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def bounce(h: BaseHTTPRequestHandler) -> None:
    """Redirect to the URL in the ``to`` query parameter."""
    redirect(parse_qs(urlsplit(h.path).query)["to"][0])(h)


def undeclared(size: int) -> Route:
    """A body with no Content-Length, ended by closing the connection."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        block = b"\0" * 65536
        for _ in range(size // len(block) + 1):
            h.wfile.write(block)

    return route


def chunked(size: int) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block = b"\0" * 65536
        for _ in range(size // len(block) + 1):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        h.wfile.write(b"0\r\n\r\n")

    return route


def stall(after: bytes, declared: int, server: LocalServer) -> Route:
    """Send the head and ``after``, then nothing until the test ends."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.wfile.write(after)
        server.stop.wait(10)

    return route


def download(url: str, tmp_path: Path, limits: DownloadLimits = OPEN, **kw: Any) -> Path:
    return download_url(url, tmp_path, limits, **kw)


def fail(url: str, tmp_path: Path, limits: DownloadLimits = OPEN, **kw: Any) -> DownloadError:
    with pytest.raises(DownloadError) as info:
        download_url(url, tmp_path, limits, **kw)
    assert info.value.args[0].startswith("audio.url: ")
    return info.value


# ------------------------------------------------------------------------------------------
# redact_url and the address policy


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://b.s3.amazonaws.com/a/x.wav" + SECRET_QUERY, "https://b.s3.amazonaws.com/a/x.wav"),
        ("http://user:pw@Example.COM:8080/p#frag", "http://example.com:8080/p"),
        ("https://[2001:db8::1]:8443/a?b=c", "https://[2001:db8::1]:8443/a"),
        ("HTTP://host", "http://host"),
        ("http://host:99999/x?sig=1", "<unparseable URL>"),
    ],
)
def test_redact_url_keeps_scheme_host_port_and_path_only(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_shortens_a_long_path() -> None:
    redacted = redact_url("https://h/" + "a" * 5000 + "?q=1")
    assert len(redacted) < 300
    assert redacted.endswith("...")


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2002:5db8:d822::1",  # 6to4 of a public address
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible (deprecated)
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


# ------------------------------------------------------------------------------------------
# the guard


def test_download_writes_the_exact_bytes_into_dest_dir(server: LocalServer, tmp_path: Path) -> None:
    path = download(server.url("/clip.wav"), tmp_path)
    assert path.parent == tmp_path
    assert path.read_bytes() == CLIP.read_bytes()
    (request,) = server.seen
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"


def test_the_same_url_is_refused_when_private_addresses_are_not_allowed(
    server: LocalServer, tmp_path: Path
) -> None:
    with pytest.raises(BlockedAddress, match=r"^audio\.url: .*private"):
        download(server.url("/clip.wav"), tmp_path, GUARDED)
    assert server.seen == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/a.wav",
        "http://10.0.0.1/a.wav",
        "http://192.168.0.10/a.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/a.wav",
        "http://[::ffff:127.0.0.1]/a.wav",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[fe80::1%25lo]/a.wav",
        "http://0.0.0.0:8080/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f000001/",
        "http://127.1/",
        "https://[fd00::1]/a.wav",
    ],
)
def test_literal_internal_addresses_are_refused_before_connecting(url: str, tmp_path: Path) -> None:
    with pytest.raises(BlockedAddress):
        download(url, tmp_path, GUARDED)


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], list[Any]]:
    def resolve(host: str, port: int) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    "addresses",
    [["10.20.30.40"], ["93.184.216.34", "10.20.30.40"], ["2606:4700::1", "::1"]],
)
def test_a_host_name_resolving_to_any_internal_address_is_refused(
    addresses: list[str], tmp_path: Path
) -> None:
    network = Network(resolve=fake_dns({"files.example.com": addresses}))
    with pytest.raises(BlockedAddress):
        download("https://files.example.com/a.wav", tmp_path, GUARDED, network=network)


def test_the_checked_address_is_connected_to_with_the_original_host_name(
    server: LocalServer, tmp_path: Path
) -> None:
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[Any]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    # "audio.test" exists in no DNS: the download works only by connecting to the resolved address
    path = download(
        server.url("/clip.wav", host="audio.test"), tmp_path, network=Network(resolve=resolve)
    )
    assert path.read_bytes() == CLIP.read_bytes()
    assert lookups == ["audio.test"]
    assert server.seen[0].headers["host"] == f"audio.test:{server.port}"


def test_a_host_that_does_not_resolve_is_a_download_error(tmp_path: Path) -> None:
    error = fail("https://nowhere.example/a.wav", tmp_path, network=Network(resolve=fake_dns({})))
    assert not isinstance(error, BlockedAddress)
    assert "could not resolve" in str(error)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/clip.wav",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]:{port}/clip.wav",
        "http://[::ffff:127.0.0.1]:{port}/clip.wav",
        "http://localhost:{port}/clip.wav",
    ],
)
def test_a_redirect_into_the_internal_network_is_refused(
    target: str, second_loopback: LocalServer, server: LocalServer, tmp_path: Path
) -> None:
    second_loopback.routes["/go"] = redirect(target.format(port=server.port))
    with pytest.raises(BlockedAddress, match="redirect 1 to"):
        download(second_loopback.url("/go"), tmp_path, GUARDED, network=TRUST_127_0_0_2)
    assert len(second_loopback.seen) == 1
    assert server.seen == []


def test_a_redirect_to_an_allowed_address_is_followed(
    second_loopback: LocalServer, tmp_path: Path
) -> None:
    second_loopback.routes["/go"] = redirect("/clip.wav", status=301)
    path = download(second_loopback.url("/go"), tmp_path, GUARDED, network=TRUST_127_0_0_2)
    assert path.read_bytes() == CLIP.read_bytes()
    assert [s.path for s in second_loopback.seen] == ["/go", "/clip.wav"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.wav", "gopher://x/"])
def test_schemes_other_than_http_are_refused(url: str, tmp_path: Path) -> None:
    error = fail(url, tmp_path)
    assert "only http:// and https://" in str(error)


def test_a_redirect_to_another_scheme_is_refused(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/go"] = redirect("file:///etc/passwd")
    error = fail(server.url("/go"), tmp_path)
    assert not isinstance(error, BlockedAddress)
    assert "'file'" in str(error)


def test_credentials_in_the_url_are_refused(server: LocalServer, tmp_path: Path) -> None:
    error = fail(server.url("/clip.wav").replace("://", "://me:hunter2@"), tmp_path)
    assert "credentials" in str(error)
    assert "hunter2" not in str(error)
    assert server.seen == []


@pytest.mark.parametrize("redirects", [3, 4])
def test_redirects_are_limited(redirects: int, server: LocalServer, tmp_path: Path) -> None:
    for i in range(redirects, 0, -1):
        server.routes[f"/r{i}"] = redirect(f"/r{i - 1}" if i > 1 else "/clip.wav", status=307)
    limits = DownloadLimits(allow_private=True, max_redirects=3)
    if redirects <= limits.max_redirects:
        assert download(server.url(f"/r{redirects}"), tmp_path, limits).stat().st_size > 0
    else:
        error = fail(server.url(f"/r{redirects}"), tmp_path, limits)
        assert "redirected more than 3 times" in str(error)
        assert len(server.seen) == 4


# ------------------------------------------------------------------------------------------
# statuses, sizes and timeouts


@pytest.mark.parametrize("status", [404, 403, 500])
def test_an_error_status_is_reported_with_its_code(
    status: int, server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/x"] = lambda h: h.send_error(status)
    error = fail(server.url("/x"), tmp_path)
    assert f"HTTP {status}" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = fail(f"http://127.0.0.1:{port}/a.wav", tmp_path)
    assert "connection refused" in str(error)


def test_a_declared_size_over_the_cap_is_refused_before_reading(
    server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/huge"] = stall(b"x" * 100, declared=10**12, server=server)
    started = time.monotonic()
    error = fail(server.url("/huge"), tmp_path)
    assert time.monotonic() - started < 1.0
    assert "over the limit" in str(error)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("route", [undeclared, chunked], ids=["close-delimited", "chunked"])
def test_a_body_over_the_cap_is_stopped_while_streaming(
    route: Callable[[int], Route], server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/big"] = route(4 * 1024 * 1024)
    limits = DownloadLimits(allow_private=True, max_bytes=1024 * 1024)
    error = fail(server.url("/big"), tmp_path, limits)
    assert "larger than the limit of 1048576 bytes" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_a_body_shorter_than_declared_is_refused(server: LocalServer, tmp_path: Path) -> None:
    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "5000")
        h.end_headers()
        h.wfile.write(b"x" * 1000)
        h.close_connection = True

    server.routes["/short"] = short
    error = fail(server.url("/short"), tmp_path)
    assert "closed before the whole body arrived" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_a_compressed_body_is_saved_as_sent_not_inflated(
    server: LocalServer, tmp_path: Path
) -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    server.routes["/bomb"] = send_body(bomb, {"Content-Encoding": "gzip"})
    limits = DownloadLimits(allow_private=True, max_bytes=1024 * 1024)
    assert download(server.url("/bomb"), tmp_path, limits).read_bytes() == bomb


def test_an_empty_body_is_a_decode_error(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/empty"] = send_body(b"")
    with pytest.raises(DecodeError, match=r"^audio\.url: .*empty"):
        download(server.url("/empty"), tmp_path)
    assert list(tmp_path.iterdir()) == []


FAST = DownloadLimits(allow_private=True, connect_timeout=2.0, read_timeout=0.5)


def test_a_stalled_body_hits_the_read_timeout(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/stall"] = stall(b"x" * 1000, declared=100_000, server=server)
    started = time.monotonic()
    error = fail(server.url("/stall"), tmp_path, FAST)
    assert time.monotonic() - started < 3.0
    assert "no data for 0.5 s" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_never_answers_hits_the_read_timeout(
    server: LocalServer, tmp_path: Path
) -> None:
    def silent(h: BaseHTTPRequestHandler) -> None:
        server.stop.wait(10)

    server.routes["/silent"] = silent
    error = fail(server.url("/silent"), tmp_path, FAST)
    assert "did not answer within 0.5 s" in str(error)


def test_a_slow_drip_hits_the_overall_deadline(server: LocalServer, tmp_path: Path) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10000000")
        h.end_headers()
        while not server.stop.wait(0.05):
            h.wfile.write(b"x" * 100)

    server.routes["/drip"] = drip
    started = time.monotonic()
    error = fail(server.url("/drip"), tmp_path, FAST, total_timeout=0.6)
    assert time.monotonic() - started < 3.0
    assert "took longer than the time allowed" in str(error)


# ------------------------------------------------------------------------------------------
# secrets stay out of messages, tracebacks and logs


def test_query_strings_never_reach_errors_or_logs(
    server: LocalServer,
    second_loopback: LocalServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.routes["/clip.wav"] = send_body(CLIP.read_bytes())
    server.routes["/hop"] = redirect("/missing" + SECRET_QUERY)
    server.routes["/stall"] = stall(b"x", declared=10, server=server)
    second_loopback.routes["/go"] = bounce
    internal = f"http://127.0.0.1:{server.port}/clip.wav{SECRET_QUERY}"
    failures = [
        (server.url("/missing" + SECRET_QUERY), OPEN),
        (server.url("/hop" + SECRET_QUERY), OPEN),
        (server.url("/stall" + SECRET_QUERY), FAST),
        ("http://169.254.169.254/latest/" + SECRET_QUERY, GUARDED),
        (second_loopback.url("/go?to=" + internal.replace("&", "%26")), GUARDED),
    ]
    texts = []
    for url, limits in failures:
        error = fail(url, tmp_path, limits, network=TRUST_127_0_0_2)
        texts.append("".join(traceback.format_exception(error)))
    download(server.url("/clip.wav" + SECRET_QUERY), tmp_path)
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert any("downloaded" in r.getMessage() for r in caplog.records)
    for text in [*texts, caplog.text]:
        assert SECRET not in text
        assert "AKIDEXAMPLE" not in text


# ------------------------------------------------------------------------------------------
# https: the certificate is checked against the URL's host name, not the address


@dataclass(frozen=True)
class Pki:
    ca_file: str
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a server certificate for ``audio.test``."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audio.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("audio.test")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = folder / "server.pem"
    cert_file.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file)
    return Pki(str(ca_file), context)


@pytest.fixture
def tls_server(make_server: ServerFactory, pki: Pki) -> LocalServer:
    srv = make_server(tls=pki.server_context)
    srv.routes["/clip.wav"] = send_body(CLIP.read_bytes())
    return srv


LOOPBACK_DNS = fake_dns({"audio.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})


def test_https_verifies_the_certificate_against_the_url_host_name(
    tls_server: LocalServer, pki: Pki, tmp_path: Path
) -> None:
    network = Network(resolve=LOOPBACK_DNS, ca_file=pki.ca_file)
    path = download(tls_server.url("/clip.wav", host="audio.test"), tmp_path, network=network)
    assert path.read_bytes() == CLIP.read_bytes()
    assert tls_server.seen[0].headers["host"] == f"audio.test:{tls_server.port}"


@pytest.mark.parametrize(("host", "trust_test_ca"), [("other.test", True), ("audio.test", False)])
def test_https_refuses_a_certificate_it_cannot_verify(
    host: str, trust_test_ca: bool, tls_server: LocalServer, pki: Pki, tmp_path: Path
) -> None:
    network = Network(resolve=LOOPBACK_DNS, ca_file=pki.ca_file if trust_test_ca else None)
    error = fail(tls_server.url("/clip.wav", host=host), tmp_path, network=network)
    assert "certificate" in str(error)
    assert tls_server.seen == []


# ------------------------------------------------------------------------------------------
# base64


AUDIO = CLIP.read_bytes()[:3000]


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(AUDIO).decode(),
        "data:audio/wav;base64," + base64.b64encode(AUDIO).decode(),
        "  DATA:audio/x-wav;name=a.wav;BASE64," + base64.b64encode(AUDIO).decode(),
        base64.urlsafe_b64encode(AUDIO).decode(),
        base64.urlsafe_b64encode(AUDIO).decode().rstrip("="),
        base64.encodebytes(AUDIO).decode(),  # MIME style: a newline every 76 characters
        "\n  ".join(base64.b64encode(AUDIO).decode()[i : i + 60] for i in range(0, 4000, 60)),
    ],
    ids=["plain", "data-url", "data-url-params", "urlsafe", "unpadded", "mime-lines", "indented"],
)
def test_base64_forms_decode_to_the_same_bytes(encoded: str, tmp_path: Path) -> None:
    path = decode_base64(encoded, tmp_path, max_bytes=10_000)
    assert path.parent == tmp_path
    assert path.read_bytes() == AUDIO


def test_the_urlsafe_alphabet_is_really_exercised() -> None:
    encoded = base64.urlsafe_b64encode(AUDIO).decode()
    assert "-" in encoded or "_" in encoded


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64!",
        "QUJD$",
        "QUJDR",
        "====",
        "QU=JD",
        "data:audio/wav,UklGRg==",
        "data:audio/wav",
        "QUJDé",
    ],
)
def test_malformed_base64_is_an_invalid_request(encoded: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"^audio\.base64: "):
        decode_base64(encoded, tmp_path, max_bytes=10_000)
    assert list(tmp_path.iterdir()) == []


def test_base64_over_the_cap_is_too_large(tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="over the limit of 2999 bytes"):
        decode_base64(base64.b64encode(AUDIO).decode(), tmp_path, max_bytes=2999)
    assert decode_base64(base64.b64encode(AUDIO).decode(), tmp_path, max_bytes=3000).is_file()


@pytest.mark.parametrize("encoded", ["data:audio/wav;base64,", " \n ", "\r\n\t"])
def test_base64_that_decodes_to_nothing_is_a_decode_error(encoded: str, tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"^audio\.base64: holds no audio"):
        decode_base64(encoded, tmp_path, max_bytes=10_000)


# ------------------------------------------------------------------------------------------
# fetch_audio picks the source


def test_fetch_audio_downloads_a_url(server: LocalServer, tmp_path: Path) -> None:
    path = fetch_audio(AudioInput(url=server.url("/clip.wav")), tmp_path, OPEN)
    assert path.read_bytes() == CLIP.read_bytes()


def test_fetch_audio_decodes_base64(tmp_path: Path) -> None:
    audio = AudioInput(base64=base64.b64encode(AUDIO).decode())
    assert fetch_audio(audio, tmp_path, OPEN).read_bytes() == AUDIO


def test_fetch_audio_guards_urls_by_default(tmp_path: Path) -> None:
    with pytest.raises(BlockedAddress):
        fetch_audio(AudioInput(url="http://169.254.169.254/"), tmp_path, DownloadLimits())
