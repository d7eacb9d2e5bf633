"""Who may hold the live sessions (issue 21): a client that reconnects as fast as it is closed
cannot lock the others out, and refusals reach the user in OpenAI's shape.

On Linux all of 127.0.0.0/8 is loopback, so the tests bind hostile clients to source address
127.0.0.2 (and up) and the normal one to 127.0.0.1: different clients for
``LIVE_MAX_SESSIONS_PER_CLIENT``, on one machine, against the real server and model (tiny.en).

* the per-client bound: half of ``LIVE_MAX_SESSIONS`` by default, a reconnect loop holding its
  share while a normal client is still served, ``X-Forwarded-For`` ignored unless
  ``FORWARDED_ALLOW_IPS`` names the proxy (then each forwarded client counts on its own);
* refusals as the ``openai`` SDK's user sees them: a wrong key and a full server are ``error``
  events with OpenAI's message and code (the SDK's ``conn.recv()``), a handshake refused before
  the route (no socket at the path, a head over the limit, an upgrade websockets cannot accept)
  an HTTP status with OpenAI's error object as its body (a plain close on a server without the
  denial extension);
* a refused client that ignores the close is cut off, and frames are never compressed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from src.live.settings import LiveSettings
from src.server.edge import deny_websocket
from src.server.settings import ServerSettings
from src.server.state import LiveSessions, client_key
from tests.server_helpers import API_KEY, RunningServer, serving

AUTH = {"Authorization": f"Bearer {API_KEY}"}
NORMAL = "127.0.0.1"
HOSTILE = "127.0.0.2"
#: a deadline for a stuck test, not a speed claim
WAIT = 60.0


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serving(model="tiny.en", api_key=API_KEY) as running:
        running.wait_ready()
        yield running


@pytest.fixture
def sessions(server: RunningServer) -> Iterator[LiveSessions]:
    """The server's live sessions with the defaults: 4 places, 2 per client."""
    live = LiveSessions(LiveSettings(max_sessions=4))
    server.app.services.live = live
    yield live
    server.wait_until(lambda: live.open == 0)


def _url(server: RunningServer, path: str = "/v1/realtime?intent=transcription") -> str:
    return server.base_url.replace("http://", "ws://") + path


async def _open(
    server: RunningServer, source: str, headers: dict[str, str] | None = None
) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    """A socket from ``source`` and its first event (``session.created`` or an ``error``)."""
    ws = await websockets.connect(
        _url(server), additional_headers={**AUTH, **(headers or {})}, local_addr=(source, 0)
    )
    return ws, json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def _refused(server: RunningServer, source: str, **headers: str) -> dict[str, Any]:
    """Open from ``source``, expecting a ``session_limit`` refusal and close 1013."""
    ws, first = await _open(server, source, headers)
    assert first["type"] == "error", first
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    error: dict[str, Any] = first["error"]
    assert error["code"] == "session_limit"
    return error


def test_client_keys() -> None:
    assert client_key("127.0.0.2") == "127.0.0.2"
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"
    # one machine's /64 is one client, whichever of its addresses it picks
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == ("2001:db8:1:2::/64")
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == "unknown"
    assert LiveSettings(max_sessions=4).per_client == 2
    assert LiveSettings(max_sessions=3).per_client == 1
    assert LiveSettings(max_sessions=1).per_client == 1
    assert LiveSettings(max_sessions=4, max_sessions_per_client=4).per_client == 4
    settings = LiveSettings.from_env({"LIVE_MAX_SESSIONS": "8"})
    assert (settings.max_sessions_per_client, settings.per_client) == (None, 4)
    assert LiveSettings.from_env({"LIVE_MAX_SESSIONS_PER_CLIENT": "3"}).per_client == 3
    with pytest.raises(ValueError, match="LIVE_MAX_SESSIONS_PER_CLIENT"):
        LiveSettings.from_env({"LIVE_MAX_SESSIONS_PER_CLIENT": "0"})
    assert ServerSettings.from_env({}).forwarded_allow_ips is None
    given = ServerSettings.from_env({"FORWARDED_ALLOW_IPS": " 10.0.0.1, 10.1.0.0/16 "})
    assert given.forwarded_allow_ips == "10.0.0.1,10.1.0.0/16"
    with pytest.raises(ValueError, match=r"FORWARDED_ALLOW_IPS='proxy\.example'"):
        ServerSettings.from_env({"FORWARDED_ALLOW_IPS": "proxy.example"})


