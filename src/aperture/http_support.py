"""What every area's HTTP adapter shares: the caller from the bearer key (`Visitor`, `SignedIn`).

Each area's `http.py` exposes `build_router(services) -> fastapi.APIRouter`; `web/app.py` mounts
them under `/api/v1`. Errors are raised as `ApertureError`s and mapped once, in `web/app.py`, to
a status and `{"error": {"code", "message", "hint"}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

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
    (The release, licensing and gateway adapters still use it; the others take `Visitor`/`SignedIn`.)
    """

    def caller(request: Request) -> Caller:
        token = bearer_token(request)
        origin = request.client.host if request.client else None
        if token is None:
            return replace(ANONYMOUS, origin=origin)
        return services.access.authenticate(token, origin=origin)

    return caller


def services_of(request: Request) -> Services:
    """The services the app was built with (`create_app` keeps them in `app.state`)."""
    services: Services = request.app.state.services
    return services


def _visitor(request: Request) -> Caller:
    token = bearer_token(request)
    origin = request.client.host if request.client else None
    if token is None:
        return replace(ANONYMOUS, origin=origin)
    return services_of(request).access.authenticate(token, origin=origin)


def _signed_in(request: Request) -> Caller:
    return require_authenticated(_visitor(request))


# The two typed dependencies every handler takes its caller from. They authenticate only: what the
# caller may do is decided by the use case, through the access service.
Visitor = Annotated[Caller, Depends(_visitor)]
"""Anyone: the caller behind the bearer key, or ANONYMOUS when none is sent (a wrong key is a 401)."""
SignedIn = Annotated[Caller, Depends(_signed_in)]
"""A caller with a key (or a session): anonymous requests get a 401 before the handler runs."""


def require_authenticated(caller: Caller) -> Caller:
    if caller.principal == ANONYMOUS.principal or (caller.key_id is None and not caller.session):
        raise Unauthenticated("this endpoint needs an API key", hint="send `Authorization: Bearer apk_...`")
    return caller


def require_role(caller: Caller, *roles: Role) -> Caller:
    """Deprecated: decisions are the access service's. Left only for the release, licensing and
    gateway adapters until they are converted; then it goes."""
    require_authenticated(caller)
    if not any(caller.has(role) for role in roles) and not caller.has(Role.ADMINISTRATOR):
        wanted = ", ".join(role.value for role in roles)
        raise Forbidden(f"this needs one of the roles: {wanted}", hint="ask an administrator for a key with that role")
    return caller
