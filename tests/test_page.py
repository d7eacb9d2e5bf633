"""The web page at ``/`` in headless Chromium, end to end against the real HTTP mode (tiny.en).

The server is ``src.server.app.create_app`` served by uvicorn on a free port; the browser is
Debian's ``chromium`` driven by ``chromedriver`` through Selenium. Each test drives the page as a
person would (choose a file, change options, click a line, press Record) and reads what the page
shows and offers: the transcript against the benchmark's reference, the player's position, the
SRT and VTT downloads through real parsers, the browser's console.

Screenshots of each state are written to ``$PAGE_SCREENSHOTS`` (default: ``whisper-page`` in the
system temp directory) for a person to look at.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BENCHMARK_DIR, REPO_ROOT, Clip, wer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)",
)

STATIC_DIR = REPO_ROOT / "src" / "server" / "static"
SCREENSHOTS = Path(os.environ.get("PAGE_SCREENSHOTS", Path(tempfile.gettempdir()) / "whisper-page"))
LONG_CLIP = "en_long_ljspeech_LJ001-0001_to_0032.flac"
#: how long the page may take for a decode on a loaded 2-core machine
DECODE_WAIT = 240.0


# ------------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    app: Any

    def set_api_key(self, key: str | None) -> None:
        """Turn the key on or off on the running app (the auth check reads it per request)."""
        services = self.app.services
        services.settings = dataclasses.replace(services.settings, api_key=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    import uvicorn

    from src.config import Settings
    from src.server.app import create_app
    from src.server.settings import ServerSettings

    port = _free_port()
    settings = ServerSettings(
        host="127.0.0.1", port=port, port_health=port, worker=Settings.from_env()
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            card = httpx.get(f"{url}/v1/models", timeout=5).json()["data"][0]
            if card.get("ready"):
                break
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the HTTP mode did not come up with its model within 180 s")
        time.sleep(0.3)
    yield Server(url=url, app=app)
    uv.should_exit = True
    thread.join(timeout=30)


# ------------------------------------------------------------------------------- the browser


def _chrome(extra_args: tuple[str, ...] = (), *, dark: bool = False) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    profile = tempfile.mkdtemp(prefix="whisper-page-chrome-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
        *extra_args,
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._whisper_profile = profile  # removed with the driver
    if dark:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
    return driver


def _quit(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver._whisper_profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _chrome()
    yield driver
    _quit(driver)


def console_errors(driver: Any, allow: tuple[str, ...] = ()) -> list[str]:
    """The console's errors since the last call (network failures included), less ``allow``."""
    entries = driver.get_log("browser")
    return [
        e["message"]
        for e in entries
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)
    ]


def _drain_favicon(driver: Any, wait_s: float = 5.0) -> None:
    """Empty the console after a bare image was opened: Chromium asks for ``/favicon.ico`` on
    its own, and its 404 may be logged a moment later (then it would count against the page).
    Returns once that 404 is logged, or after ``wait_s`` without it."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if any("/favicon.ico" in message for message in console_errors(driver)):
            return
        time.sleep(0.1)


def shot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        banner = driver.execute_script(
            "const b = document.querySelector('#error'); return b.hidden ? '' : b.innerText;"
        )
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; banner: {banner!r}")


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def prop(driver: Any, selector: str, name: str) -> Any:
    """A property of the element at ``selector`` ("hidden", "textContent", ...)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e === null ? null : e[arguments[1]];",
        selector,
        name,
    )


def fetch_text(driver: Any, url: str) -> str:
    """What a link of the page points at (a blob: URL), read inside the page."""
    text: str = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text()).then(done, e => done('FAILED ' + e));",
        url,
    )
    assert not text.startswith("FAILED"), text
    return text


# Records when the page first shows a decoded segment, and what the progress bar said then, so
# a test can tell segments that streamed in from a transcript that appeared all at once.
WATCH_STREAM = """
window.__watch = { firstSegmentAt: null, doneAt: null, progressWhileStreaming: [] };
const w = window.__watch;
new MutationObserver(() => {
  const n = document.querySelectorAll('#transcript .segment').length;
  const downloads = !document.querySelector('#downloads').hidden;
  if (n > 0 && w.firstSegmentAt === null && !downloads) {
    w.firstSegmentAt = performance.now();
    w.segmentsBeforeDone = n;
  }
  const bar = document.querySelector('#progress');
  if (!document.querySelector('#progress-row').hidden && bar.hasAttribute('value')) {
    w.progressWhileStreaming.push(bar.value);
  }
  if (downloads && w.doneAt === null) w.doneAt = performance.now();
}).observe(document.body, {
  subtree: true, childList: true, attributes: true, characterData: true,
});
"""


