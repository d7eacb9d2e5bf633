"""Hostile download targets not covered by ``test_audio_source.py``: DNS rebinding across
hops, servers whose Content-Length is garbage, and the limits as the worker reads them from its
environment (``Settings.from_env`` -> ``fetch_audio``), each against real local servers."""

from __future__ import annotations

import gzip
import ipaddress
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tests.test_audio_source as source_tests
from src.audio.source import Network, fetch_audio, is_public_address
from src.config import Settings
from src.errors import BlockedAddress, DownloadError
from src.request import AudioInput
from src.service.processor import WhisperProcessor
from tests.test_audio_source import CLIP, GUARDED, LocalServer, download, redirect, send_body

# the local servers of test_audio_source.py, used here as fixtures
make_server = source_tests.make_server
server = source_tests.server
second_loopback = source_tests.second_loopback

TRUSTED = ipaddress.ip_address("127.0.0.2")


class RebindingDns:
    """Answers ``answers`` in turn for every name: public-looking first, internal later."""

    def __init__(self, *answers: str) -> None:
        self.answers = [ipaddress.ip_address(a) for a in answers]
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[Any]:
        self.lookups.append(host)
        return [self.answers[min(len(self.lookups), len(self.answers)) - 1]]


def trusting(dns: RebindingDns) -> Network:
    """127.0.0.2 stands for "a public address"; everything else is judged as usual."""
    return Network(resolve=dns, is_allowed=lambda ip: ip == TRUSTED or is_public_address(ip))


def test_a_name_that_rebinds_between_hops_is_checked_again(
    second_loopback: LocalServer, server: LocalServer, tmp_path: Path
) -> None:
    """Hop 1 resolves to the allowed address; the redirect back to the same name resolves to
    the internal one and is refused before any byte reaches the internal server."""
    second_loopback.routes["/go"] = redirect(f"http://rebind.test:{server.port}/clip.wav")
    dns = RebindingDns("127.0.0.2", "127.0.0.1")
    with pytest.raises(BlockedAddress, match="redirect 1 to"):
        download(
            f"http://rebind.test:{second_loopback.port}/go",
            tmp_path,
            GUARDED,
            network=trusting(dns),
        )
    assert dns.lookups == ["rebind.test", "rebind.test"]
    assert server.seen == []
    assert list(tmp_path.iterdir()) == []


def test_one_lookup_per_hop_so_the_checked_address_is_the_one_used(
    second_loopback: LocalServer, server: LocalServer, tmp_path: Path
) -> None:
    """A resolver that would answer the internal address on any second query is asked once."""
    dns = RebindingDns("127.0.0.2", "127.0.0.1")
    path = download(
        f"http://rebind.test:{second_loopback.port}/clip.wav",
        tmp_path,
        GUARDED,
        network=trusting(dns),
    )
    assert path.read_bytes() == CLIP.read_bytes()
    assert dns.lookups == ["rebind.test"]
    assert server.seen == []


