"""The RAID record and its lifecycle. Pure: frozen dataclasses, a transition table, functions.

One record, many renderings (STIX incident-core, CSAF, CoP 9.2 and NIS2 drafts, the queue): an
item comes in from the public, a partner, a STIX bundle or the platform's own alerts; it is bound to
the model versions, licences, licensees and organisations it concerns; `aware_at` (when we learned)
is kept apart from the event's own dates; triage classifies it (OECD severity, AVID codes, risk
domain, sector, member state, dual use, the serious-incident facts); the lifecycle moves it by the
transition table, each move made by the roles its action names (Cedar decides).

Text is stored as text: HTML and script in any field stay inert characters; every rendering
escapes them for its own format.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from aperture.access.domain import Action
from aperture.core.errors import Conflict, InvalidInput, TooLarge
from aperture.raid.checks import check_ref, check_text
from aperture.raid.serious import CausalLink, Harm, Regime, SeriousnessFacts
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import Audience, Tlp
from aperture.risk.domain import RiskDomain

MAX_TITLE = 200
MAX_TEXT = 20_000
MAX_NOTE = 4_000
MAX_BINDINGS = 50
MAX_RECIPIENTS = 50
MAX_CONTACT = 320
MAX_SOURCE_ID = 200
INTAKE_ASSESSOR = "intake"  # an assessment by this name is only the source's hint: triage needs a person's


class SourceKind(StrEnum):
    PUBLIC = "public"  # the public report form, no account
    PARTNER = "partner"  # an organisation's authenticated caller
    STIX = "stix"  # a partner's STIX 2.1 bundle
    DESK = "desk"  # recorded by the desk itself (a call, a letter, the press)
    GATEWAY_ALERT = "gateway-alert"  # misuse of the hosted API
    SECURITY_ALERT = "security-alert"  # canary touches, access anomalies
    RISK_CROSSING = "risk-crossing"  # an assessment run whose profile crosses a policy threshold
    LICENSING_TRACE = "licensing-trace"  # a trace report that accuses a licensee
    LICENCE_BREACH = "licence-breach"  # a licence suspended or revoked for a breach

    @property
    def automatic(self) -> bool:
        return self in AUTOMATIC


AUTOMATIC = frozenset(
    {
        SourceKind.GATEWAY_ALERT,
        SourceKind.SECURITY_ALERT,
        SourceKind.RISK_CROSSING,
        SourceKind.LICENSING_TRACE,
        SourceKind.LICENCE_BREACH,
    }
)


@dataclass(frozen=True, slots=True)
class Source:
    kind: SourceKind
    id: str | None = None  # the source record's id: automatic intake is idempotent on (kind, id)


class BindingKind(StrEnum):
    MODEL_VERSION = "model_version"
    LICENCE = "licence"
    LICENSEE = "licensee"  # an organisation holding a licence
    ORGANISATION = "organisation"  # a developer, deployer or gateway customer


@dataclass(frozen=True, slots=True)
class Binding:
    kind: BindingKind
    ref: str


class Detection(StrEnum):
    """STIX incident-core `detection_methods` (open vocabulary)."""

    AUTOMATED_TOOL = "automated-tool"
    HUMAN_REVIEW = "human-review"
    USER_REPORTING = "user-reporting"
    MESSAGE_FROM_ATTACKER = "message-from-attacker"
    SYSTEM_OUTAGE = "system-outage"


class Determination(StrEnum):
    """STIX incident-core `determination`: `suspected` until enough is known."""

    SUSPECTED = "suspected"
    SUCCESSFUL_ATTEMPT = "successful-attempt"
    FAILED_ATTEMPT = "failed-attempt"
    BLOCKED = "blocked"
    FALSE_POSITIVE = "false-positive"
    LOW_VALUE = "low-value"


class Consent(StrEnum):
    """What the reporter allows beyond what the law requires (independence, seed 001)."""

    LEGAL_MINIMUM = "legal-minimum"  # share only what the law requires, never who reported
    ANONYMISED = "anonymised"  # the report may go to competent bodies, without the reporter's identity
    FULL = "full"  # the report and the reporter's identity may go to competent bodies


@dataclass(frozen=True, slots=True)
class Reporter:
    principal: str | None = None  # a signed-in partner; None for the public and the platform
    organisation: str | None = None
    contact: str | None = None  # personal data: never in the log, exports or forwarded reports without consent
    consent: Consent = Consent.LEGAL_MINIMUM


@dataclass(frozen=True, slots=True)
class Assessment:
    """Triage: how bad, what kind, where, and the facts the serious-incident tests read."""

    severity: Severity
    risk_domain: RiskDomain | None = None
    sector: Sector | None = None
    member_state: str | None = None
    dual_use: bool = False
    avid: tuple[str, ...] = ()
    determination: Determination = Determination.SUSPECTED
    harms: frozenset[Harm] = frozenset()
    causal_link: CausalLink = CausalLink.UNKNOWN
    regimes: frozenset[Regime] = frozenset()
    provider_is_institution: bool = False  # the institution is the provider: the law binds it directly
    by: str = ""
    at: datetime | None = None

    def seriousness_facts(self) -> SeriousnessFacts:
        return SeriousnessFacts(self.harms, self.causal_link, self.regimes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "risk_domain": self.risk_domain.value if self.risk_domain else None,
            "sector": self.sector.value if self.sector else None,
            "member_state": self.member_state,
            "dual_use": self.dual_use,
            "avid": list(self.avid),
            "determination": self.determination.value,
            "harms": sorted(h.value for h in self.harms),
            "causal_link": self.causal_link.value,
            "regimes": sorted(r.value for r in self.regimes),
            "provider_is_institution": self.provider_is_institution,
            "by": self.by,
            "at": None if self.at is None else self.at.isoformat(),
        }


# CoP Measure 9.2 report items (initial report: 1-7; final report: all 9) and NIS2 Art. 23(4) fields.
FACT_FIELDS: dict[str, str] = {
    "start_date": "start date (or best approximation)",
    "end_date": "end date (or best approximation)",
    "harm": "resulting harm",
    "affected": "victims or affected group",
    "chain_of_events": "chain of events",
    "involvement": "material describing the model's involvement",
    "response": "the provider's response, intended or done",
    "recommendations": "recommendations to the AI Office and national authorities",
    "root_cause": "root-cause analysis",
    "patterns": "related post-market-monitoring patterns (e.g. near misses)",
    "malicious": "suspected unlawful or malicious act (yes/no)",
    "cross_border": "cross-border impact (yes/no)",
    "indicators": "indicators of compromise",
    "threat_type": "type of threat or root cause likely to have triggered it",
    "mitigations": "applied and ongoing mitigation measures",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What analysts establish for the recipients' forms; every field may still be missing."""

    values: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        return dict(self.values).get(key)

    def with_values(self, updates: dict[str, str]) -> Facts:
        unknown = sorted(set(updates) - set(FACT_FIELDS))
        if unknown:
            raise InvalidInput(f"unknown fact field(s): {', '.join(unknown)}", hint="fields: " + ", ".join(FACT_FIELDS))
        merged = dict(self.values)
        for key, value in updates.items():
            text = check_text(value, key, MAX_TEXT, required=False)
            if text:
                merged[key] = text
            else:
                merged.pop(key, None)
        return Facts(tuple(sorted(merged.items())))


