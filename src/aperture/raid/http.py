"""/api/v1/raid: the RAID desk's reports, receipts, queue, items, clocks and STIX export.

Reporting and following up with a receipt need no key (a signed-in caller reports as themself).
The queue and an item are read by anyone, each caller seeing what the TLP rule lets them (the
anonymous public: TLP:CLEAR items); the clocks, the export and every change are the signed-in
desk's. The adapter authenticates and renders only: what a caller may see or do (the label, the
recipients named, the clearance of the versions an item concerns, the desk's roles) is decided by
the RAID service through the access service. An item the caller may not see answers exactly like
one that does not exist.

The request models are built per instance, with its attachment bounds, inside `build_router`; so
annotations here are evaluated when defined (no `from __future__ import annotations`), which lets
FastAPI see those models.

No per-address rate limit yet: the intake use case has no limiter hook (see docs/raid.md).
"""

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Self

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aperture.core.errors import InvalidInput
from aperture.http_support import SignedIn, Visitor
from aperture.raid.checks import RECEIPT_PATTERN
from aperture.raid.clocks import Party, Tracked
from aperture.raid.domain import (
    MAX_BINDINGS,
    MAX_CONTACT,
    MAX_NOTE,
    MAX_RECIPIENTS,
    MAX_TEXT,
    MAX_TITLE,
    Consent,
    Determination,
    Incident,
    Move,
    SourceKind,
    Status,
    TimelineEvent,
)
from aperture.raid.serious import CausalLink, Harm, Regime
from aperture.raid.service import MAX_PAGE, Attachment, Filter, Receipt, ReporterView, Submission
from aperture.raid.store import AttachmentRecord
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import parse_tlp
from aperture.risk.domain import RiskDomain

if TYPE_CHECKING:
    from aperture.bootstrap import Services

MAX_OFFSET = 1_000_000
MAX_FILTER_VALUES = 20
MAX_SEARCH = 200
MAX_REF = 63  # principals and organisations (`raid.checks.REF_PATTERN`)
MAX_MODEL_REF = 200  # NAME:VERSION or a version id, as intake reads them
MAX_DUE_HOURS = 24 * 366
MAX_FILE_NAME = 255
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
STIX_MEDIA = "application/stix+json;version=2.1"

Ref = Annotated[str, Field(min_length=1, max_length=MAX_REF)]
ModelRef = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_REF)]
IncidentId = Annotated[str, Path(pattern=UUID, description="The item's id (a UUID).")]
Digest = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{64}$", description="The attachment's SHA-256.")]
ReceiptPath = Annotated[
    str, Path(pattern=RECEIPT_PATTERN.pattern, description="The rct_... receipt given when reporting.")
]


# --- requests ------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentFields(Strict):
    name: str = Field(min_length=1, max_length=MAX_FILE_NAME, description="The file's name (shown, never a path).")
    content_base64: str = Field(min_length=1, description="The file's bytes in base64.")  # bounded per instance


def decoded(files: Sequence[AttachmentFields]) -> tuple[Attachment, ...]:
    """The attachments' bytes, from strict base64 (the service checks their number, size and kind)."""
    found = []
    for index, file in enumerate(files):
        try:
            data = base64.b64decode(file.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"attachments.{index}.content_base64 is not base64", hint="send the file's bytes in standard base64"
            ) from None
        found.append(Attachment(file.name, data))
    return tuple(found)


def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


