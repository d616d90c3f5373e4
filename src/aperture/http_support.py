"""What every area's HTTP adapter shares: the caller from the bearer key, and role checks.

Each area's `http.py` exposes `build_router(services) -> fastapi.APIRouter`; `web/app.py` mounts
them under `/api/v1`. Errors are raised as `ApertureError`s and mapped once, in `web/app.py`, to
a status and `{"error": {"code", "message", "hint"}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from fastapi import Request

from aperture.access.domain import ANONYMOUS, Caller, Role
from aperture.core.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from aperture.bootstrap import Services


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def caller_dependency(services: Services) -> Callable[[Request], Caller]:
    """A FastAPI dependency: the authenticated caller, or ANONYMOUS when no key is sent.

    A key that is sent but wrong is an error (401), never a silent downgrade to anonymous.
    """

    def caller(request: Request) -> Caller:
        token = bearer_token(request)
        origin = request.client.host if request.client else None
        if token is None:
            return replace(ANONYMOUS, origin=origin)
        return services.access.authenticate(token, origin=origin)

    return caller


def require_authenticated(caller: Caller) -> Caller:
    if caller.principal == ANONYMOUS.principal or (caller.key_id is None and not caller.session):
        raise Unauthenticated("this endpoint needs an API key", hint="send `Authorization: Bearer apk_...`")
    return caller


def require_role(caller: Caller, *roles: Role) -> Caller:
    require_authenticated(caller)
    if not any(caller.has(role) for role in roles) and not caller.has(Role.ADMINISTRATOR):
        wanted = ", ".join(role.value for role in roles)
        raise Forbidden(f"this needs one of the roles: {wanted}", hint="ask an administrator for a key with that role")
    return caller
