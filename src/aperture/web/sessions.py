"""UI sessions in signed cookies (itsdangerous), with a CSRF token for every form.

Every page visitor gets a session cookie holding a random CSRF token; signing in adds a random
session id, whose hash the database keeps (`access_sessions`). The session ends on the server when
its holder signs out, the password changes, the account is disabled or its roles change: every
copy of the cookie stops working at once. The cookie is HttpOnly and SameSite=Strict, Secure when
APERTURE_COOKIE_SECURE is set; forms carry the token in a hidden field, checked on every POST.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from aperture.access.domain import ANONYMOUS, Caller
from aperture.core.errors import Forbidden

COOKIE = "aperture_session"
API_PREFIXES = ("/api/", "/v1/", "/static/", "/healthz", "/metrics")


class Sessions:
    def __init__(self, secret: bytes, ttl_s: int, secure: bool) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="aperture.session.v1")
        self.ttl_s = ttl_s
        self.secure = secure

    def load(self, request: Request) -> dict[str, Any]:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return {}
        try:
            data = self.serializer.loads(raw, max_age=self.ttl_s)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def store(self, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            max_age=self.ttl_s,
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )

    def middleware(self) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
        async def ensure_session(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if request.url.path.startswith(API_PREFIXES):
                return await call_next(request)
            data = self.load(request)
            fresh = "csrf" not in data
            if fresh:
                data = {"csrf": secrets.token_urlsafe(24)}
            request.state.session = data
            request.state.session_changed = fresh
            response = await call_next(request)
            if getattr(request.state, "session_changed", False):
                self.store(response, request.state.session)
            return response

        return ensure_session


def session(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = getattr(request.state, "session", {})
    return data


def replace_session(request: Request, data: dict[str, Any]) -> None:
    request.state.session = data
    request.state.session_changed = True


def check_csrf(request: Request, submitted: str) -> None:
    expected = session(request).get("csrf", "")
    if not expected or not hmac.compare_digest(str(expected), submitted):
        raise Forbidden("the form's security token is missing or stale", hint="reload the page and submit it again")


def session_id(request: Request) -> str | None:
    """The session id of a signed-in cookie, if any."""
    value = session(request).get("sid")
    return value if isinstance(value, str) and value else None


def viewer(request: Request, load: Callable[[str, str | None], Caller | None]) -> Caller:
    """The signed-in person behind the cookie's session (if it is still live), or the anonymous public."""
    origin = request.client.host if request.client else None
    sid = session_id(request)
    if sid is not None:
        found = load(sid, origin)
        if found is not None:
            return found
    return Caller(ANONYMOUS.principal, ANONYMOUS.roles, origin=origin)
