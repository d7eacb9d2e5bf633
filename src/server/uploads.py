"""Request bodies read as they stream in: multipart forms with the file written straight to disk.

``read_form`` feeds the body through python-multipart's streaming parser. The audio file goes
into the request's own directory (the caller creates and removes it) and is stopped at the
worker's byte cap (``MAX_DOWNLOAD_BYTES``, raising ``TooLarge``) while it arrives; nothing of
it is held in memory or spooled elsewhere. The other fields are short strings, bounded in size
and number. A declared ``Content-Length`` over what a form may hold is refused before reading.

``read_body`` reads a JSON body under a cap in the same way. A JSON body is held in memory, so
its cap is ``MAX_JSON_BODY_BYTES`` whatever the download cap (bigger audio goes as a multipart
upload or a URL, which stream to disk), and all JSON bodies being read at once share
``JSON_BODIES_BUDGET`` bytes: past it a request gets 503 (``Busy``) rather than more memory.

Both readers hold the body to a pace (``BodyPace``): a body must keep arriving, or the request
ends with 408 (``BodyTooSlow``). A client that drips a byte now and then cannot hold a
connection, a temp file or memory for longer than the pace allows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from src.errors import TooLarge
from src.server.errors import BodyTooSlow, Busy, InvalidField, UploadTooLarge

#: bounds on the form's text fields (a prompt, a custom vocabulary as JSON, ...)
MAX_FIELD_BYTES = 256 * 1024
#: fields allowed more: OpenAI's ``known_speaker_references[]`` (up to 4 data URLs of 2-10 s
#: of audio in any format; 10 s of 48 kHz 16-bit WAV is about 1.3 MB as base64)
LARGE_FIELDS = {"known_speaker_references[]": 2 * 1024 * 1024}
LARGE_FIELDS_BYTES = 4 * 2 * 1024 * 1024
MAX_FIELDS = 64
MAX_HEADER_BYTES = 16 * 1024
#: file data is written to disk in blocks of about this size, off the event loop
WRITE_BLOCK = 1024 * 1024
#: the most a JSON body may hold (``/v1/jobs``): RunPod's own queue takes 10 MiB (``/run``) and
#: 20 MiB (``/runsync``), so this carries any queue job with room to spare
MAX_JSON_BODY_BYTES = 64 * 1024 * 1024
#: what all JSON bodies being read at one time may hold together
JSON_BODIES_BUDGET = 256 * 1024 * 1024


@dataclass(frozen=True)
class BodyPace:
    """How fast a request body must arrive.

    After ``grace`` seconds the body must have averaged ``min_rate`` bytes a second since the
    request began (so a pause is fine once enough has come); no byte for ``idle`` seconds ends
    it at any time, and so does ``total`` seconds in all.
    """

    grace: float = 10.0
    min_rate: float = 32 * 1024
    idle: float = 30.0
    total: float = 1800.0

    def deadline(self, started: float, received: int, last: float) -> float:
        """By when the next chunk must arrive (``time.monotonic()``)."""
        by_rate = started + self.grace + received / self.min_rate
        return min(by_rate, last + self.idle, started + self.total)


#: the pace of every body; tests replace it with a faster one
PACE = BodyPace()


async def paced(request: Request, what: str, pace: BodyPace | None = None) -> AsyncIterator[bytes]:
    """``request.stream()``, ended with ``BodyTooSlow`` when the body falls behind ``pace``."""
    pace = pace or PACE
    stream = request.stream().__aiter__()
    started = last = time.monotonic()
    received = 0
    while True:
        wait = pace.deadline(started, received, last) - time.monotonic()
        try:
            with anyio.fail_after(max(wait, 0.0)):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTooSlow(
                f"{what}: the body arrived too slowly ({received} bytes in "
                f"{time.monotonic() - started:.0f} s; at least {pace.min_rate:.0f} bytes a "
                f"second after the first {pace.grace:g} s, no pause over {pace.idle:g} s, "
                f"{pace.total:g} s in all)"
            ) from None
        received += len(chunk)
        last = time.monotonic()
        yield chunk


class _Budget:
    """Bytes that JSON bodies hold in memory, across requests (one event loop, no lock)."""

    def __init__(self) -> None:
        self.held = 0

    def take(self, size: int, what: str) -> None:
        if self.held + size > JSON_BODIES_BUDGET:
            raise Busy(
                f"{what}: the server is reading too many large bodies at once; try again shortly, "
                "or send the audio as a multipart upload or a URL"
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held = max(0, self.held - size)


json_bodies = _Budget()


@dataclass(frozen=True)
class UploadedFile:
    path: Path
    filename: str
    size: int


@dataclass
class Form:
    """A parsed multipart form: each text field's values in order, and the files by field."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)


def _too_large(max_bytes: int) -> TooLarge:
    return UploadTooLarge(
        f"file: the upload is over the limit of {max_bytes} bytes (MAX_DOWNLOAD_BYTES)"
    )


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


_BUDGET_STEP = 1024 * 1024
#: how deep JSON from a request may nest (a job needs 4 levels)
MAX_JSON_DEPTH = 32