class ReportFields(Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str = Field(min_length=1, max_length=MAX_TEXT, description="What happened.")
    tlp: str = Field("TLP:AMBER+STRICT", max_length=20, description="The TLP 2.0 label, e.g. TLP:AMBER+STRICT.")
    models: list[ModelRef] = Field(
        default_factory=list, max_length=MAX_BINDINGS, description="Model versions: NAME:VERSION or a version id."
    )
    organisations: list[Ref] = Field(default_factory=list, max_length=MAX_BINDINGS)
    recipients: list[Ref] = Field(
        default_factory=list, max_length=MAX_RECIPIENTS, description="Principals named on it (TLP:RED needs them)."
    )
    contact: str | None = Field(None, max_length=MAX_CONTACT, description="How to reach you (kept private).")
    consent: Consent = Consent.LEGAL_MINIMUM
    occurred_from: AwareDatetime | None = None
    occurred_until: AwareDatetime | None = None
    reporter_aware_at: AwareDatetime | None = Field(None, description="When you became aware.")
    website: str = Field("", max_length=200, description="Leave empty.")  # the honeypot


class InformationFields(Strict):
    text: str = Field("", max_length=MAX_TEXT, description="What you learned since (may be empty with files).")
    website: str = Field("", max_length=200, description="Leave empty.")  # the honeypot


class AssessIn(Strict):
    severity: Severity
    risk_domain: RiskDomain | None = None
    sector: Sector | None = None
    member_state: str | None = Field(None, min_length=2, max_length=2, description="ISO 3166-1 alpha-2.")
    dual_use: bool = False
    avid: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=50)
    determination: Determination = Determination.SUSPECTED
    harms: list[Harm] = Field(default_factory=list, max_length=len(Harm))
    causal_link: CausalLink = CausalLink.UNKNOWN
    regimes: list[Regime] = Field(default_factory=list, max_length=len(Regime))
    provider_is_institution: bool = False


class MoveIn(Strict):
    move: Move
    reason: str = Field("", max_length=MAX_NOTE)
    into: str | None = Field(None, pattern=UUID, description="The item it joins (merge, duplicate).")


class AssignIn(Strict):
    analyst: Ref


# --- responses -----------------------------------------------------------------------------------


class ReceiptOut(BaseModel):
    incident_id: str
    receipt: str = Field(description="Shown once: keep it to follow up and add information.")
    received_at: datetime
    follow_up: str = Field(description="Where to follow up with the receipt.")

    @classmethod
    def of(cls, receipt: Receipt) -> Self:
        return cls(
            incident_id=receipt.incident_id,
            receipt=receipt.receipt,
            received_at=receipt.received_at,
            follow_up=f"/api/v1/raid/reports/{receipt.receipt}",
        )


class AttachmentOut(BaseModel):
    sha256: str
    name: str
    media_type: str
    size: int
    added_at: datetime


class ReporterViewOut(BaseModel):
    incident_id: str
    title: str
    description: str
    status: Status
    tlp: str
    received_at: datetime
    updated_at: datetime
    models: list[str]
    additions: list[dict[str, Any]]
    attachments: list[AttachmentOut]

    @classmethod
    def of(cls, view: ReporterView) -> Self:
        return cls(
            incident_id=view.incident_id,
            title=view.title,
            description=view.description,
            status=view.status,
            tlp=view.tlp.label,
            received_at=view.received_at,
            updated_at=view.updated_at,
            models=list(view.models),
            additions=list(view.additions),
            attachments=[
                AttachmentOut(sha256=a.sha256, name=a.name, media_type=a.media_type, size=a.size, added_at=a.added_at)
                for a in view.attachments
            ],
        )


