"""/api/v1/seal, /api/v1/grants, /api/v1/downloads, /api/v1/security: the security desk over HTTP.

Handlers are plain `def` (they block on the database); a download streams through a generator
that FastAPI iterates in its thread pool, one authenticated chunk at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from aperture.access.domain import Action
from aperture.http_support import SignedIn
from aperture.security.domain import Alert
from aperture.security.service import GrantView
from aperture.vault.service import SealStatus

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class SealOut(BaseModel):
    initialised: bool
    sealed: bool
    threshold: int
    shares: int
    presented: int
    custodians: list[str]


class ShareIn(BaseModel):
    share: str = Field(min_length=1, max_length=200, description="Your unseal share: aps1-...")


class GrantIn(BaseModel):
    model: str = Field(description="NAME:VERSION of an upper-tier model version")
    action: Action = Field(description="download, export or copy_to_hub")
    reason: str = Field(min_length=1, max_length=2000)
    hours: float = Field(8, gt=0)
    hub: str | None = Field(None, description="The compute hub, for copy_to_hub")


class GrantOut(BaseModel):
    id: str
    model: str
    action: str
    state: str = Field(description="pending, approved, expired or revoked")
    requester: str
    reason: str
    hub: str | None
    requested_at: datetime
    approver: str | None
    officer: str | None
    expires_at: datetime | None
    revoked_by: str | None


class TokenIn(BaseModel):
    path: str | None = Field(None, description="The file to download (downloads only)")


class TokenOut(BaseModel):
    token: str = Field(description="Single use; valid until expires_at. Shown once.")
    url: str
    expires_at: datetime


class AlertOut(BaseModel):
    id: str
    raised_at: datetime
    severity: str
    kind: str
    principal: str
    asset: str | None
    origin: str | None
    summary: str
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def seal_out(status: SealStatus) -> SealOut:
    return SealOut(
        initialised=status.initialised,
        sealed=status.sealed,
        threshold=status.threshold,
        shares=status.shares,
        presented=status.presented,
        custodians=list(status.custodians),
    )


def grant_out(view: GrantView) -> GrantOut:
    grant = view.grant
    return GrantOut(
        id=grant.id,
        model=view.label,
        action=grant.action.value,
        state=view.state,
        requester=grant.requester,
        reason=grant.reason,
        hub=grant.hub,
        requested_at=grant.requested_at,
        approver=grant.approver,
        officer=grant.officer,
        expires_at=grant.expires_at,
        revoked_by=grant.revoked_by,
    )


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        raised_at=alert.raised_at,
        severity=alert.severity.value,
        kind=alert.kind.value,
        principal=alert.principal,
        asset=alert.asset.uid if alert.asset else None,
        origin=alert.origin,
        summary=alert.summary,
        details=alert.details,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
    )


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["security"])
    security = services.security

    @router.get("/seal", response_model=SealOut, summary="Whether the upper tier is sealed")
    def seal_status(caller: SignedIn) -> SealOut:
        return seal_out(security.seal_status(caller))

    @router.post("/seal/shares", response_model=SealOut, summary="A key custodian presents their unseal share")
    def present_share(body: ShareIn, caller: SignedIn) -> SealOut:
        return seal_out(security.present_share(caller, body.share).status)

    @router.post("/seal/seal", response_model=SealOut, summary="Seal the upper tier now (security officer)")
    def seal_now(caller: SignedIn) -> SealOut:
        return seal_out(security.seal(caller))

    @router.get("/grants", response_model=list[GrantOut], summary="Grants you requested, approved or may approve")
    def list_grants(caller: SignedIn) -> list[GrantOut]:
        return [grant_out(view) for view in security.list_grants(caller)]

    @router.post("/grants", response_model=GrantOut, status_code=201, summary="Request a weight-access grant")
    def request_grant(body: GrantIn, caller: SignedIn) -> GrantOut:
        grant = security.request_grant(
            caller, body.model, body.action, reason=body.reason, hours=body.hours, hub=body.hub
        )
        return grant_out(security.get_grant(caller, grant.id))

    @router.get("/grants/{grant_id}", response_model=GrantOut)
    def get_grant(grant_id: str, caller: SignedIn) -> GrantOut:
        return grant_out(security.get_grant(caller, grant_id))

    @router.post("/grants/{grant_id}/approve", response_model=GrantOut, summary="Approve (a second, distinct person)")
    def approve_grant(grant_id: str, caller: SignedIn) -> GrantOut:
        security.approve_grant(caller, grant_id)
        return grant_out(security.get_grant(caller, grant_id))

    @router.post("/grants/{grant_id}/revoke", response_model=GrantOut)
    def revoke_grant(grant_id: str, caller: SignedIn) -> GrantOut:
        security.revoke_grant(caller, grant_id)
        return grant_out(security.get_grant(caller, grant_id))

    @router.post("/grants/{grant_id}/tokens", response_model=TokenOut, status_code=201, summary="A single-use token")
    def issue_token(grant_id: str, body: TokenIn, caller: SignedIn) -> TokenOut:
        issued = security.issue_token(caller, grant_id, body.path)
        return TokenOut(token=issued.token, url=f"/api/v1/downloads/{issued.token}", expires_at=issued.expires_at)

    @router.get(
        "/downloads/{token}",
        summary="Stream the weights under a single-use token (the requester's key too)",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def download(token: str, caller: SignedIn) -> StreamingResponse:
        found = security.redeem(caller, token)
        headers = {"Content-Disposition": f'attachment; filename="{found.filename}"'}
        if found.size is not None:
            headers["Content-Length"] = str(found.size)
        return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)

    @router.get("/security/alerts", response_model=list[AlertOut], summary="Alerts for the security officer")
    def list_alerts(
        caller: SignedIn,
        open_only: bool = Query(False, description="Only alerts nobody acknowledged"),
    ) -> list[AlertOut]:
        return [alert_out(alert) for alert in security.alerts(caller, open_only=open_only)]

    @router.post("/security/alerts/{alert_id}/acknowledge", status_code=204, response_class=Response)
    def acknowledge(alert_id: str, caller: SignedIn) -> Response:
        security.acknowledge(caller, alert_id)
        return Response(status_code=204)

    return router