def open_page(driver: Any, server: Server) -> None:
    driver.get(server.url + "/")
    wait_for(
        driver,
        lambda d: js(d, "return document.querySelector('#server-status').dataset.state") == "ready",
        30,
        "the page to see the model ready",
    )


def choose_file(driver: Any, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))


def drop_file(driver: Any, path: Path) -> None:
    """Drop a file on the page, as a person dragging it from their desktop would."""
    driver.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const data = new DataTransfer();"
        "data.items.add(new File([bytes], arguments[1], { type: 'audio/wav' }));"
        "const zone = document.querySelector('#dropzone');"
        "for (const type of ['dragenter', 'dragover', 'drop']) {"
        "  zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true }));"
        "}",
        base64.b64encode(path.read_bytes()).decode("ascii"),
        path.name,
    )


def wait_done(driver: Any, timeout: float = DECODE_WAIT) -> None:
    wait_for(
        driver,
        lambda d: js(
            d,
            "return !document.querySelector('#downloads').hidden"
            " || !document.querySelector('#error').hidden",
        ),
        timeout,
        "the transcript to finish",
    )
    banner = js(
        driver, "const b = document.querySelector('#error'); return b.hidden ? '' : b.innerText;"
    )
    assert not banner, f"the page shows an error: {banner}"


def page_segments(driver: Any) -> list[dict[str, Any]]:
    return js(
        driver,
        "return [...document.querySelectorAll('#transcript .segment')].map(li => ({"
        " start: li.dataset.start === undefined ? null : Number(li.dataset.start),"
        " end: li.dataset.end === undefined ? null : Number(li.dataset.end),"
        " text: li.querySelector('.seg-text').textContent,"
        " speaker: li.querySelector('.speaker')?.textContent ?? null,"
        " words: li.querySelectorAll('.word').length }));",
    )


def downloads(driver: Any) -> dict[str, tuple[str, str]]:
    """Each download link: (file name, content)."""
    out = {}
    for kind in ("srt", "vtt", "txt", "json"):
        href, name = js(
            driver,
            "const a = document.querySelector(arguments[0]); return [a.href, a.download];",
            f"#download-{kind}",
        )
        out[kind] = (name, fetch_text(driver, href))
    return out


def clip(name: str) -> Clip:
    from tests.conftest import load_manifest

    return next(c for c in load_manifest() if c.path.name == name)


# ------------------------------------------------------------------------------- the static files


def test_language_table_matches_the_worker() -> None:
    """The page's language list is the worker's (src/languages.py), code for code."""
    from src.languages import LANGUAGES

    text = (STATIC_DIR / "languages.js").read_text(encoding="utf-8")
    pairs = dict(re.findall(r'^\s+["\']?([a-z]+)["\']?: "([^"]+)",$', text, flags=re.M))
    assert pairs == LANGUAGES


def test_page_is_self_contained() -> None:
    """Nothing is loaded from outside the server: no CDN, no web font, no absolute URL."""
    for path in STATIC_DIR.iterdir():
        if path.suffix in (".html", ".css", ".js", ".svg"):
            text = path.read_text(encoding="utf-8")
            found = re.findall(r"(?:src|href|url|import)[=( ]+[\"']?(https?:)?//", text)
            assert not found, f"{path.name} loads something from outside: {found}"
            assert "@import url(" not in text and "fonts.googleapis" not in text


# ------------------------------------------------------------------------------- end to end


def test_empty_state(browser: Any, server: Server) -> None:
    open_page(browser, server)
    shot(browser, "01-empty")
    assert js(browser, "return document.querySelector('#empty').hidden") is False
    assert js(browser, "return document.querySelector('#transcript').children.length") == 0
    assert js(browser, "return document.querySelector('#transcribe').disabled") is True
    # tiny.en is English-only: the page says so and offers no translation
    assert js(browser, "return document.querySelector('input[value=translate]').disabled")
    assert console_errors(browser) == []