class IncidentOut(BaseModel):
    """An item as the caller may see it (outside the desk: no reporter, contact, evidence or assignee)."""

    id: str
    source: dict[str, str | None]
    title: str
    description: str
    status: Status
    tlp: str
    severity: Severity
    created_at: datetime
    updated_at: datetime
    aware_at: datetime | None
    occurred_from: datetime | None
    occurred_until: datetime | None
    reporter: dict[str, str | None]
    shared_with: dict[str, list[str]]
    bindings: list[dict[str, str]]
    assessment: dict[str, Any] | None
    facts: dict[str, str]
    assignee: str | None
    merged_into: str | None
    resolved_at: datetime | None
    closed_at: datetime | None
    evidence: dict[str, Any]

    @classmethod
    def of(cls, incident: Incident) -> Self:
        return cls(
            id=incident.id,
            source={"kind": incident.source.kind.value, "id": incident.source.id},
            title=incident.title,
            description=incident.summary,
            status=incident.status,
            tlp=incident.tlp.label,
            severity=incident.severity,
            created_at=incident.created_at,
            updated_at=incident.updated_at,
            aware_at=incident.aware_at,
            occurred_from=incident.occurred_from,
            occurred_until=incident.occurred_until,
            reporter={
                "principal": incident.reporter.principal,
                "organisation": incident.reporter.organisation,
                "consent": incident.reporter.consent.value,
            },
            shared_with={
                "principals": sorted(incident.audience.principals),
                "organisations": sorted(incident.audience.organisations),
            },
            bindings=[{"kind": b.kind.value, "ref": b.ref} for b in incident.bindings],
            assessment=None if incident.assessment is None else incident.assessment.as_dict(),
            facts=dict(incident.facts.values),
            assignee=incident.assignee,
            merged_into=incident.merged_into,
            resolved_at=incident.resolved_at,
            closed_at=incident.closed_at,
            evidence=incident.evidence,
        )


class EventOut(BaseModel):
    at: datetime
    actor: str
    kind: str
    details: dict[str, Any]

    @classmethod
    def of(cls, event: TimelineEvent) -> Self:
        return cls(at=event.at, actor=event.actor, kind=event.kind, details=event.details)


class ItemAttachmentOut(AttachmentOut):
    added_by: str

    @classmethod
    def of(cls, record: AttachmentRecord) -> Self:
        return cls(
            sha256=record.sha256,
            name=record.name,
            media_type=record.media_type,
            size=record.size,
            added_at=record.added_at,
            added_by=record.added_by,
        )


class IncidentDetailOut(IncidentOut):
    attachments: list[ItemAttachmentOut]
    timeline: list[EventOut]


class QueueOut(BaseModel):
    total: int = Field(description="Every item the filter matches that you may see.")
    limit: int
    offset: int
    items: list[IncidentOut]


class ObligationOut(BaseModel):
    id: str
    incident_id: str
    route_id: str | None
    clock: str
    kind: str
    party: str
    recipient: str
    due_at: datetime
    counts_from: str
    legal_basis: str
    met_at: datetime | None
    reminded_at: datetime | None
    overdue: bool

    @classmethod
    def of(cls, tracked: Tracked, overdue: bool) -> Self:
        o = tracked.obligation
        return cls(
            id=tracked.id,
            incident_id=tracked.incident_id,
            route_id=tracked.route_id,
            clock=o.clock.value,
            kind=o.kind,
            party=o.party.value,
            recipient=o.recipient,
            due_at=o.due_at,
            counts_from=o.counts_from,
            legal_basis=o.legal_basis,
            met_at=tracked.met_at,
            reminded_at=tracked.reminded_at,
            overdue=overdue,
        )


# --- the queue's filter --------------------------------------------------------------------------


def _filter(
    status: list[Status] | None,
    tlp: list[str] | None,
    severity: list[Severity] | None,
    source: list[SourceKind] | None,
    search: str | None,
    assignee: str | None,
    version: str | None,
) -> Filter:
    return Filter(
        statuses=tuple(s.value for s in status or ()),
        tlps=tuple(parse_tlp(t).value for t in tlp or ()),
        severities=tuple(s.value for s in severity or ()),
        source_kinds=tuple(s.value for s in source or ()),
        search=search or None,
        assignee=assignee,
        version=None if version is None else version.lower(),
    )


