"""The HTTP door's errors: the worker's exception tree in OpenAI's error shape, and only here.

Every error answer of the HTTP mode (the native job route included) is

    {"error": {"message": str, "type": str, "param": str | null, "code": str | null}}

with the status that says what happened:

    InvalidRequest, UnsupportedOption   400  invalid_request_error  (param: the form field)
    AudioError (download, decode, SSRF) 400  invalid_request_error  (code: the error's kind)
    TooLarge (bytes or seconds)         413  invalid_request_error  code "too_large"
    missing or wrong API key            401  invalid_request_error  code "invalid_api_key"
    BodyTooSlow (the body fell behind)  408  invalid_request_error  code "body_too_slow"
    QueueFull                           503  server_error           code "queue_full", Retry-After
    Busy (too many large bodies)        503  server_error           code "busy", Retry-After
    ModelError, OutOfMemory             500  server_error
    anything unforeseen                 500  server_error           (no message text leaks)

The message is the worker's own, written for the caller; no traceback, audio or transcript.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.errors import AudioError, InvalidRequest, ModelError, TooLarge, WorkerError
from src.service.slots import QueueFull

logger = logging.getLogger(__name__)


class InvalidField(InvalidRequest):
    """A request field of the HTTP door is wrong; ``param`` names it as the caller sent it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param


class UploadTooLarge(TooLarge):
    """The uploaded file passed the byte cap while it arrived (``param``: its form field)."""

    def __init__(self, message: str, param: str = "file") -> None:
        super().__init__(message)
        self.param = param


class BodyTooSlow(InvalidRequest):
    """The request body fell behind the pace a body must keep (``uploads.BodyPace``)."""

    kind = "body_too_slow"


class Busy(WorkerError):
    """The server holds as many request bodies in memory as it may; the caller retries."""

    kind = "busy"
    retry_after = 5


class Unauthorized(Exception):
    """The request lacks ``Authorization: Bearer <API_KEY>`` or gives a different key."""


@dataclass(frozen=True)
class ApiError:
    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def api_error(error: BaseException) -> ApiError:
    """What the caller sees for ``error``."""
    if isinstance(error, QueueFull):
        return ApiError(
            503,
            str(error),
            "server_error",
            code="queue_full",
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, Busy):
        return ApiError(
            503,
            str(error),
            "server_error",
            code=error.kind,
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, BodyTooSlow):
        return ApiError(408, str(error), "invalid_request_error", None, error.kind)
    if isinstance(error, Unauthorized):
        return ApiError(
            401,
            "missing or incorrect API key: send 'Authorization: Bearer <API_KEY>'",
            "invalid_request_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(error, TooLarge):
        param = error.param if isinstance(error, UploadTooLarge) else None
        return ApiError(413, str(error), "invalid_request_error", param, error.kind)
    if isinstance(error, InvalidRequest):
        param = error.param if isinstance(error, InvalidField) else None
        return ApiError(400, str(error), "invalid_request_error", param, error.kind)
    if isinstance(error, AudioError):
        return ApiError(400, str(error), "invalid_request_error", None, error.kind)
    if isinstance(error, ModelError):
        return ApiError(500, str(error), "server_error", None, error.kind)
    if isinstance(error, WorkerError):
        return ApiError(500, str(error), "server_error", None, error.kind)
    return ApiError(
        500,
        f"internal error ({type(error).__name__}); the request was not completed",
        "server_error",
    )


def log_unexpected(error: BaseException, request_id: str) -> None:
    """An error nobody foresaw: its frames, never its message (it could quote a transcript)."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    logger.error("request %s: unexpected %s\n%s", request_id, type(error).__name__, frames)


def error_response(error: BaseException, request_id: str) -> JSONResponse:
    """The reply for an error a route caught; what nobody foresaw is logged (frames only)."""
    known = isinstance(error, WorkerError | QueueFull | Unauthorized)
    if not known:
        log_unexpected(error, request_id)
    else:
        logger.info("request %s failed: %s", request_id, type(error).__name__)
    response = api_error(error).response()
    response.headers["X-Request-Id"] = request_id
    return response


def install_handlers(app: FastAPI) -> None:
    """Errors raised anywhere in the app, and the framework's own 404/405/422, in OpenAI's shape."""

    async def worker_error(request: Request, error: Exception) -> JSONResponse:
        return api_error(error).response()

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
        headers = dict(error.headers) if error.headers else None
        return ApiError(error.status_code, str(error.detail), kind, headers=headers).response()

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = str(first.get("msg", "invalid request"))
        return ApiError(400, message, "invalid_request_error", param).response()

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log_unexpected(error, request.headers.get("x-request-id", "-"))
        return api_error(error).response()

    for kind in (WorkerError, QueueFull, Unauthorized):
        app.add_exception_handler(kind, worker_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
