"""/api/v1/whoami, /api/v1/keys, /api/v1/key-requests, the directory and explanations.

Handlers only authenticate (`SignedIn`); what the caller may do is decided by the access service.
A key for yourself is issued at once; a key for someone else is asked for by one administrator
and approved by a second, who receives it once."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aperture.access.domain import (
    Action,
    ApiKey,
    AssetKind,
    AssetRef,
    KeyRequest,
    Organisation,
    OrganisationKind,
    Principal,
    PrincipalKind,
    Role,
    RuleOfLaw,
    State,
    StateKind,
    Vetting,
    parse_level,
)
from aperture.core.errors import InvalidInput
from aperture.http_support import SignedIn

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class WhoAmI(BaseModel):
    principal: str
    roles: list[str]
    key_id: str | None
    issued_by: list[str] = Field(default_factory=list, description="Who issued the key (empty: yourself).")


class KeyOut(BaseModel):
    key_id: str
    name: str
    principal: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    scopes: list[str] | None = None
    issued_by: list[str] = Field(default_factory=list, description="Who issued it (empty: its holder).")


class KeyIssueIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    principal: str | None = Field(
        None, min_length=1, max_length=200, description="Yourself (the default); keys for others: /key-requests."
    )
    roles: list[Role] | None = Field(None, min_length=1, description="Default: the roles you act with.")
    expires_at: datetime | None = None
    scopes: list[str] | None = Field(None, description="Actions the key may do (default: all its roles allow).")


class KeyRequestIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    principal: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(default_factory=lambda: [Role.RESEARCHER], min_length=1)
    expires_at: datetime | None = None
    scopes: list[str] | None = Field(None, description="Actions the key may do (default: all its roles allow).")


class KeyRequestOut(BaseModel):
    id: str
    name: str
    principal: str
    roles: list[str]
    scopes: list[str] | None
    expires_at: datetime | None
    requested_by: str
    requested_at: datetime
    status: str = Field(description="pending or approved")
    approved_by: str | None
    approved_at: datetime | None
    key_id: str | None


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
        scopes=None if key.scopes is None else list(key.scopes),
        issued_by=list(key.issued_by),
    )


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["access"])
    access = services.access

    @router.get("/whoami", response_model=WhoAmI)
    def whoami(caller: SignedIn) -> WhoAmI:
        return WhoAmI(
            principal=caller.principal,
            roles=[r.value for r in caller.roles],
            key_id=caller.key_id,
            issued_by=list(caller.issued_by),
        )

    @router.get("/keys", response_model=list[KeyOut])
    def list_keys(caller: SignedIn) -> list[KeyOut]:
        return [_key_out(key) for key in access.list_keys(caller)]

    @router.post("/keys", response_model=KeyIssued, status_code=201, summary="Issue a key for yourself (shown once)")
    def issue_key(body: KeyIssueIn, caller: SignedIn) -> KeyIssued:
        issued = access.issue_key(
            caller,
            name=body.name,
            principal=body.principal or caller.principal,
            roles=None if body.roles is None else tuple(body.roles),
            expires_at=body.expires_at,
            scopes=body.scopes,
        )
        return KeyIssued(**_key_out(issued.key).model_dump(), key=issued.text)

    @router.delete("/keys/{key_id}", response_model=KeyOut)
    def revoke_key(key_id: str, caller: SignedIn) -> KeyOut:
        return _key_out(access.revoke_key(caller, key_id))

    @router.get("/key-requests", response_model=list[KeyRequestOut], summary="Key requests (administrators)")
    def list_key_requests(caller: SignedIn) -> list[KeyRequestOut]:
        return [_request_out(request) for request in access.key_requests(caller)]

    @router.post(
        "/key-requests",
        response_model=KeyRequestOut,
        status_code=201,
        summary="Ask for a key for someone else (an administrator; a second one approves)",
    )
    def request_key(body: KeyRequestIn, caller: SignedIn) -> KeyRequestOut:
        request = access.request_key(
            caller,
            name=body.name,
            principal=body.principal,
            roles=tuple(body.roles),
            expires_at=body.expires_at,
            scopes=body.scopes,
        )
        return _request_out(request)

    @router.post(
        "/key-requests/{request_id}/approve",
        response_model=KeyIssued,
        status_code=201,
        summary="Approve a key request (a second administrator): the key is shown once, to you",
    )
    def approve_key_request(request_id: str, caller: SignedIn) -> KeyIssued:
        issued = access.approve_key_request(caller, request_id)
        return KeyIssued(**_key_out(issued.key).model_dump(), key=issued.text)

    @router.get("/principals", response_model=list[PrincipalOut], tags=["access"])
    def list_principals(caller: SignedIn) -> list[PrincipalOut]:
        return [principal_out(p) for p in access.principals(caller)]

    @router.post("/principals", response_model=PrincipalOut, status_code=201, tags=["access"])
    def add_principal(body: PrincipalIn, caller: SignedIn) -> PrincipalOut:
        added = access.add_principal(
            caller,
            body.name,
            kind=body.kind,
            display_name=body.display_name,
            organisation=body.organisation,
            clearance=parse_level(body.clearance),
            vetting=body.vetting,
            roles=body.roles,
            programmes=body.programmes,
        )
        return principal_out(added)

    @router.patch("/principals/{name}", response_model=PrincipalOut, tags=["access"])
    def update_principal(name: str, body: PrincipalPatch, caller: SignedIn) -> PrincipalOut:
        changed = access.update_principal(
            caller,
            name,
            organisation=body.organisation,
            clearance=None if body.clearance is None else parse_level(body.clearance),
            vetting=body.vetting,
            roles=body.roles,
            programmes=body.programmes,
            disabled=body.disabled,
        )
        return principal_out(changed)

    @router.get("/states", response_model=list[StateIO], tags=["access"])
    def list_states(caller: SignedIn) -> list[StateIO]:
        return [
            StateIO(
                code=s.code,
                name=s.name,
                kind=s.kind,
                eu=s.eu,
                cyber_assurance=str(s.cyber_assurance),
                rule_of_law=s.rule_of_law,
            )
            for s in access.states(caller)
        ]

    @router.put("/states/{code}", response_model=StateIO, tags=["access"])
    def save_state(code: str, body: StateIO, caller: SignedIn) -> StateIO:
        state = State(code, body.name, body.kind, body.eu, parse_level(body.cyber_assurance), body.rule_of_law)
        access.save_state(caller, state)
        return body.model_copy(update={"code": code})

    @router.get("/organisations", response_model=list[OrganisationIO], tags=["access"])
    def list_organisations(caller: SignedIn) -> list[OrganisationIO]:
        return [
            OrganisationIO(
                name=o.name,
                title=o.title,
                kind=o.kind,
                state=o.state,
                parent=o.parent,
                foreign_control=o.foreign_control,
            )
            for o in access.organisations(caller)
        ]

    @router.put("/organisations/{name}", response_model=OrganisationIO, tags=["access"])
    def save_organisation(name: str, body: OrganisationIO, caller: SignedIn) -> OrganisationIO:
        organisation = Organisation(name, body.title, body.kind, body.state, body.parent, body.foreign_control)
        access.save_organisation(caller, organisation)
        return body.model_copy(update={"name": name})

    @router.get("/programmes", response_model=list[ProgrammeIO], tags=["access"])
    def list_programmes(caller: SignedIn) -> list[ProgrammeIO]:
        return [ProgrammeIO(name=p.name, title=p.title) for p in access.programmes(caller)]

    @router.post("/programmes", response_model=ProgrammeIO, status_code=201, tags=["access"])
    def add_programme(body: ProgrammeIO, caller: SignedIn) -> ProgrammeIO:
        added = access.add_programme(caller, body.name, body.title)
        return ProgrammeIO(name=added.name, title=added.title)

    @router.get("/access/explain", response_model=ExplanationOut, tags=["access"])
    def explain(
        principal: str,
        action: Action,
        caller: SignedIn,
        resource: str = Query("instance", description="`instance`, or an asset `KIND:ID`, e.g. model_version:…"),
    ) -> ExplanationOut:
        asset = None if resource == "instance" else asset_ref(resource)
        decision = access.explain(caller, principal, action, asset)
        return ExplanationOut(
            allowed=decision.allowed,
            reasons=list(decision.reasons),
            explanation=list(decision.explanation),
            policy_version=decision.policy_version,
        )

    return router


def _request_out(request: KeyRequest) -> KeyRequestOut:
    return KeyRequestOut(
        id=request.id,
        name=request.name,
        principal=request.principal,
        roles=[r.value for r in request.roles],
        scopes=None if request.scopes is None else list(request.scopes),
        expires_at=request.expires_at,
        requested_by=request.requested_by,
        requested_at=request.requested_at,
        status=request.status.value,
        approved_by=request.approved_by,
        approved_at=request.approved_at,
        key_id=request.key_id,
    )


def asset_ref(text: str) -> AssetRef:
    kind, _, asset_id = text.partition(":")
    try:
        return AssetRef(AssetKind(kind), asset_id)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not an asset reference",
            hint="give KIND:ID, KIND one of " + ", ".join(k.value for k in AssetKind),
        ) from None


class PrincipalOut(BaseModel):
    name: str
    kind: PrincipalKind
    display_name: str
    organisation: str | None
    clearance: str
    vetting: Vetting
    roles: list[Role]
    programmes: list[str]
    disabled: bool


class PrincipalIn(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    kind: PrincipalKind = PrincipalKind.PERSON
    display_name: str = ""
    organisation: str | None = None
    clearance: str = Field("SL1", description="SL1 to SL5")
    vetting: Vetting = Vetting.NONE
    roles: list[Role] = Field(default_factory=list)
    programmes: list[str] = Field(default_factory=list)


class PrincipalPatch(BaseModel):
    organisation: str | None = None
    clearance: str | None = None
    vetting: Vetting | None = None
    roles: list[Role] | None = None
    programmes: list[str] | None = None
    disabled: bool | None = None


class StateIO(BaseModel):
    code: str = ""
    name: str
    kind: StateKind
    eu: bool
    cyber_assurance: str = Field(description="SL1 to SL5: the level the state's infrastructure is assessed at")
    rule_of_law: RuleOfLaw


class OrganisationIO(BaseModel):
    name: str = ""
    title: str
    kind: OrganisationKind
    state: str
    parent: str | None = None
    foreign_control: str | None = None


class ProgrammeIO(BaseModel):
    name: str
    title: str = ""


class ExplanationOut(BaseModel):
    allowed: bool
    reasons: list[str]
    explanation: list[str]
    policy_version: str


def principal_out(principal: Principal) -> PrincipalOut:
    return PrincipalOut(
        name=principal.name,
        kind=principal.kind,
        display_name=principal.display_name,
        organisation=principal.organisation,
        clearance=str(principal.clearance),
        vetting=principal.vetting,
        roles=list(principal.roles),
        programmes=list(principal.programmes),
        disabled=principal.disabled,
    )