StatusQuery = Annotated[list[Status] | None, Query(max_length=MAX_FILTER_VALUES, description="Only these statuses.")]
TlpQuery = Annotated[
    list[Annotated[str, Field(max_length=20)]] | None,
    Query(max_length=MAX_FILTER_VALUES, description="Only these labels (TLP:AMBER, amber, ...)."),
]
SeverityQuery = Annotated[list[Severity] | None, Query(max_length=MAX_FILTER_VALUES)]
SourceQuery = Annotated[list[SourceKind] | None, Query(max_length=MAX_FILTER_VALUES)]
SearchQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_SEARCH, description="Words in the title or description.")
]
AssigneeQuery = Annotated[str | None, Query(min_length=1, max_length=MAX_REF)]
VersionQuery = Annotated[str | None, Query(pattern=UUID, description="Items bound to this model version id.")]


def build_router(services: "Services") -> APIRouter:
    router = APIRouter(prefix="/raid", tags=["RAID desk"])
    raid = services.raid
    limits = raid.context.config  # the instance's attachment bounds (APERTURE_RAID_MAX_ATTACHMENT*)

    class AttachmentIn(AttachmentFields):
        content_base64: str = Field(
            min_length=1,
            max_length=base64_length(limits.max_attachment_bytes),
            description=f"The file's bytes in base64 (at most {limits.max_attachment_bytes} bytes).",
        )

    class ReportIn(ReportFields):
        attachments: list[AttachmentIn] = Field(default_factory=list, max_length=limits.max_attachments)

    class InformationIn(InformationFields):
        attachments: list[AttachmentIn] = Field(default_factory=list, max_length=limits.max_attachments)

    # --- reporters: no key needed ---------------------------------------------------------------

    @router.post(
        "/reports",
        summary="Report an incident (no key needed; a signed-in caller reports as themself): answers a receipt",
        status_code=201,
    )
    def report(body: ReportIn, caller: Visitor) -> ReceiptOut:
        submission = Submission(
            title=body.title,
            description=body.description,
            tlp=parse_tlp(body.tlp),
            models=tuple(body.models),
            organisations=tuple(body.organisations),
            recipients=tuple(body.recipients),
            contact=body.contact,
            consent=body.consent,
            occurred_from=body.occurred_from,
            occurred_until=body.occurred_until,
            reporter_aware_at=body.reporter_aware_at,
            attachments=decoded(body.attachments),
        )
        return ReceiptOut.of(raid.intake.report(caller, submission, honeypot=body.website))

    @router.get("/reports/{receipt}", summary="Follow up a report with its receipt: what you wrote and its status")
    def follow_up(receipt: ReceiptPath) -> ReporterViewOut:
        return ReporterViewOut.of(raid.intake.follow_up(receipt))

    @router.post(
        "/reports/{receipt}/information",
        summary="Add information to a report with its receipt",
        status_code=201,
    )
    def add_information(receipt: ReceiptPath, body: InformationIn) -> ReporterViewOut:
        view = raid.intake.add_information(receipt, body.text, decoded(body.attachments), honeypot=body.website)
        return ReporterViewOut.of(view)

    # --- reading items: each caller sees what the TLP rule lets them (the public: TLP:CLEAR) ----------

    @router.get("/incidents", summary="The queue: the items you may see, newest first, with the total")
    def queue(
        caller: Visitor,
        status: StatusQuery = None,
        tlp: TlpQuery = None,
        severity: SeverityQuery = None,
        source: SourceQuery = None,
        search: SearchQuery = None,
        assignee: AssigneeQuery = None,
        version: VersionQuery = None,
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> QueueOut:
        where = _filter(status, tlp, severity, source, search, assignee, version)
        page = raid.desk.queue(caller, where, limit=limit, offset=offset)
        return QueueOut(total=page.total, limit=limit, offset=offset, items=[IncidentOut.of(i) for i in page.items])

    @router.get("/counts", summary="How many items you may see, by status")
    def counts(caller: Visitor) -> dict[str, int]:
        return raid.desk.counts(caller)

    @router.get("/incidents/{incident_id}", summary="One item with its attachments and timeline")
    def incident(incident_id: IncidentId, caller: Visitor) -> IncidentDetailOut:
        found = raid.desk.get(caller, incident_id)
        files = raid.desk.attachments(caller, incident_id)
        events = raid.desk.timeline(caller, incident_id)
        return IncidentDetailOut(
            **IncidentOut.of(found).model_dump(),
            attachments=[ItemAttachmentOut.of(f) for f in files],
            timeline=[EventOut.of(e) for e in events],
        )

    @router.get(
        "/incidents/{incident_id}/attachments/{sha256}",
        summary="Download one of an item's attachments (always as a download, never shown inline)",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def attachment(incident_id: IncidentId, sha256: Digest, caller: Visitor) -> Response:
        record, data = raid.desk.attachment(caller, incident_id, sha256.lower())
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", record.name)[:100] or "attachment"
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
            },
        )

    # --- the desk: signed in ---------------------------------------------------------------------

    @router.get("/incidents/{incident_id}/obligations", summary="An item's clocks: every obligation and its deadline")
    def obligations(incident_id: IncidentId, caller: SignedIn) -> list[ObligationOut]:
        now = services.clock.now()
        return [ObligationOut.of(t, t.overdue(now)) for t in raid.routing.obligations(caller, incident_id)]

    @router.get("/due", summary="The clocks dashboard: open obligations due soon, overdue first (the desk)")
    def due(
        caller: SignedIn,
        within_hours: int = Query(7 * 24, ge=1, le=MAX_DUE_HOURS, description="Due within this many hours."),
        party: Party | None = Query(None, description="reporter or raid."),
    ) -> list[ObligationOut]:
        found = raid.routing.due(caller, within=timedelta(hours=within_hours), party=party)
        return [ObligationOut.of(d.obligation, d.overdue) for d in found]

    @router.get(
        "/export.stix",
        summary="A STIX 2.1 bundle of the items you may see (the desk), with the queue's filters",
        response_class=Response,
        responses={200: {"content": {STIX_MEDIA: {}}}},
    )
    def export(
        caller: SignedIn,
        status: StatusQuery = None,
        tlp: TlpQuery = None,
        severity: SeverityQuery = None,
        source: SourceQuery = None,
        search: SearchQuery = None,
        assignee: AssigneeQuery = None,
        version: VersionQuery = None,
    ) -> Response:
        where = _filter(status, tlp, severity, source, search, assignee, version)
        text = raid.sharing.export(caller, where)
        return Response(
            text, media_type=STIX_MEDIA, headers={"Content-Disposition": 'attachment; filename="raid-export.json"'}
        )

    # --- the desk's changes ----------------------------------------------------------------------

    @router.post("/incidents/{incident_id}/assessment", summary="Assess an item (triage): severity and the facts")
    def assess(incident_id: IncidentId, body: AssessIn, caller: SignedIn) -> IncidentOut:
        return IncidentOut.of(
            raid.desk.assess(
                caller,
                incident_id,
                severity=body.severity,
                risk_domain=body.risk_domain,
                sector=body.sector,
                member_state=body.member_state,
                dual_use=body.dual_use,
                avid=body.avid,
                determination=body.determination,
                harms=body.harms,
                causal_link=body.causal_link,
                regimes=body.regimes,
                provider_is_institution=body.provider_is_institution,
            )
        )

    @router.post("/incidents/{incident_id}/moves", summary="Move an item by the lifecycle's transition table")
    def move(incident_id: IncidentId, body: MoveIn, caller: SignedIn) -> IncidentOut:
        return IncidentOut.of(raid.desk.move(caller, incident_id, body.move, reason=body.reason, into=body.into))

    @router.post("/incidents/{incident_id}/assignee", summary="Give an item to a RAID analyst cleared for it")
    def assign(incident_id: IncidentId, body: AssignIn, caller: SignedIn) -> IncidentOut:
        return IncidentOut.of(raid.desk.assign(caller, incident_id, body.analyst))

    return router
