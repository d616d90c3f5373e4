"""/api/v1/whoami and /api/v1/keys: the caller, and API keys for administrators."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from aperture.access.domain import ApiKey, Caller, Role
from aperture.http_support import caller_dependency, require_authenticated, require_role

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class WhoAmI(BaseModel):
    principal: str
    roles: list[str]
    key_id: str | None


class KeyOut(BaseModel):
    key_id: str
    name: str
    principal: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyIssueIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    principal: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(default_factory=lambda: [Role.RESEARCHER], min_length=1)
    expires_at: datetime | None = None


class KeyIssued(KeyOut):
    key: str = Field(description="The key text. Shown once; only its hash is stored.")


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        key_id=key.key_id,
        name=key.name,
        principal=key.principal,
        roles=[r.value for r in key.roles],
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["access"])
    caller_of = caller_dependency(services)

    @router.get("/whoami", response_model=WhoAmI)
    def whoami(caller: Caller = Depends(caller_of)) -> WhoAmI:
        require_authenticated(caller)
        return WhoAmI(principal=caller.principal, roles=[r.value for r in caller.roles], key_id=caller.key_id)

    @router.get("/keys", response_model=list[KeyOut])
    def list_keys(caller: Caller = Depends(caller_of)) -> list[KeyOut]:
        require_role(caller, Role.ADMINISTRATOR)
        return [_key_out(key) for key in services.access.list_keys()]

    @router.post("/keys", response_model=KeyIssued, status_code=201)
    def issue_key(body: KeyIssueIn, caller: Caller = Depends(caller_of)) -> KeyIssued:
        require_role(caller, Role.ADMINISTRATOR)
        issued = services.access.issue_key(
            caller, name=body.name, principal=body.principal, roles=tuple(body.roles), expires_at=body.expires_at
        )
        return KeyIssued(**_key_out(issued.key).model_dump(), key=issued.text)

    @router.delete("/keys/{key_id}", response_model=KeyOut)
    def revoke_key(key_id: str, caller: Caller = Depends(caller_of)) -> KeyOut:
        require_role(caller, Role.ADMINISTRATOR)
        return _key_out(services.access.revoke_key(caller, key_id))

    return router
