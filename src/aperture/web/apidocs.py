"""The interactive API docs (Swagger UI at /api/v1/docs), served offline.

Swagger UI's script and stylesheet come from the `fastapi-offline` package (MIT), which ships
Swagger UI 5 (Apache-2.0) as static files; this app serves them under `/static/apidocs/`, so the
page needs no CDN. The page carries its own Content-Security-Policy: same-origin assets only, and
Swagger UI's inline start-up script allowed by its SHA-256 hash.

No ReDoc page: the ReDoc the package ships (2.3) cannot resolve the `$defs` in this app's
OpenAPI 3.1 schemas and shows nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/static/apidocs"
FAVICON_URL = "/static/favicon.svg"  # the app's own (aperture.web.pages mounts /static)
ASSETS_PACKAGE = "fastapi_offline"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_directory() -> str:
    """Where the installed package keeps swagger-ui-bundle.js and swagger-ui.css."""
    try:
        directory = resources.files(ASSETS_PACKAGE) / "static"
    except ModuleNotFoundError as error:
        raise RuntimeError(
            f"the API docs need the {ASSETS_PACKAGE!r} package for their assets: pip install fastapi-offline"
        ) from error
    if not directory.joinpath("swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"{directory} has no swagger-ui-bundle.js: reinstall fastapi-offline")
    return str(directory)


def content_security_policy(html: str) -> str:
    """Same-origin everything; the page's inline scripts only by their hashes (no other inline script
    runs). Inline styles stay allowed: Swagger UI sets style attributes on its elements."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src " + " ".join(["'self'", *hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def mount(app: FastAPI, *, openapi_url: str, docs_url: str, title: str) -> None:
    """Mount the assets (before the app's /static, which would otherwise take the path) and the page."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="apidocs")
    rendered = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=FAVICON_URL,
    )
    html = bytes(rendered.body)
    headers = {"Content-Security-Policy": content_security_policy(html.decode())}

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)