def test_one_client_cannot_take_every_place(server: RunningServer, sessions: LiveSessions) -> None:
    async def run() -> None:
        held = []
        for _ in range(2):
            ws, first = await _open(server, HOSTILE)
            assert first["type"] == "session.created"
            held.append(ws)
        error = await _refused(server, HOSTILE)
        assert "LIVE_MAX_SESSIONS_PER_CLIENT" in error["message"]
        # a proxy's header is not believed unless FORWARDED_ALLOW_IPS says so
        error = await _refused(server, HOSTILE, **{"X-Forwarded-For": "10.9.8.7"})
        assert "LIVE_MAX_SESSIONS_PER_CLIENT" in error["message"]
        # the normal client still gets its places, then the server is full for everyone
        for _ in range(2):
            ws, first = await _open(server, NORMAL)
            assert first["type"] == "session.created"
            held.append(ws)
        error = await _refused(server, "127.0.0.3")
        assert "LIVE_MAX_SESSIONS)" in error["message"]
        assert sessions.by_client == {HOSTILE: 2, NORMAL: 2}
        for ws in held:
            await ws.close()

    asyncio.run(run())


def test_a_reconnect_loop_does_not_lock_a_normal_client_out(
    server: RunningServer, sessions: LiveSessions
) -> None:
    """Two hostile threads reconnect as fast as they are closed (their sessions closed at once,
    as a refused one would be); a normal client meanwhile opens session after session."""
    stop = threading.Event()
    hostile_opened: list[int] = [0, 0]

    def hostile(index: int) -> None:
        async def loop() -> None:
            while not stop.is_set():
                ws, first = await _open(server, HOSTILE)
                if first["type"] == "session.created":
                    hostile_opened[index] += 1
                await ws.close()

        asyncio.run(loop())

    threads = [threading.Thread(target=hostile, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()

    async def normal() -> list[str]:
        seen = []
        ends = time.monotonic() + 5
        while time.monotonic() < ends or len(seen) < 5:
            ws, first = await _open(server, NORMAL)
            seen.append(first["type"] if first["type"] != "error" else first["error"]["code"])
            await ws.close()
        return seen

    try:
        seen = asyncio.run(normal())
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert sum(hostile_opened) > 0
    assert set(seen) == {"session.created"}, seen


def test_a_trusted_proxy_names_the_client() -> None:
    """With FORWARDED_ALLOW_IPS naming the proxy (here the loopback peer), each address its
    X-Forwarded-For names is a client of its own; another peer's header is still ignored."""
    with serving(model="tiny.en", api_key=API_KEY, forwarded_allow_ips=NORMAL) as proxied:
        proxied.app.services.live = LiveSessions(LiveSettings(max_sessions=4))

        async def run() -> None:
            held = []
            for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
                ws, first = await _open(proxied, NORMAL, {"X-Forwarded-For": client})
                assert first["type"] == "session.created"
                held.append(ws)
            error = await _refused(proxied, NORMAL, **{"X-Forwarded-For": "10.0.0.1"})
            assert "LIVE_MAX_SESSIONS_PER_CLIENT" in error["message"]
            assert proxied.app.services.live.by_client == {"10.0.0.1": 2, "10.0.0.2": 1}
            for ws in held:
                await ws.close()

        asyncio.run(run())


def test_the_sdk_user_sees_why_a_session_is_refused(
    server: RunningServer, sessions: LiveSessions
) -> None:
    """What ``client.realtime.connect`` gives its user: the ``error`` event, typed, with the
    server's message and code (OpenAI's own server refuses a wrong key the same way)."""

    async def first_event(api_key: str) -> Any:
        client = AsyncOpenAI(base_url=server.api, api_key=api_key, max_retries=0)
        try:
            async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
                return await asyncio.wait_for(conn.recv(), WAIT)
        finally:
            await client.close()

    async def run() -> None:
        event = await first_event("wrong-key")
        assert event.type == "error"
        assert event.error.code == "invalid_api_key"
        assert "API key" in event.error.message
        held = [(await _open(server, NORMAL))[0] for _ in range(2)]
        event = await first_event(API_KEY)
        assert event.type == "error"
        assert event.error.code == "session_limit"
        assert "LIVE_MAX_SESSIONS_PER_CLIENT" in event.error.message
        for ws in held:
            await ws.close()

    asyncio.run(run())


def test_a_refused_client_that_keeps_sending_is_cut_off(
    server: RunningServer, sessions: LiveSessions
) -> None:
    """A client refused by its limit that ignores the close and goes on sending 12 MB frames
    (a raw socket: a library client stops at the close frame) is cut off after about
    ``AFTER_CLOSE_BYTES``, instead of being read, on the event loop, until the 10 s close
    timeout. What it pushes is bounded in bytes (generously: socket buffers included)."""
    payload = b"A" * 12_000_000
    # a masked text frame (mask key 0: the payload goes as it is), 64-bit length
    frame = bytes([0x81, 0x80 | 127]) + len(payload).to_bytes(8, "big") + bytes(4) + payload
    port = int(server.base_url.rsplit(":", 1)[1])

    async def run() -> int:
        held = [(await _open(server, HOSTILE))[0] for _ in range(2)]
        sock = socket.create_connection(("127.0.0.1", port), source_address=(HOSTILE, 0))
        pushed = 0
        with sock:
            sock.sendall(
                b"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: x\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + f"Authorization: Bearer {API_KEY}\r\n\r\n".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
            sock.settimeout(WAIT)
            with pytest.raises(OSError):
                for _ in range(1000):  # 12 GB: far past any bound below
                    sock.sendall(frame)
                    pushed += len(frame)
        for ws in held:
            await ws.close()
        return pushed

    assert asyncio.run(run()) < 200_000_000


def test_frames_are_never_compressed(server: RunningServer, sessions: LiveSessions) -> None:
    """A client offering permessage-deflate (websockets does by default) gets plain frames: a
    compressed frame could inflate 1000-fold, on the event loop."""

    async def run() -> None:
        async with websockets.connect(_url(server), additional_headers=AUTH) as ws:
            assert ws.request is not None and ws.response is not None
            assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert json.loads(await ws.recv())["type"] == "session.created"

    asyncio.run(run())


def test_handshakes_refused_before_the_route_answer_openai_errors(server: RunningServer) -> None:
    async def status_and_error(path: str, **headers: str) -> tuple[int, dict[str, Any]]:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(_url(server, path), additional_headers=headers):
                pass
        response = refused.value.response
        assert response.headers["Content-Type"] == "application/json"
        error: dict[str, Any] = json.loads(response.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return response.status_code, error

    async def run() -> None:
        status, error = await status_and_error("/v1/nowhere")
        assert status == 404
        assert "/v1/realtime" in error["message"]
        # headers over the server's limit, each line within websockets' own
        junk = {f"X-Junk-{i}": "a" * 6000 for i in range(3)}
        status, error = await status_and_error("/v1/realtime", **junk)
        assert status == 431
        assert "16384" in error["message"]
        # a line over websockets' limit: its parser refuses the handshake (websockets 15: 400)
        status, error = await status_and_error("/v1/realtime", **{"X-Junk": "a" * 10_000})
        assert status in (400, 431)
        assert "WebSocket" in error["message"]
        # not an upgrade websockets can accept: no Sec-WebSocket-Key
        port = int(server.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), head
        assert b"application/json" in head.lower()
        assert json.loads(body)["error"]["type"] == "invalid_request_error"

    asyncio.run(run())


def test_a_server_without_the_denial_extension_gets_a_plain_close() -> None:
    """``deny_websocket`` on an ASGI server that lacks the WebSocket Denial Response extension:
    the handshake is closed (what the server makes of it: uvicorn's is a bare 403)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def run(extensions: dict[str, Any]) -> list[str]:
        sent.clear()
        scope = {"type": "websocket", "path": "/x", "headers": [], "extensions": extensions}
        await deny_websocket(scope, receive, send, 404, "no socket here")
        return [m["type"] for m in sent]

    assert asyncio.run(run({})) == ["websocket.close"]
    assert sent[0]["code"] == 1008
    assert asyncio.run(run({"websocket.http.response": {}})) == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert json.loads(sent[1]["body"])["error"]["message"] == "no socket here"
