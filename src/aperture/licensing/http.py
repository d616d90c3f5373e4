"""/api/v1/licensing/...: the public catalogue, applications, screening and decisions, licences,
receivables, traceable copies and their single-use downloads, trace reports, diffusion."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from aperture.core.errors import TooLarge
from aperture.http_support import SignedIn, Visitor
from aperture.licensing.domain import (
    LICENCE_TEXT,
    TRANSITIONS,
    Application,
    Copy,
    Licence,
    Receivable,
    format_amount,
    parse_amount,
)

if TYPE_CHECKING:
    from aperture.bootstrap import Services

MAX_SUSPECT_BYTES = 64 * 1024**3


class CatalogueOut(BaseModel):
    model: str = Field(description="The model's name, or the public registry's label of a redacted entry")
    version: str | None
    minimum_security_level: str
    licence_text_version: str
    active_licences: int | None
    redacted: bool = Field(False, description="Upper tier and you are not cleared for it: name and counts withheld")
    withheld: str | None = Field(None, description="What a redacted entry withholds, why, and how to see it")


class ApplicationIn(BaseModel):
    model: str = Field(description="NAME:VERSION of a model in the licensed tier")
    intended_use: str = Field(min_length=1, max_length=4000)
    fields_of_use: list[str] = Field(min_length=1, max_length=20)
    territories: list[str] = Field(min_length=1, max_length=50, description="ISO codes, EU, EEA or WORLD")
    security_level: int = Field(ge=1, le=5, description="The security level the applicant claims (SL1-SL5)")
    certifications: list[str] = Field(default_factory=list, max_length=20)
    incidents: str = Field("", max_length=4000, description="Incident history")
    parent: str | None = Field(None, max_length=300, description="Parent company")
    non_eu_control: str | None = Field(None, max_length=2, description="State code of a non-EU controlling party")
    fee: str = Field("0", description="Fee or programme contribution per year, e.g. 250000.00")
    currency: str = Field("EUR", min_length=3, max_length=3)
    schedule: str = Field("annual", description="once, annual or quarterly")
    term_months: int = Field(24, ge=1, le=120)


class ScreeningOut(BaseModel):
    question: str
    answer: str
    note: str
    evidence: list[str]
    by: str
    at: datetime


class ApplicationOut(BaseModel):
    id: str
    organisation: str
    applicant: str
    model: str
    status: str
    intended_use: str
    fields_of_use: list[str]
    territories: list[str]
    security_level: str
    fee: str
    schedule: str
    term_months: int
    upper_tier: bool
    submitted_at: datetime
    updated_at: datetime
    reasons: str
    decided_by: list[str]
    screening: list[ScreeningOut]
    responses: list[str]


class ScreenIn(BaseModel):
    question: str
    answer: str = Field(description="pass, fail or needs_review")
    note: str = Field("", max_length=4000)


class DecisionIn(BaseModel):
    outcome: str = Field(description="approve, reject or request_information")
    reasons: str = Field("", max_length=4000)


class AnswerIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class LicenceIn(BaseModel):
    application_id: str
    starts_on: date | None = None
    sublicensing: bool = False


class LicenceOut(BaseModel):
    id: str
    application_id: str | None
    state: str
    terms: dict[str, Any]
    reason: str
    created_at: datetime
    updated_at: datetime


class EventIn(BaseModel):
    event: str = Field(description="activate, suspend, reinstate or revoke")
    reason: str = Field("", max_length=4000)


class ReceivableOut(BaseModel):
    id: str
    licence_id: str
    organisation: str
    due_on: date
    amount: str
    amount_minor: int
    currency: str
    status: str


class CopyOut(BaseModel):
    id: str
    licence_id: str
    organisation: str
    model: str
    commitment: str
    self_test_z: float
    files: list[dict[str, Any]]
    created_at: datetime


class TokenOut(BaseModel):
    token: str = Field(description="Single use; valid until expires_at. Shown once.")
    url: str
    expires_at: datetime


class TraceOut(BaseModel):
    id: str
    report: dict[str, Any]
    signature: str
    signing_key_id: str


class DiffusionIn(BaseModel):
    model: str
    target: str = Field(description="open or partners")
    decision_id: str = Field(min_length=1, max_length=100)
    acknowledge_end_of_traceability: bool = False
    reason: str = Field("", max_length=4000)


def application_out(application: Application) -> ApplicationOut:
    return ApplicationOut(
        id=application.id,
        organisation=application.organisation,
        applicant=application.applicant,
        model=application.model,
        status=application.status.value,
        intended_use=application.intended_use,
        fields_of_use=list(application.fields_of_use),
        territories=list(application.territories),
        security_level=f"SL{application.posture.claimed_level}",
        fee=format_amount(application.funding.amount_minor, application.funding.currency),
        schedule=application.funding.schedule.value,
        term_months=application.term_months,
        upper_tier=application.upper_tier,
        submitted_at=application.submitted_at,
        updated_at=application.updated_at,
        reasons=application.reasons,
        decided_by=list(application.decided_by),
        screening=[
            ScreeningOut(
                question=a.question, answer=a.answer.value, note=a.note, evidence=list(a.evidence), by=a.by, at=a.at
            )
            for a in application.screening
        ],
        responses=list(application.responses),
    )


def licence_out(licence: Licence) -> LicenceOut:
    return LicenceOut(
        id=licence.id,
        application_id=licence.application_id,
        state=licence.state.value,
        terms=licence.terms.as_dict(),
        reason=licence.reason,
        created_at=licence.created_at,
        updated_at=licence.updated_at,
    )


def receivable_out(item: Receivable) -> ReceivableOut:
    return ReceivableOut(
        id=item.id,
        licence_id=item.licence_id,
        organisation=item.organisation,
        due_on=item.due_on,
        amount=format_amount(item.amount_minor, item.currency),
        amount_minor=item.amount_minor,
        currency=item.currency,
        status=item.status,
    )


def copy_out(copy: Copy) -> CopyOut:
    return CopyOut(
        id=copy.id,
        licence_id=copy.licence_id,
        organisation=copy.organisation,
        model=copy.model,
        commitment=copy.commitment,
        self_test_z=copy.self_test_z,
        files=[{"path": f.path, "sha256": f.sha256, "size": f.size, "marked": f.marked} for f in copy.files],
        created_at=copy.created_at,
    )


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/licensing", tags=["licensing"])
    licensing = services.licensing

    @router.get("/catalogue", response_model=list[CatalogueOut], summary="Models offered under licence (public)")
    def catalogue(caller: Visitor) -> list[CatalogueOut]:
        return [CatalogueOut(**entry.__dict__) for entry in licensing.catalogue(caller)]

    @router.get("/terms", summary="The standard licence text, its version and the lifecycle (public)")
    def terms() -> dict[str, Any]:
        return {
            "text_version": "1",
            "text": LICENCE_TEXT,
            "transitions": [{"from": s.value, "event": e.value, "to": t.value} for (s, e), t in TRANSITIONS.items()],
            "screening_questions": [{"id": q.id, "text": q.text} for q in licensing.checklist()],
        }

    @router.post("/applications", response_model=ApplicationOut, status_code=201, summary="Apply for a licence")
    def apply(body: ApplicationIn, caller: SignedIn) -> ApplicationOut:
        application = licensing.apply(
            caller,
            body.model,
            intended_use=body.intended_use,
            fields_of_use=body.fields_of_use,
            territories=body.territories,
            claimed_level=body.security_level,
            certifications=body.certifications,
            incidents=body.incidents,
            parent=body.parent,
            non_eu_control=body.non_eu_control,
            fee_minor=parse_amount(body.fee),
            currency=body.currency,
            schedule=body.schedule,
            term_months=body.term_months,
        )
        return application_out(application)

    @router.get("/applications", response_model=list[ApplicationOut], summary="Yours; officers: all, or the queue")
    def list_applications(
        caller: SignedIn,
        queue: bool = Query(False, description="Officers: only those waiting for an officer"),
    ) -> list[ApplicationOut]:
        return [application_out(a) for a in licensing.list_applications(caller, queue=queue)]

    @router.get("/applications/{application_id}", response_model=ApplicationOut)
    def get_application(application_id: str, caller: SignedIn) -> ApplicationOut:
        return application_out(licensing.get_application(caller, application_id))

    @router.post("/applications/{application_id}/screening", response_model=ApplicationOut, summary="Answer a question")
    def screen(application_id: str, body: ScreenIn, caller: SignedIn) -> ApplicationOut:
        return application_out(licensing.screen(caller, application_id, body.question, body.answer, body.note))

    @router.post("/applications/{application_id}/decision", response_model=ApplicationOut, summary="An officer decides")
    def decide(application_id: str, body: DecisionIn, caller: SignedIn) -> ApplicationOut:
        return application_out(licensing.decide(caller, application_id, body.outcome, body.reasons))

    @router.post(
        "/applications/{application_id}/second-approval",
        response_model=ApplicationOut,
        summary="The second approver (upper-tier models)",
    )
    def second(application_id: str, caller: SignedIn) -> ApplicationOut:
        return application_out(licensing.second_approval(caller, application_id))

    @router.post("/applications/{application_id}/answers", response_model=ApplicationOut, summary="Answer a request")
    def answer(application_id: str, body: AnswerIn, caller: SignedIn) -> ApplicationOut:
        return application_out(licensing.answer_request(caller, application_id, body.text))

    @router.post("/licences", response_model=LicenceOut, status_code=201, summary="Draft terms from an approval")
    def grant(body: LicenceIn, caller: SignedIn) -> LicenceOut:
        licence = licensing.grant_licence(
            caller, body.application_id, starts_on=body.starts_on, sublicensing=body.sublicensing
        )
        return licence_out(licence)

    @router.get("/licences", response_model=list[LicenceOut], summary="Yours; officers: all")
    def list_licences(caller: SignedIn) -> list[LicenceOut]:
        return [licence_out(licence) for licence in licensing.list_licences(caller)]

    @router.get("/licences/{licence_id}", response_model=LicenceOut)
    def get_licence(licence_id: str, caller: SignedIn) -> LicenceOut:
        return licence_out(licensing.get_licence(caller, licence_id))

    @router.post(
        "/licences/{licence_id}/events", response_model=LicenceOut, summary="activate/suspend/reinstate/revoke"
    )
    def change(licence_id: str, body: EventIn, caller: SignedIn) -> LicenceOut:
        return licence_out(licensing.change_licence(caller, licence_id, body.event, body.reason))

    @router.get("/licences/{licence_id}/receivables", response_model=list[ReceivableOut])
    def receivables(licence_id: str, caller: SignedIn) -> list[ReceivableOut]:
        return [receivable_out(item) for item in licensing.receivables(caller, licence_id)]

    @router.get("/receivables", response_model=list[ReceivableOut], summary="Every receivable (officers)")
    def all_receivables(caller: SignedIn) -> list[ReceivableOut]:
        return [receivable_out(item) for item in licensing.receivables(caller)]

    @router.post("/licences/{licence_id}/copies", response_model=CopyOut, status_code=201, summary="Make a marked copy")
    def issue_copy(licence_id: str, caller: SignedIn) -> CopyOut:
        return copy_out(licensing.issue_copy(caller, licence_id))

    @router.get("/licences/{licence_id}/copies", response_model=list[CopyOut])
    def list_copies(licence_id: str, caller: SignedIn) -> list[CopyOut]:
        return [copy_out(copy) for copy in licensing.list_copies(caller, licence_id)]

    @router.post("/copies/{copy_id}/tokens", response_model=TokenOut, status_code=201, summary="A single-use token")
    def token(copy_id: str, caller: SignedIn) -> TokenOut:
        issued = licensing.issue_download_token(caller, copy_id)
        return TokenOut(
            token=issued.token, url=f"/api/v1/licensing/downloads/{issued.token}", expires_at=issued.expires_at
        )

    @router.get(
        "/downloads/{token}",
        summary="Stream the licensee's marked copy (a tar) under a single-use token",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-tar": {}}}},
    )
    def download(token: str, caller: SignedIn) -> StreamingResponse:
        found = licensing.redeem(caller, token)
        headers = {"Content-Disposition": f'attachment; filename="{found.filename}"'}
        return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)

    @router.post("/traces", response_model=TraceOut, status_code=201, summary="Trace a suspect model (upload)")
    def trace(
        caller: SignedIn,
        file: UploadFile = File(description="A safetensors or GGUF file"),
        model: str | None = Query(None, description="NAME:VERSION of the original, when known"),
    ) -> TraceOut:
        licensing.require_tracer(caller)
        with tempfile.TemporaryDirectory(prefix="aperture-trace-") as folder:
            name = Path(file.filename or "suspect").name or "suspect"
            target = Path(folder) / name
            with target.open("wb") as out:
                copied = 0
                while block := file.file.read(8 * 1024 * 1024):
                    copied += len(block)
                    if copied > MAX_SUSPECT_BYTES:
                        raise TooLarge("the suspect file is larger than 64 GiB", hint="trace it with the CLI")
                    out.write(block)
            result = licensing.trace(caller, target, model=model)
        return TraceOut(
            id=result.trace_id, report=result.report, signature=result.signature, signing_key_id=result.key_id
        )

    @router.get("/traces", summary="Trace reports (officers)")
    def traces(caller: SignedIn) -> list[dict[str, Any]]:
        return licensing.list_traces(caller)

    @router.get("/traces/{trace_id}", response_model=TraceOut)
    def get_trace(trace_id: str, caller: SignedIn) -> TraceOut:
        result = licensing.get_trace(caller, trace_id)
        return TraceOut(
            id=result.trace_id, report=result.report, signature=result.signature, signing_key_id=result.key_id
        )

    @router.post("/diffusions", status_code=201, summary="End-of-programme diffusion (open or partners)")
    def diffuse(body: DiffusionIn, caller: SignedIn) -> dict[str, Any]:
        return licensing.diffuse(
            caller,
            body.model,
            body.target,
            decision_id=body.decision_id,
            acknowledge=body.acknowledge_end_of_traceability,
            reason=body.reason,
        )

    return router
