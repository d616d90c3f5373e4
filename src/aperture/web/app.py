"""The one ASGI app: pages at /, the control-plane API at /api/v1 (docs at /api/v1/docs), /healthz and /metrics.

`create_app(services)` is a factory: nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aperture import __version__
from aperture.core import db
from aperture.core.errors import ApertureError
from aperture.web import apidocs, pages
from aperture.web.body_limit import TOO_LARGE_HINT, BodyLimit
from aperture.web.metrics import AppMetrics
from aperture.web.openapi import finish_document

if TYPE_CHECKING:
    from aperture.bootstrap import Services

log = logging.getLogger("aperture.web")

API_PREFIX = "/api/v1"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(API_PREFIX) or path.startswith("/v1") or path in ("/healthz", "/metrics")


def error_body(code: str, message: str, hint: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "hint": hint}
    body.update(extra)
    return {"error": body}


def create_app(services: Services) -> FastAPI:
    metrics = AppMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from aperture.gateway.http import gateway_running

        task = None
        # What a killed registration left: temporary files whose writer is gone (cheap; the
        # unreferenced blobs are for `aperture models gc`, which checks the database).
        swept, _kept = await asyncio.to_thread(services.vault.sweep_temporary)
        if swept:
            log.info("removed %d temporary file(s) left by interrupted writes", len(swept))
        interval = services.settings.tree_head_interval_s
        if interval > 0:
            task = asyncio.create_task(_issue_tree_heads(services, metrics, interval))
        try:
            async with gateway_running(services.gateway):
                yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="Aperture",
        version=__version__,
        description="Decide, enforce and audit how openly each AI model is released.",
        # The docs page is the app's own (aperture.web.apidocs), with its assets served from here.
        docs_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,  # bearer API keys, no OAuth2 flow
        lifespan=lifespan,
    )
    # Every body the app reads is bounded (413); a public RAID report by what its attachments may
    # be; the gateway's /v1 routes bound theirs lower themselves. Added before the metrics
    # middleware so that it sits inside it: that one's task group would wrap the refusal.
    app.add_middleware(
        BodyLimit,
        default=services.settings.api_max_body_bytes,
        limits=[(f"{API_PREFIX}/raid/reports", services.raid.context.config.report_body_bytes)],
    )
    app.middleware("http")(metrics.middleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from aperture.gateway.http import openapi_schemas

            app.openapi_schema = finish_document(FastAPI.openapi(app), openapi_schemas())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # Module-level handlers find the services here (see aperture.http_support.Visitor/SignedIn).
    app.state.services = services

    @app.exception_handler(ApertureError)
    async def _aperture_error(request: Request, error: ApertureError) -> Response:
        if error.http_status >= 500:
            log.error("request failed", extra={"path": request.url.path, "code": error.code})
        if _wants_json(request):
            return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)
        return pages.error_page(request, error.http_status, error.message, error.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in item.get("loc", ())), "problem": item.get("msg", "")}
            for item in error.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        body = error_body(
            "invalid_input", f"the request is not valid: {summary}", "fix the fields named", details=problems
        )
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthenticated",
            403: "forbidden",
            413: "too_large",
        }
        code = codes.get(error.status_code, "http_error")
        message = str(error.detail) if error.detail else code
        hint = "see /api/v1/docs for the routes" if error.status_code in (404, 405) else ""
        if error.status_code == 413:
            hint = TOO_LARGE_HINT
        if _wants_json(request):
            return JSONResponse(error_body(code, message, hint), status_code=error.status_code)
        return pages.error_page(request, error.status_code, message, hint)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.url.path})
        message = "an unexpected error occurred; it has been logged"
        if _wants_json(request):
            return JSONResponse(error_body("internal", message, "retry; report it if it persists"), status_code=500)
        return pages.error_page(request, 500, message, "")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        revision = db.current_revision(services.database)
        return {"status": "ok", "version": __version__, "schema": revision}

    @app.get("/metrics", tags=["operations"])
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    _mount_api(app, services)
    apidocs.mount(
        app,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        title=app.title,
    )  # before pages: its /static/apidocs mount must come before their /static
    pages.mount(app, services)
    return app


def _mount_api(app: FastAPI, services: Services) -> None:
    from aperture.access.http import build_router as access_router
    from aperture.audit.http import build_well_known_router
    from aperture.gateway.http import build_openai_router

    # The OpenAI-compatible gateway at /v1 (its own error shape; see aperture.gateway.http).
    app.include_router(build_openai_router(services.gateway, services.settings.gateway_max_body_bytes))

    app.include_router(build_well_known_router(services))  # /.well-known/aperture/keys.json
    app.include_router(access_router(services), prefix=API_PREFIX)
    for module_name in (
        "aperture.registry.http",
        "aperture.audit.http",
        "aperture.risk.http",
        "aperture.security.http",
        "aperture.release.http",
        "aperture.gateway.http",
        "aperture.licensing.http",
        "aperture.raid.http",
    ):
        module = __import__(module_name, fromlist=["build_router"])
        app.include_router(module.build_router(services), prefix=API_PREFIX)


async def _issue_tree_heads(services: Services, metrics: AppMetrics, interval: int) -> None:
    """Sign a tree head now and then, so the log is committed to even when nobody asks."""
    while True:
        try:
            head = await asyncio.to_thread(services.audit.issue_tree_head_if_grown)
            if head is not None:
                metrics.audit_tree_size.set(head.tree_size)
        except Exception:
            log.exception("could not issue a signed tree head")
        await asyncio.sleep(interval)