def test_file_streams_then_seeks_and_downloads(browser: Any, server: Server) -> None:
    import srt
    import webvtt

    reference = clip(LONG_CLIP)
    open_page(browser, server)
    js(browser, WATCH_STREAM)
    choose_file(browser, reference.path)
    wait_for(
        browser,
        lambda d: js(d, "return document.querySelectorAll('#transcript .segment').length") >= 3,
        DECODE_WAIT,
        "the first segments",
    )
    shot(browser, "02-streaming")
    wait_done(browser)
    watch = js(browser, "return window.__watch")
    # segments were on screen while the file was still being decoded, with a moving progress bar
    assert watch["firstSegmentAt"] is not None and watch["firstSegmentAt"] < watch["doneAt"]
    progress = watch["progressWhileStreaming"]
    assert progress and 0 < progress[0] < 1 and progress == sorted(progress)

    segments = page_segments(browser)
    text = " ".join(s["text"] for s in segments)
    assert wer(reference.text, text) < 0.12
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] < reference.duration_s

    # clicking a line plays from it and lights it
    from selenium.webdriver.common.by import By

    lines = browser.find_elements(By.CSS_SELECTOR, "#transcript .segment")
    target = len(lines) // 2
    lines[target].click()
    wait_for(
        browser,
        lambda d: "active" in lines[target].get_attribute("class"),
        10,
        "the clicked line to light up",
    )
    position = js(browser, "return document.querySelector('#player').currentTime")
    assert abs(position - segments[target]["start"]) < 1.0
    shot(browser, "03-done")

    files = downloads(browser)
    base = reference.path.stem
    assert {name for name, _ in files.values()} == {
        f"{base}.srt",
        f"{base}.vtt",
        f"{base}.txt",
        f"{base}.json",
    }
    body = json.loads(files["json"][1])
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert abs(body["duration"] - reference.duration_s) < 0.5
    cues = list(srt.parse(files["srt"][1]))
    assert len(cues) == len(body["segments"]) == len(segments)
    for cue, segment in zip(cues, body["segments"], strict=True):
        assert abs(cue.start.total_seconds() - segment["start"]) < 0.002
        assert abs(cue.end.total_seconds() - segment["end"]) < 0.002
        assert cue.content == " ".join(segment["text"].split())
    vtt = webvtt.from_string(files["vtt"][1])
    assert [html.unescape(c.text) for c in vtt.captions] == [c.content for c in cues]
    assert [(_seconds(c.start), _seconds(c.end)) for c in vtt.captions] == [
        (c.start.total_seconds(), c.end.total_seconds()) for c in cues
    ]
    assert wer(reference.text, files["txt"][1]) < 0.12
    assert console_errors(browser) == []


def _seconds(stamp: str) -> float:
    """A WebVTT time ("00:01:02.345") in seconds, to the millisecond."""
    hours, minutes, seconds = stamp.split(":")
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


def test_cancel_stops_the_decode(browser: Any, server: Server) -> None:
    """Cancel while segments stream: the page stops, offers nothing half-done, and the server
    is free for the next file at once (the disconnect cancelled the decode)."""
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    choose_file(browser, clip(LONG_CLIP).path)
    wait_for(
        browser,
        lambda d: js(d, "return document.querySelectorAll('#transcript .segment').length") > 0,
        DECODE_WAIT,
        "the first segments",
    )
    browser.find_element(By.ID, "cancel").click()
    wait_for(browser, lambda d: prop(d, "#progress-row", "hidden"), 10, "the progress to go")
    assert prop(browser, "#result-meta", "textContent").endswith("cancelled")
    assert prop(browser, "#downloads", "hidden")
    short = clip("en_ls-test-clean_1089-134686-0001.wav")
    choose_file(browser, short.path)
    wait_done(browser, timeout=60)
    assert wer(short.text, " ".join(s["text"] for s in page_segments(browser))) < 0.3
    assert console_errors(browser) == []


def _two_readers(tmp_path: Path) -> Path:
    """Two LibriSpeech readers, A B A, 0.6 s apart (the diarization tests' pair), as a WAV."""
    import numpy as np

    from tests.conftest import load_waveform, wav_bytes

    a = load_waveform(BENCHMARK_DIR / "en_ls-test-clean_1089-134686-0002.wav")
    b = load_waveform(BENCHMARK_DIR / "en_ls-dev-clean_2412-153948-0000.flac")
    gap = np.zeros(int(0.6 * 16000), dtype=np.float32)
    path = tmp_path / "two-readers.wav"
    path.write_bytes(wav_bytes(np.concatenate([a, gap, b, gap, a])))
    return path


