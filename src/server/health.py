"""``/ping``, as RunPod's load balancer asks it on ``PORT_HEALTH``.

200 when the model is loaded and warmed, 204 while it is loading (or unloaded after idle: the
next request loads it again), 503 when loading failed (RunPod takes the worker out of rotation).
No key is needed. When ``PORT_HEALTH`` differs from ``PORT``, ``health_app`` serves it alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from src.server.state import AppState

router = APIRouter()


@router.get("/ping", include_in_schema=False)
async def ping(request: Request) -> Response:
    model = AppState.of(request).model
    if model.state == "ready":
        return JSONResponse({"status": "healthy"})
    if model.state == "failed":
        return JSONResponse({"status": "unhealthy"}, status_code=503)
    return Response(status_code=204)


def health_app(state: AppState) -> FastAPI:
    """A separate app for ``PORT_HEALTH`` that shares the main app's state (its model)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"app": state}

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.include_router(router)
    return app