class Status(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    INVESTIGATING = "investigating"
    MITIGATING = "mitigating"
    RESOLVED = "resolved"
    CLOSED = "closed"
    DECLINED = "declined"
    MERGED = "merged"
    DUPLICATE = "duplicate"

    @property
    def open(self) -> bool:
        return self in OPEN


OPEN = frozenset({Status.NEW, Status.TRIAGED, Status.INVESTIGATING, Status.MITIGATING})


class Move(StrEnum):
    TRIAGE = "triage"
    INVESTIGATE = "investigate"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"
    CLOSE = "close"
    DECLINE = "decline"
    MERGE = "merge"
    DUPLICATE = "duplicate"
    REOPEN = "reopen"


# The lifecycle: (status, move) -> next status. Anything else is refused. There is no skipping from
# triage to resolved (an incident is investigated first), and every end state can be reopened.
TRANSITIONS: dict[tuple[Status, Move], Status] = {
    (Status.NEW, Move.TRIAGE): Status.TRIAGED,
    (Status.NEW, Move.DECLINE): Status.DECLINED,
    (Status.NEW, Move.MERGE): Status.MERGED,
    (Status.NEW, Move.DUPLICATE): Status.DUPLICATE,
    (Status.TRIAGED, Move.INVESTIGATE): Status.INVESTIGATING,
    (Status.TRIAGED, Move.DECLINE): Status.DECLINED,
    (Status.TRIAGED, Move.MERGE): Status.MERGED,
    (Status.TRIAGED, Move.DUPLICATE): Status.DUPLICATE,
    (Status.INVESTIGATING, Move.MITIGATE): Status.MITIGATING,
    (Status.INVESTIGATING, Move.RESOLVE): Status.RESOLVED,
    (Status.INVESTIGATING, Move.MERGE): Status.MERGED,
    (Status.MITIGATING, Move.RESOLVE): Status.RESOLVED,
    (Status.RESOLVED, Move.CLOSE): Status.CLOSED,
    (Status.RESOLVED, Move.REOPEN): Status.INVESTIGATING,
    (Status.CLOSED, Move.REOPEN): Status.INVESTIGATING,
    (Status.DECLINED, Move.REOPEN): Status.NEW,
    (Status.MERGED, Move.REOPEN): Status.NEW,
    (Status.DUPLICATE, Move.REOPEN): Status.NEW,
}

# Who may make each move: the action the access service decides (roles in raid.cedar).
MOVE_ACTIONS: dict[Move, Action] = {
    Move.TRIAGE: Action.RAID_TRIAGE,
    Move.DECLINE: Action.RAID_TRIAGE,
    Move.MERGE: Action.RAID_TRIAGE,
    Move.DUPLICATE: Action.RAID_TRIAGE,
    Move.INVESTIGATE: Action.RAID_INVESTIGATE,
    Move.MITIGATE: Action.RAID_INVESTIGATE,
    Move.RESOLVE: Action.RAID_INVESTIGATE,
    Move.CLOSE: Action.RAID_CLOSE,
    Move.REOPEN: Action.RAID_CLOSE,
}
NEEDS_REASON = frozenset({Move.DECLINE, Move.REOPEN, Move.MERGE, Move.DUPLICATE})
NEEDS_TARGET = frozenset({Move.MERGE, Move.DUPLICATE})


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    source: Source
    title: str
    summary: str
    status: Status
    tlp: Tlp
    created_at: datetime
    updated_at: datetime
    aware_at: datetime | None  # when the institution became aware: every clock counts from it
    reporter: Reporter
    audience: Audience
    bindings: tuple[Binding, ...]
    detection: Detection
    occurred_from: datetime | None = None  # the event's own dates, as the source gives them
    occurred_until: datetime | None = None
    reporter_aware_at: datetime | None = None  # when the reporter says they became aware
    assessment: Assessment | None = None
    facts: Facts = field(default_factory=Facts)
    assignee: str | None = None
    merged_into: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reason: str = ""  # of the last decline, merge, duplicate or reopen
    evidence: dict[str, Any] = field(default_factory=dict)  # bounded JSON from the source
    revision: int = 1  # optimistic concurrency: each save bumps it

    @property
    def severity(self) -> Severity:
        return self.assessment.severity if self.assessment else Severity.UNDETERMINED

    def versions(self) -> tuple[str, ...]:
        return tuple(b.ref for b in self.bindings if b.kind is BindingKind.MODEL_VERSION)

    def organisations(self) -> tuple[str, ...]:
        kinds = (BindingKind.ORGANISATION, BindingKind.LICENSEE)
        return tuple(dict.fromkeys(b.ref for b in self.bindings if b.kind in kinds))


@dataclass(frozen=True, slots=True)
class IntakeItem:
    """One report as any intake path hands it over, before it is an incident."""

    source: Source
    title: str
    summary: str
    tlp: Tlp
    aware_at: datetime
    detection: Detection
    bindings: tuple[Binding, ...] = ()
    reporter: Reporter = field(default_factory=Reporter)
    audience: Audience = field(default_factory=Audience)
    occurred_from: datetime | None = None
    occurred_until: datetime | None = None
    reporter_aware_at: datetime | None = None
    severity: Severity = Severity.UNDETERMINED  # a hint from the source; triage decides
    risk_domain: RiskDomain | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    id: str
    incident_id: str
    at: datetime
    actor: str
    kind: str
    details: dict[str, Any]


def check_bindings(bindings: tuple[Binding, ...]) -> tuple[Binding, ...]:
    if len(bindings) > MAX_BINDINGS:
        raise TooLarge(f"{len(bindings)} bindings; at most {MAX_BINDINGS}", hint="bind the main versions only")
    return tuple(dict.fromkeys(Binding(b.kind, check_ref(b.ref, b.kind.value)) for b in bindings))


def check_intake(item: IntakeItem) -> IntakeItem:
    """Every intake path's bounds, before anything is written."""
    if item.source.kind.automatic and not item.source.id:
        raise InvalidInput("an automatic intake item needs its source id", hint="the alert's own id")
    if item.source.id is not None and not 0 < len(item.source.id) <= MAX_SOURCE_ID:
        raise InvalidInput(f"a source id has 1-{MAX_SOURCE_ID} characters", hint="use the source record's id")
    if item.aware_at.tzinfo is None:
        raise InvalidInput("aware_at has no time zone", hint="give times in UTC")
    contact = item.reporter.contact
    if contact is not None:
        contact = check_text(contact, "contact", MAX_CONTACT, required=False) or None
    named = item.audience.principals | ({item.reporter.principal} if item.reporter.principal else set())
    if len(named) > MAX_RECIPIENTS or len(item.audience.organisations) > MAX_RECIPIENTS:
        raise TooLarge(f"at most {MAX_RECIPIENTS} recipients", hint="share with fewer principals or organisations")
    for name in (*named, *item.audience.organisations):
        check_ref(name, "recipient")
    if item.tlp is Tlp.RED and not (named - ({item.reporter.principal} if item.reporter.principal else set())):
        raise InvalidInput(
            "a TLP:RED report names its recipients at the desk: nobody else may ever see it",
            hint="name the analysts who receive it (--recipient NAME), or choose TLP:AMBER+STRICT",
        )
    return replace(
        item,
        title=check_text(item.title, "title", MAX_TITLE),
        summary=check_text(item.summary, "description", MAX_TEXT),
        bindings=check_bindings(item.bindings),
        reporter=replace(item.reporter, contact=contact),
        audience=Audience(frozenset(named), item.audience.organisations | _own(item)),
    )


def _own(item: IntakeItem) -> frozenset[str]:
    """A partner's own organisation shares what it reported, below TLP:RED (RED names people only)."""
    organisation = item.reporter.organisation
    return frozenset({organisation}) if organisation and item.tlp is not Tlp.RED else frozenset()


def new_incident(item: IntakeItem, *, id: str, now: datetime) -> Incident:
    checked = check_intake(item)
    assessment = None
    if checked.severity is not Severity.UNDETERMINED or checked.risk_domain is not None:
        assessment = Assessment(severity=checked.severity, risk_domain=checked.risk_domain, by=INTAKE_ASSESSOR, at=now)
    return Incident(
        id=id,
        source=checked.source,
        title=checked.title,
        summary=checked.summary,
        status=Status.NEW,
        tlp=checked.tlp,
        created_at=now,
        updated_at=now,
        aware_at=checked.aware_at,
        reporter=checked.reporter,
        audience=checked.audience,
        bindings=checked.bindings,
        detection=checked.detection,
        occurred_from=checked.occurred_from,
        occurred_until=checked.occurred_until,
        reporter_aware_at=checked.reporter_aware_at,
        assessment=assessment,
        evidence=checked.evidence,
    )


def transition(
    incident: Incident, move: Move, now: datetime, *, reason: str = "", target: str | None = None
) -> Incident:
    """The next state by the transition table; anything else is refused and changes nothing."""
    after = TRANSITIONS.get((incident.status, move))
    if after is None:
        allowed = sorted(m.value for (s, m) in TRANSITIONS if s is incident.status)
        raise Conflict(
            f"the incident is {incident.status.value}: it cannot {move.value}",
            hint=("allowed now: " + ", ".join(allowed)) if allowed else "no move is allowed from here",
        )
    text = check_text(reason, "reason", MAX_NOTE, required=move in NEEDS_REASON)
    if move in NEEDS_TARGET:
        if not target:
            raise InvalidInput(f"to {move.value} an incident, name the incident it joins", hint="--into ID")
        if target == incident.id:
            raise InvalidInput(f"an incident cannot {move.value} into itself", hint="name another incident")
    hint_only = incident.assessment is not None and incident.assessment.by == INTAKE_ASSESSOR
    if move is Move.TRIAGE and (incident.assessment is None or hint_only or incident.severity is Severity.UNDETERMINED):
        raise Conflict(
            "the incident is not assessed: triage needs a severity on the OECD ladder",
            hint="assess it first: `aperture raid assess ID --severity incident ...`",
        )
    if move is Move.RESOLVE and incident.aware_at is not None and now < incident.aware_at:
        raise Conflict("resolution cannot come before awareness", hint="check the clock and aware_at")
    return replace(
        incident,
        status=after,
        updated_at=now,
        reason=text or incident.reason,
        merged_into=target if move in NEEDS_TARGET else (None if move is Move.REOPEN else incident.merged_into),
        resolved_at=now if move is Move.RESOLVE else (None if move is Move.REOPEN else incident.resolved_at),
        closed_at=now if move is Move.CLOSE else (None if move is Move.REOPEN else incident.closed_at),
    )


def assess(incident: Incident, assessment: Assessment) -> Incident:
    if not incident.status.open:
        raise Conflict(
            f"the incident is {incident.status.value}: reopen it to assess it again",
            hint="`aperture raid move ID reopen`",
        )
    return replace(incident, assessment=assessment, updated_at=assessment.at or incident.updated_at)


def share(incident: Incident, tlp: Tlp, audience: Audience, now: datetime) -> Incident:
    """A new label or audience. A TLP:RED item keeps at least one named principal."""
    if len(audience.principals) > MAX_RECIPIENTS or len(audience.organisations) > MAX_RECIPIENTS:
        raise TooLarge(f"at most {MAX_RECIPIENTS} recipients", hint="share with fewer principals or organisations")
    for name in (*audience.principals, *audience.organisations):
        check_ref(name, "recipient")
    if tlp is Tlp.RED and not audience.principals:
        raise InvalidInput("a TLP:RED item needs named recipients", hint="--principal NAME")
    return replace(incident, tlp=tlp, audience=audience, updated_at=now)
