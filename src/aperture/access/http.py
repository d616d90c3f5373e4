"""/api/v1/whoami and /api/v1/keys: the caller, and API keys for administrators."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from aperture.access.domain import (
    Action,
    ApiKey,
    AssetKind,
    AssetRef,
    Caller,
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
    scopes: list[str] | None = None


class KeyIssueIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    principal: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(default_factory=lambda: [Role.RESEARCHER], min_length=1)
    expires_at: datetime | None = None
    scopes: list[str] | None = Field(None, description="Actions the key may do (default: all its roles allow).")


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
            caller,
            name=body.name,
            principal=body.principal,
            roles=tuple(body.roles),
            expires_at=body.expires_at,
            scopes=body.scopes,
        )
        return KeyIssued(**_key_out(issued.key).model_dump(), key=issued.text)

    @router.delete("/keys/{key_id}", response_model=KeyOut)
    def revoke_key(key_id: str, caller: Caller = Depends(caller_of)) -> KeyOut:
        require_role(caller, Role.ADMINISTRATOR)
        return _key_out(services.access.revoke_key(caller, key_id))

    @router.get("/principals", response_model=list[PrincipalOut], tags=["access"])
    def list_principals(caller: Caller = Depends(caller_of)) -> list[PrincipalOut]:
        require_authenticated(caller)
        services.access.require_instance(caller, Action.MANAGE_PRINCIPALS)
        return [principal_out(p) for p in services.access.list_principals()]

    @router.post("/principals", response_model=PrincipalOut, status_code=201, tags=["access"])
    def add_principal(body: PrincipalIn, caller: Caller = Depends(caller_of)) -> PrincipalOut:
        require_authenticated(caller)
        added = services.access.add_principal(
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
    def update_principal(name: str, body: PrincipalPatch, caller: Caller = Depends(caller_of)) -> PrincipalOut:
        require_authenticated(caller)
        changed = services.access.update_principal(
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
    def list_states(caller: Caller = Depends(caller_of)) -> list[StateIO]:
        require_authenticated(caller)
        return [
            StateIO(
                code=s.code,
                name=s.name,
                kind=s.kind,
                eu=s.eu,
                cyber_assurance=str(s.cyber_assurance),
                rule_of_law=s.rule_of_law,
            )
            for s in services.access.list_states()
        ]

    @router.put("/states/{code}", response_model=StateIO, tags=["access"])
    def save_state(code: str, body: StateIO, caller: Caller = Depends(caller_of)) -> StateIO:
        require_authenticated(caller)
        state = State(code, body.name, body.kind, body.eu, parse_level(body.cyber_assurance), body.rule_of_law)
        services.access.save_state(caller, state)
        return body.model_copy(update={"code": code})

    @router.get("/organisations", response_model=list[OrganisationIO], tags=["access"])
    def list_organisations(caller: Caller = Depends(caller_of)) -> list[OrganisationIO]:
        require_authenticated(caller)
        return [
            OrganisationIO(
                name=o.name,
                title=o.title,
                kind=o.kind,
                state=o.state,
                parent=o.parent,
                foreign_control=o.foreign_control,
            )
            for o in services.access.list_organisations()
        ]

    @router.put("/organisations/{name}", response_model=OrganisationIO, tags=["access"])
    def save_organisation(name: str, body: OrganisationIO, caller: Caller = Depends(caller_of)) -> OrganisationIO:
        require_authenticated(caller)
        organisation = Organisation(name, body.title, body.kind, body.state, body.parent, body.foreign_control)
        services.access.save_organisation(caller, organisation)
        return body.model_copy(update={"name": name})

    @router.get("/programmes", response_model=list[ProgrammeIO], tags=["access"])
    def list_programmes(caller: Caller = Depends(caller_of)) -> list[ProgrammeIO]:
        require_authenticated(caller)
        return [ProgrammeIO(name=p.name, title=p.title) for p in services.access.list_programmes()]

    @router.post("/programmes", response_model=ProgrammeIO, status_code=201, tags=["access"])
    def add_programme(body: ProgrammeIO, caller: Caller = Depends(caller_of)) -> ProgrammeIO:
        require_authenticated(caller)
        added = services.access.add_programme(caller, body.name, body.title)
        return ProgrammeIO(name=added.name, title=added.title)

    @router.get("/access/explain", response_model=ExplanationOut, tags=["access"])
    def explain(
        principal: str,
        action: Action,
        resource: str = Query("instance", description="`instance`, or an asset `KIND:ID`, e.g. model_version:…"),
        caller: Caller = Depends(caller_of),
    ) -> ExplanationOut:
        require_authenticated(caller)
        if caller.principal != principal:
            services.access.require_instance(caller, Action.VIEW_SECURITY)
        asset = None if resource == "instance" else asset_ref(resource)
        decision = services.access.explain(principal, action, asset)
        return ExplanationOut(
            allowed=decision.allowed,
            reasons=list(decision.reasons),
            explanation=list(decision.explanation),
            policy_version=decision.policy_version,
        )

    return router


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