def test_speakers_and_words(server: Server, tmp_path: Path) -> None:
    """Options changed after a file is chosen, then #transcribe: speaker labels on the lines
    and in the subtitles, words that light up and seek; in the dark colour scheme."""
    import srt
    import webvtt
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = _chrome(dark=True)
    try:
        open_page(driver, server)
        choose_file(driver, _two_readers(tmp_path))
        wait_done(driver)  # the plain transcript first: choosing a file starts it
        driver.find_element(By.CSS_SELECTOR, "label:has(#diarize)").click()
        Select = _select()
        Select(driver.find_element(By.ID, "num-speakers")).select_by_value("2")
        driver.find_element(By.CSS_SELECTOR, "label:has(input[value=word])").click()
        js(driver, "document.querySelector('#downloads').hidden = true")  # wait for the new run
        driver.find_element(By.ID, "transcribe").click()
        wait_done(driver)
        segments = page_segments(driver)
        shot(driver, "04-speakers-dark")

        speakers = [s["speaker"] for s in segments]
        assert set(speakers) == {"Speaker 1", "Speaker 2"}
        assert speakers[0] == speakers[-1] == "Speaker 1" and "Speaker 2" in speakers[1:-1]
        assert all(s["words"] > 0 for s in segments)

        # a word seeks to itself and is lit; Enter on a focused line seeks to the line
        word = driver.find_elements(By.CSS_SELECTOR, "#transcript .word")[5]
        word.click()
        start = float(word.get_attribute("data-start"))
        assert abs(js(driver, "return document.querySelector('#player').currentTime") - start) < 0.3
        assert "on" in word.get_attribute("class")
        lines = driver.find_elements(By.CSS_SELECTOR, "#transcript .segment")
        js(driver, "arguments[0].focus()", lines[-1])
        lines[-1].send_keys(Keys.ENTER)
        wait_for(
            driver, lambda d: "active" in lines[-1].get_attribute("class"), 10, "Enter to seek"
        )

        files = downloads(driver)
        cues = list(srt.parse(files["srt"][1]))
        assert [c.content.split(":")[0] for c in cues] == speakers
        vtt = webvtt.from_string(files["vtt"][1])
        assert [c.voice for c in vtt.captions] == speakers
        body = json.loads(files["json"][1])
        assert {s["speaker"] for s in body["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
        assert body["words"] and all("start" in w and "end" in w for w in body["words"])
        assert console_errors(driver) == []
    finally:
        _quit(driver)


def _select() -> Any:
    from selenium.webdriver.support.ui import Select

    return Select


def test_bad_file_shows_the_servers_message(browser: Any, server: Server, tmp_path: Path) -> None:
    """Not audio at all: the banner says what the server's OpenAI error says."""
    bogus = tmp_path / "notes.wav"
    bogus.write_bytes(b"these are meeting notes, not a recording\n" * 50)
    with bogus.open("rb") as f:
        reply = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": (bogus.name, f)},
            data={"model": "whisper-1", "stream": "true"},
            timeout=60,
        )
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]

    open_page(browser, server)
    choose_file(browser, bogus)
    wait_for(
        browser,
        lambda d: js(d, "return !document.querySelector('#error').hidden"),
        60,
        "the banner",
    )
    banner = js(browser, "return document.querySelector('#error').innerText")
    assert message in banner and "refused" in banner
    assert js(browser, "return document.querySelector('#downloads').hidden")
    assert js(browser, "return document.querySelector('#progress-row').hidden")
    shot(browser, "05-error")
    # the failed request itself is the only thing the console reports
    assert console_errors(browser, allow=("status of 400",)) == []


def test_api_key_is_asked_once_and_kept(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    reference = clip("en_ls-test-clean_1089-134686-0000.wav")
    server.set_api_key("page-test-key")
    try:
        browser.get(server.url + "/")
        wait_for(
            browser,
            lambda d: js(d, "return document.querySelector('#key-dialog').open"),
            20,
            "the key dialog",
        )
        shot(browser, "06-api-key")
        browser.find_element(By.ID, "api-key").send_keys("page-test-key")
        browser.find_element(By.CSS_SELECTOR, "#key-dialog button[value=save]").click()
        wait_for(
            browser,
            lambda d: (
                js(d, "return document.querySelector('#server-status').dataset.state") == "ready"
            ),
            20,
            "the page to be let in",
        )
        assert (
            js(browser, "return localStorage.getItem('whisper-worker.api-key')") == "page-test-key"
        )
        browser.refresh()  # remembered: no second question
        open_page(browser, server)
        assert not js(browser, "return document.querySelector('#key-dialog').open")
        choose_file(browser, reference.path)
        wait_done(browser)
        text = " ".join(s["text"] for s in page_segments(browser))
        assert wer(reference.text, text) < 0.2
        assert console_errors(browser, allow=("status of 401",)) == []
    finally:
        server.set_api_key(None)


def test_narrow_screen(server: Server) -> None:
    """A phone's width: one column, nothing wider than the screen, the transcript readable."""
    driver = _chrome()
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
        )
        open_page(driver, server)
        shot(driver, "07-narrow-empty")
        drop_file(driver, clip("en_ls-test-clean_1089-134686-0000.wav").path)
        wait_done(driver)
        shot(driver, "08-narrow-done")
        overflow = js(driver, "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        columns = js(
            driver,
            "return getComputedStyle(document.querySelector('.layout')).gridTemplateColumns",
        )
        assert len(columns.split()) == 1
        assert console_errors(driver) == []
    finally:
        _quit(driver)


