"""A bound on every request body the app reads, declared or streamed.

Starlette reads a JSON or form body whole before it is validated, so without a bound one request
could make the process hold gigabytes. This ASGI middleware gives the app a `receive` that raises
a 413 HTTP exception once the body declares or streams past its path's limit; FastAPI re-raises
that from its body parsing, the app's handler answers it in the usual error shape (JSON for the
API, the error page for pages), and nothing is stored because the route's handler never ran.
(Starlette's own RequestBodyLimitMiddleware answers a declared overflow in plain text, replacing
the app's answer, hence this one.)
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_HINT = "send less: shorter text, fewer or smaller files"
LIMIT_SCOPE_KEY = "aperture.max_body_bytes"


class BodyLimit:
    """`limits` are (path prefix, bytes); the longest matching prefix wins, `default` elsewhere."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default = default
        self.limits = sorted(limits, key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        scope[LIMIT_SCOPE_KEY] = limit
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        over = declared.isdigit() and int(declared) > limit
        received = 0

        async def bounded() -> Message:
            nonlocal received
            if over:
                raise HTTPException(413, f"the request body is larger than {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, bounded, send)