def parse_json(raw: str | bytes, param: str | None = None) -> Any:
    """JSON from a request (a body or a form field), nested at most ``MAX_JSON_DEPTH`` deep;
    anything else is ``InvalidField`` naming ``param``, whose message never quotes the input."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidField(f"expected JSON ({e.msg} at {e.pos})", param=param) from None
    except UnicodeDecodeError:
        raise InvalidField("expected JSON in UTF-8", param=param) from None
    except RecursionError:
        raise InvalidField(_too_deep(), param=param) from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise InvalidField(_too_deep(), param=param)
    return value


def _too_deep() -> str:
    return f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels"


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}$")


class _FormBuilder:
    """python-multipart's callbacks: each part's headers, then its data. File data is only
    gathered here (``pending``); ``read_form`` writes it to disk off the event loop."""

    def __init__(self, workdir: Path, max_file_bytes: int) -> None:
        self.form = Form()
        self._workdir = workdir
        self._max_file_bytes = max_file_bytes
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._disposition = b""
        self._name = ""
        #: bytes of the ``LARGE_FIELDS`` so far (all of them together)
        self._large_bytes = 0
        self._text: bytearray | None = None
        self._in_file = False
        self._fields = 0
        #: the one file part: its open handle, where it goes, and whether its part has ended
        self.handle: BinaryIO | None = None
        self.upload: UploadedFile | None = None
        self.file_field = ""
        self.file_ended = False
        #: file data received and not yet written
        self.pending = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidField(f"a form part's headers exceed {MAX_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidField("a form part has no name (Content-Disposition: form-data; name=...)")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if self.handle is not None:
                raise InvalidField("expected one file in the form", param=self._name)
            filename = options[b"filename"].decode("utf-8", "replace")
            suffix = _SUFFIX.search(filename)
            path = self._workdir / ("upload" + (suffix.group(0).lower() if suffix else ""))
            self.handle = open(path, "xb")  # noqa: SIM115 (read_form closes it)
            self.upload = UploadedFile(path, filename, 0)
            self.file_field = self._name
            self._in_file = True
        else:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise InvalidField(f"the form has more than {MAX_FIELDS} fields")
            self._text = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.upload is not None
            size = self.upload.size + end - start
            if size > self._max_file_bytes:
                raise _too_large(self._max_file_bytes)
            self.upload = UploadedFile(self.upload.path, self.upload.filename, size)
            self.pending += data[start:end]
        elif self._text is not None:
            limit = LARGE_FIELDS.get(self._name, MAX_FIELD_BYTES)
            if len(self._text) + end - start > limit:
                raise InvalidField(f"the field is longer than {limit} bytes", param=self._name)
            if self._name in LARGE_FIELDS:
                self._large_bytes += end - start
                if self._large_bytes > LARGE_FIELDS_BYTES:
                    raise InvalidField(
                        f"these fields hold more than {LARGE_FIELDS_BYTES} bytes together",
                        param=self._name,
                    )
            self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.file_ended = True
        elif self._text is not None:
            try:
                value = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidField("expected UTF-8 text", param=self._name) from None
            self.form.fields.setdefault(self._name, []).append(value)
            self._text = None


async def read_form(request: Request, workdir: Path, max_file_bytes: int) -> Form:
    """The request's multipart form, its file (at most one) written under ``workdir``."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise InvalidField("expected a multipart/form-data body (the audio in the 'file' field)")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidField("the multipart/form-data Content-Type has no boundary")
    declared = _declared_length(request)
    fields_bytes = MAX_FIELDS * MAX_FIELD_BYTES + LARGE_FIELDS_BYTES
    if declared is not None and declared > max_file_bytes + fields_bytes:
        raise _too_large(max_file_bytes)

    builder = _FormBuilder(workdir, max_file_bytes)
    parser = MultipartParser(boundary, builder.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in paced(request, builder.file_field or "file"):
            _feed(parser, chunk)
            await _write_pending(builder, final=False)
        _feed(parser, None)
        await _write_pending(builder, final=True)
    finally:
        if builder.handle is not None:
            builder.handle.close()
    if builder.upload is not None:
        if not builder.file_ended:
            raise InvalidField("the form's file part is incomplete", param=builder.file_field)
        builder.form.files[builder.file_field] = builder.upload
    return builder.form


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except MultipartParseError as e:
        raise InvalidField(f"the multipart/form-data body is malformed ({e})") from None


async def _write_pending(builder: _FormBuilder, final: bool) -> None:
    """Write gathered file data to disk in a thread, a block at a time (and all at the end)."""
    if builder.handle is None or not builder.pending:
        return
    if final or builder.file_ended or len(builder.pending) >= WRITE_BLOCK:
        data = bytes(builder.pending)
        builder.pending.clear()
        await anyio.to_thread.run_sync(builder.handle.write, data)


async def read_body(request: Request, max_bytes: int, what: str) -> bytes:
    """The whole body, refused with ``TooLarge`` once it passes ``max_bytes`` (at most
    ``MAX_JSON_BODY_BYTES``), with ``Busy`` past the shared budget, ``BodyTooSlow`` when it
    falls behind the pace."""
    max_bytes = min(max_bytes, MAX_JSON_BODY_BYTES)
    too_large = TooLarge(
        f"{what}: the body is over the limit of {max_bytes} bytes; send larger audio as a "
        "URL, or as a file to /v1/audio/transcriptions"
    )
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise too_large
    body = bytearray()
    held = 0
    try:
        async for chunk in paced(request, what):
            if len(body) + len(chunk) > max_bytes:
                raise too_large
            # reserved in steps as it arrives: the budget counts what is held, not what is declared
            while held < len(body) + len(chunk):
                json_bodies.take(_BUDGET_STEP, what)
                held += _BUDGET_STEP
            body += chunk
        return bytes(body)
    finally:
        json_bodies.give(held)