# Counts what a live session shows: turns with text still pending (deltas) and settled turns.
WATCH_LIVE = """
window.__live = { pendingWithText: 0, longestPending: 0 };
new MutationObserver(() => {
  for (const li of document.querySelectorAll('#transcript .segment.pending')) {
    const n = li.querySelector('.seg-text').textContent.trim().length;
    if (n > 0) window.__live.pendingWithText += 1;
    window.__live.longestPending = Math.max(window.__live.longestPending, n);
  }
}).observe(document.querySelector('#transcript'), {
  subtree: true, childList: true, characterData: true,
});
"""


def _settled_text(driver: Any) -> str:
    return js(
        driver,
        "return [...document.querySelectorAll('#transcript .segment:not(.pending) .seg-text')]"
        ".map(p => p.textContent).join(' ')",
    )


def test_record_captions_the_microphone(server: Server, tmp_path: Path) -> None:
    """#record with a speech file as the microphone: deltas grow in a pending line, turns
    settle, and the settled text matches the clip; stopping leaves the recording and subtitles.
    The server wants a key, which the page (holding it already) gives the socket as the
    ``openai-insecure-api-key.<key>`` subprotocol."""
    import srt

    reference = clip("en_ls-test-clean_1221-135766-0001.wav")
    microphone = tmp_path / "microphone.wav"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(reference.path),
            "-af", "adelay=1000,apad=pad_dur=3", "-ac", "1", "-ar", "48000",
            "-c:a", "pcm_s16le", str(microphone),
        ],
        check=True,
    )  # fmt: skip
    driver = _chrome(
        (
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
        )
    )
    try:
        from selenium.webdriver.common.by import By

        server.set_api_key("live-key")
        driver.get(server.url + "/icon.svg")  # the page's origin, to hold the key beforehand
        js(driver, "localStorage.setItem('whisper-worker.api-key', 'live-key')")
        _drain_favicon(driver)  # that bare image asks for /favicon.ico; the page does not
        open_page(driver, server)
        js(driver, WATCH_LIVE)
        driver.find_element(By.ID, "record").click()
        wait_for(
            driver,
            lambda d: (
                js(d, "return document.querySelector('#record .record-label').textContent")
                == "Stop recording"
            ),
            30,
            "the microphone and the socket",
        )
        wait_for(
            driver,
            lambda d: js(d, "return window.__live.pendingWithText") > 0,
            60,
            "the first words of a turn",
        )
        shot(driver, "09-recording")
        wait_for(
            driver,
            lambda d: wer(reference.text, _settled_text(d)) < 0.25,
            reference.duration_s + 60,
            "the turns to settle into the clip's words",
        )
        live = js(driver, "return window.__live")
        assert live["longestPending"] > 10  # a turn's text grew while it was spoken

        driver.find_element(By.ID, "record").click()
        wait_for(
            driver,
            lambda d: (
                js(d, "return document.querySelector('#record').getAttribute('aria-pressed')")
                == "false"
            ),
            30,
            "recording to stop",
        )
        shot(driver, "10-recorded")
        assert wer(reference.text, _settled_text(driver)) < 0.25
        assert js(driver, "return document.querySelectorAll('#transcript .pending').length") == 0
        # the recording plays back, and its turns are subtitles
        assert js(driver, "return document.querySelector('#player').src").startswith("blob:")
        cues = list(srt.parse(downloads(driver)["srt"][1]))
        assert cues and all(c.start <= c.end for c in cues)
        assert console_errors(driver) == []
    finally:
        server.set_api_key(None)
        _quit(driver)
