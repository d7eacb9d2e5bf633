"""``/ping``, as RunPod's load balancer asks it on ``PORT_HEALTH``.

200 when the model is loaded and warmed, 204 while it is loading (or unloaded after idle: the
next request loads it again), 503 when loading failed (RunPod takes the worker out of rotation).
No key is needed. When ``PORT_HEALTH`` differs from ``PORT``, ``health_app`` serves it alone.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from src.server.model import ModelHolder

router = APIRouter()


@router.get("/ping", include_in_schema=False)
async def ping(request: Request) -> Response:
    model: ModelHolder = request.app.state.model
    if model.state == "ready":
        return JSONResponse({"status": "healthy"})
    if model.state == "failed":
        return JSONResponse({"status": "unhealthy"}, status_code=503)
    return Response(status_code=204)


def health_app(model: ModelHolder) -> FastAPI:
    """A separate app for ``PORT_HEALTH`` that shares the main app's model holder."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.model = model
    app.include_router(router)
    return app