def content_length(value: str, body_size: int) -> Any:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", value)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        block = b"\0" * 65536
        for _ in range(body_size // len(block)):
            h.wfile.write(block)

    return route


@pytest.mark.parametrize("declared", ["abc", "-1", "1e9", " ", "99999999999999999999999"])
def test_a_garbage_content_length_does_not_lift_the_cap(
    declared: str, server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/liar"] = content_length(declared, 4 * 1024 * 1024)
    settings = Settings.from_env(
        {"MAX_DOWNLOAD_BYTES": str(1024 * 1024), "ALLOW_PRIVATE_URLS": "1"}
    )
    with pytest.raises(DownloadError, match=r"^audio\.url: "):
        fetch_audio(AudioInput(url=server.url("/liar")), tmp_path, settings.download)
    assert list(tmp_path.iterdir()) == []


def limits_from_env(**env: str) -> Any:
    return Settings.from_env({"ALLOW_PRIVATE_URLS": "true", **env}).download


def test_download_total_timeout_bounds_a_slow_drip(server: LocalServer, tmp_path: Path) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10000000")
        h.end_headers()
        while not server.stop.wait(0.05):
            h.wfile.write(b"x" * 100)

    server.routes["/drip"] = drip
    limits = limits_from_env(DOWNLOAD_TOTAL_TIMEOUT="0.5", DOWNLOAD_READ_TIMEOUT="5")
    # the drip never trips the 5 s read timeout: only the total timeout can end it
    with pytest.raises(DownloadError, match="took longer than the time allowed"):
        fetch_audio(AudioInput(url=server.url("/drip")), tmp_path, limits)
    assert list(tmp_path.iterdir()) == []


def test_download_read_timeout_from_the_environment(server: LocalServer, tmp_path: Path) -> None:
    def silent(h: BaseHTTPRequestHandler) -> None:
        server.stop.wait(10)

    server.routes["/silent"] = silent
    limits = limits_from_env(DOWNLOAD_READ_TIMEOUT="0.3")
    with pytest.raises(DownloadError, match=r"did not answer within 0\.3 s"):
        fetch_audio(AudioInput(url=server.url("/silent")), tmp_path, limits)


def test_download_max_redirects_zero_refuses_any_redirect(
    server: LocalServer, tmp_path: Path
) -> None:
    server.routes["/go"] = redirect("/clip.wav")
    limits = limits_from_env(DOWNLOAD_MAX_REDIRECTS="0")
    with pytest.raises(DownloadError, match="redirected more than 0 times"):
        fetch_audio(AudioInput(url=server.url("/go")), tmp_path, limits)
    assert fetch_audio(AudioInput(url=server.url("/clip.wav")), tmp_path, limits).is_file()


def test_max_download_bytes_from_the_environment(server: LocalServer, tmp_path: Path) -> None:
    limits = limits_from_env(MAX_DOWNLOAD_BYTES="1000")
    with pytest.raises(DownloadError, match="over the limit of 1000 bytes"):
        fetch_audio(AudioInput(url=server.url("/clip.wav")), tmp_path, limits)


def test_a_gzip_bomb_is_a_clear_decode_error_for_the_whole_job(
    server: LocalServer, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 MiB of zeros gzipped to 64 KiB: saved as sent, then not audio; never inflated."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    server.routes["/bomb.wav"] = send_body(
        bomb, {"Content-Encoding": "gzip", "Content-Type": "audio/wav"}
    )
    settings = Settings.from_env(
        {"WHISPER_MODEL": "tiny.en", "WARM_UP": "false", "ALLOW_PRIVATE_URLS": "true"}
    )
    processor = WhisperProcessor(handler_module.get_processor().engine, settings)
    monkeypatch.setattr(handler_module, "get_processor", lambda: processor)
    out = handler_module.handler(
        {"id": "bomb", "input": {"audio": {"url": server.url("/bomb.wav")}}}
    )
    assert set(out) == {"error"}
    assert out["error"].startswith("audio: ") and "internal error" not in out["error"]


def test_a_drip_under_the_read_timeout_is_cut_off_by_the_pace(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 50 ms never trips the read timeout nor the total: the pace ends it."""
    import time

    import src.audio.source as source

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10000000")
        h.end_headers()
        while not server.stop.wait(0.05):
            h.wfile.write(b"x")
            h.wfile.flush()

    server.routes["/drip"] = drip
    monkeypatch.setattr(source, "MIN_RATE", 1000)
    monkeypatch.setattr(source, "RATE_GRACE", 0.5)
    limits = limits_from_env(DOWNLOAD_READ_TIMEOUT="5", DOWNLOAD_TOTAL_TIMEOUT="900")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="was too slow"):
        fetch_audio(AudioInput(url=server.url("/drip")), tmp_path, limits)
    assert time.monotonic() - started < 4  # generous: the read timeout (5 s) never came
    assert list(tmp_path.iterdir()) == []


def test_a_fast_body_keeps_its_pace(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that pauses after the grace but has averaged more than the pace completes."""
    import src.audio.source as source

    def bursty(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(2 * 50_000))
        h.end_headers()
        h.wfile.write(b"x" * 50_000)
        h.wfile.flush()
        server.stop.wait(0.8)
        h.wfile.write(b"x" * 50_000)

    server.routes["/bursty"] = bursty
    monkeypatch.setattr(source, "MIN_RATE", 10_000)
    monkeypatch.setattr(source, "RATE_GRACE", 0.3)
    path = fetch_audio(AudioInput(url=server.url("/bursty")), tmp_path, limits_from_env())
    assert path.stat().st_size == 100_000


def test_a_shutdown_ends_a_stalled_download_at_once(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import src.audio.source as source

    monkeypatch.setattr(source, "_downloads", source._Downloads())
    started_body = threading.Event()

    def stalled(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000000")
        h.end_headers()
        h.wfile.write(b"x" * 1000)
        h.wfile.flush()
        started_body.set()
        server.stop.wait(30)

    server.routes["/stalled"] = stalled
    failures: list[BaseException] = []

    def download() -> None:
        try:
            fetch_audio(AudioInput(url=server.url("/stalled")), tmp_path, limits_from_env())
        except BaseException as e:
            failures.append(e)

    thread = threading.Thread(target=download)
    thread.start()
    assert started_body.wait(10)
    time.sleep(0.2)
    began = time.monotonic()
    assert source.abort_downloads() == 1
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - began < 5  # generous: the read timeout is 30 s
    assert len(failures) == 1 and isinstance(failures[0], DownloadError)
    assert "shutting down" in str(failures[0])
    assert list(tmp_path.iterdir()) == []
    # and no new download starts once the process is shutting down
    with pytest.raises(DownloadError, match="shutting down"):
        fetch_audio(AudioInput(url=server.url("/stalled")), tmp_path, limits_from_env())
