"""Licensing rules: applications, the screening checklist, decisions, licence terms and their
lifecycle, receivables, traceable copies and trace reports. Pure: dataclasses and functions only.

Seed 000's middle stage (qualified firms get the weights of models too risky to open, in exchange
for programme funding) and seed 001's "rigorous screening" of partners (capabilities L1-L4).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from aperture.core.errors import Conflict, Forbidden, InvalidInput

# The mark's defaults, here rather than in `marking` so that the service's settings do not load
# numpy: the strength of the mark, the z-score a key must reach, the size of a licensee's seed.
MARK_ALPHA = 2e-3
MARK_THRESHOLD = 6.0
MARK_SEED_BYTES = 32

CURRENCY = re.compile(r"^[A-Z]{3}$")
TERRITORY = re.compile(r"^[A-Z]{2}$|^EU$|^EEA$|^WORLD$")
MAX_TEXT = 4000


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    SCREENING = "screening"
    MORE_INFORMATION = "more_information"  # the applicant must answer; then it is screened again
    AWAITING_SECOND = "awaiting_second_approver"
    APPROVED = "approved"
    REJECTED = "rejected"


class Outcome(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_INFORMATION = "request_information"


class Answer(StrEnum):
    PASS = "pass"  # noqa: S105 - a checklist answer
    FAIL = "fail"
    NEEDS_REVIEW = "needs_review"


class Schedule(StrEnum):
    ONCE = "once"
    ANNUAL = "annual"
    QUARTERLY = "quarterly"


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str


# The default screening checklist (a deployment replaces it with APERTURE_LICENSING_CHECKLIST).
DEFAULT_CHECKLIST: tuple[Question, ...] = (
    Question("identity", "The organisation's identity and registration are verified."),
    Question("control", "Ownership and control are known; no controlling party outside the members blocks access."),
    Question("security", "The claimed security level meets the licence's minimum (evidence: audit or certificate)."),
    Question("incidents", "The incident history shows no unremedied weight or data leak."),
    Question("use", "The intended use and fields of use are lawful and within the programme's purpose."),
    Question("export", "Territories are compatible with export controls and the partner rules."),
    Question("funding", "The funding offered is realistic and matches the programme's contribution rules."),
)


def parse_checklist(data: Any) -> tuple[Question, ...]:
    """A checklist file: a JSON list of {"id", "text"} objects."""
    if not isinstance(data, list) or not data:
        raise InvalidInput(
            "the screening checklist must be a non-empty JSON list", hint='[{"id": "...", "text": "..."}]'
        )
    questions: list[Question] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("text"), str):
            raise InvalidInput(
                "each checklist question needs an id and a text", hint='{"id": "identity", "text": "..."}'
            )
        questions.append(Question(item["id"], item["text"]))
    if len({q.id for q in questions}) != len(questions):
        raise InvalidInput("a checklist question id is used twice", hint="give each question its own id")
    return tuple(questions)


@dataclass(frozen=True, slots=True)
class SecurityPosture:
    claimed_level: int  # SL1-SL5
    certifications: tuple[str, ...] = ()
    incidents: str = ""  # incident history, free text


@dataclass(frozen=True, slots=True)
class Ownership:
    parent: str | None = None
    non_eu_control: str | None = None  # state code of a controlling party outside the EU, if any


@dataclass(frozen=True, slots=True)
class Funding:
    amount_minor: int  # in the currency's minor unit (cents)
    currency: str
    schedule: Schedule

    def as_dict(self) -> dict[str, Any]:
        return {"amount_minor": self.amount_minor, "currency": self.currency, "schedule": self.schedule.value}


@dataclass(frozen=True, slots=True)
class ScreeningAnswer:
    question: str
    answer: Answer
    note: str
    evidence: tuple[str, ...]  # sha256 of stored attachments
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Proposal:
    outcome: Outcome
    reasons: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Application:
    id: str
    organisation: str
    applicant: str
    model_version_id: str
    model: str  # NAME:VERSION
    intended_use: str
    fields_of_use: tuple[str, ...]
    territories: tuple[str, ...]
    posture: SecurityPosture
    ownership: Ownership
    funding: Funding
    term_months: int
    status: ApplicationStatus
    submitted_at: datetime
    updated_at: datetime
    upper_tier: bool  # the model is stored at SL3 or above: decisions need a second approver
    screening: tuple[ScreeningAnswer, ...] = ()
    proposal: Proposal | None = None
    decided_by: tuple[str, ...] = ()
    reasons: str = ""  # what the applicant sees: the decision's reasons, or what to add
    responses: tuple[str, ...] = ()  # the applicant's answers to requests for information


def new_application(
    *,
    id: str,
    organisation: str,
    applicant: str,
    model_version_id: str,
    model: str,
    intended_use: str,
    fields_of_use: list[str],
    territories: list[str],
    posture: SecurityPosture,
    ownership: Ownership,
    funding: Funding,
    term_months: int,
    upper_tier: bool,
    now: datetime,
) -> Application:
    if not intended_use.strip() or len(intended_use) > MAX_TEXT:
        raise InvalidInput("describe the intended use (1-4000 characters)", hint="--intended-use TEXT")
    if not fields_of_use:
        raise InvalidInput("name at least one field of use", hint="--field research (repeat for several)")
    if not territories or any(not TERRITORY.match(t) for t in territories):
        raise InvalidInput(
            f"territories must be ISO country codes, EU, EEA or WORLD (got {', '.join(territories) or 'none'})",
            hint="--territory FR --territory DE",
        )
    if not 1 <= posture.claimed_level <= 5:
        raise InvalidInput("the claimed security level must be SL1-SL5", hint="--security-level SL3")
    check_funding(funding)
    if not 1 <= term_months <= 120:
        raise InvalidInput("the licence term must be 1-120 months", hint="--term-months 24")
    return Application(
        id=id,
        organisation=organisation,
        applicant=applicant,
        model_version_id=model_version_id,
        model=model,
        intended_use=intended_use.strip(),
        fields_of_use=tuple(dict.fromkeys(f.strip() for f in fields_of_use if f.strip())),
        territories=tuple(dict.fromkeys(territories)),
        posture=posture,
        ownership=ownership,
        funding=funding,
        term_months=term_months,
        status=ApplicationStatus.SUBMITTED,
        submitted_at=now,
        updated_at=now,
        upper_tier=upper_tier,
    )


def check_funding(funding: Funding) -> None:
    if funding.amount_minor < 0:
        raise InvalidInput("the fee cannot be negative", hint="--fee 250000.00")
    if not CURRENCY.match(funding.currency):
        raise InvalidInput(f"{funding.currency!r} is not an ISO 4217 currency code", hint="--currency EUR")


def parse_amount(text: str) -> int:
    """'1234.50' -> 123450 minor units; refuses more than two decimals and negatives."""
    match = re.fullmatch(r"(\d{1,13})(?:\.(\d{1,2}))?", text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not an amount", hint="write it like 250000 or 250000.50")
    whole, cents = match.groups()
    return int(whole) * 100 + int((cents or "0").ljust(2, "0"))


def format_amount(minor: int, currency: str) -> str:
    return f"{minor // 100:,}.{minor % 100:02d} {currency}"


def answer_question(
    application: Application,
    checklist: tuple[Question, ...],
    question: str,
    answer: Answer,
    note: str,
    evidence: tuple[str, ...],
    officer: str,
    now: datetime,
) -> Application:
    _require_screenable(application)
    if question not in {q.id for q in checklist}:
        raise InvalidInput(
            f"no screening question {question!r}", hint="use one of: " + ", ".join(q.id for q in checklist)
        )
    _not_involved(application, officer, "screens")
    kept = tuple(a for a in application.screening if a.question != question)
    entry = ScreeningAnswer(question, answer, note.strip()[:MAX_TEXT], evidence, officer, now)
    return replace(application, screening=(*kept, entry), status=ApplicationStatus.SCREENING, updated_at=now)


def _require_screenable(application: Application) -> None:
    if application.status not in (ApplicationStatus.SUBMITTED, ApplicationStatus.SCREENING):
        raise Conflict(
            f"the application is {application.status.value}, not open for screening",
            hint="only submitted applications (or ones answered after a request for information) are screened",
        )


def _not_involved(application: Application, person: str, what: str) -> None:
    if person == application.applicant:
        raise Forbidden(f"nobody {what} their own application", hint="another licensing officer must do it")


def unanswered(application: Application, checklist: tuple[Question, ...]) -> list[str]:
    answered = {a.question for a in application.screening}
    return [q.id for q in checklist if q.id not in answered]


def propose(
    application: Application,
    checklist: tuple[Question, ...],
    outcome: Outcome,
    reasons: str,
    officer: str,
    officer_organisation: str | None,
    now: datetime,
) -> Application:
    """An officer's decision. Approval needs the whole checklist answered and no failed question;
    rejections and requests for information need reasons (the applicant reads them). Upper-tier
    models need a second approver: the decision then waits for `confirm`."""
    _require_screenable(application)
    _not_involved(application, officer, "decides on")
    if officer_organisation is not None and officer_organisation == application.organisation:
        raise Forbidden(
            "an officer of the applying organisation cannot decide on its application",
            hint="an officer of another organisation must decide",
        )
    if not reasons.strip() and outcome is not Outcome.APPROVE:
        raise InvalidInput("give the reasons: the applicant reads them", hint="--reasons TEXT")
    if outcome is Outcome.APPROVE:
        missing = unanswered(application, checklist)
        if missing:
            raise Conflict(
                "the screening checklist is not complete: " + ", ".join(missing),
                hint="answer every question before approving",
            )
        failed = [a.question for a in application.screening if a.answer is not Answer.PASS]
        if failed:
            raise Conflict(
                "screening questions did not pass: " + ", ".join(failed),
                hint="reject with reasons, or request more information and screen again",
            )
    proposal = Proposal(outcome, reasons.strip()[:MAX_TEXT], officer, now)
    if outcome is Outcome.APPROVE and application.upper_tier:
        return replace(
            application,
            proposal=proposal,
            status=ApplicationStatus.AWAITING_SECOND,
            decided_by=(officer,),
            updated_at=now,
        )
    return _decide(application, proposal, (officer,), now)


def confirm(application: Application, officer: str, officer_organisation: str | None, now: datetime) -> Application:
    """The second approver of an upper-tier approval: another officer, not the applicant."""
    if application.status is not ApplicationStatus.AWAITING_SECOND or application.proposal is None:
        raise Conflict(
            f"the application is {application.status.value}, not awaiting a second approver", hint="nothing to confirm"
        )
    _not_involved(application, officer, "approves")
    if officer in application.decided_by:
        raise Forbidden("the second approver must be another person", hint="a different licensing officer confirms")
    if officer_organisation is not None and officer_organisation == application.organisation:
        raise Forbidden("an officer of the applying organisation cannot approve its application", hint="")
    return _decide(application, application.proposal, (*application.decided_by, officer), now)


def _decide(application: Application, proposal: Proposal, by: tuple[str, ...], now: datetime) -> Application:
    status = {
        Outcome.APPROVE: ApplicationStatus.APPROVED,
        Outcome.REJECT: ApplicationStatus.REJECTED,
        Outcome.REQUEST_INFORMATION: ApplicationStatus.MORE_INFORMATION,
    }[proposal.outcome]
    return replace(
        application, status=status, proposal=proposal, decided_by=by, reasons=proposal.reasons, updated_at=now
    )


def respond(application: Application, person: str, text: str, now: datetime) -> Application:
    if application.status is not ApplicationStatus.MORE_INFORMATION:
        raise Conflict("no information was requested", hint="wait for the officers' decision")
    if not text.strip():
        raise InvalidInput("the answer is empty", hint="--text TEXT")
    return replace(
        application,
        responses=(*application.responses, f"{person}: {text.strip()[:MAX_TEXT]}"),
        status=ApplicationStatus.SUBMITTED,
        proposal=None,
        decided_by=(),
        updated_at=now,
    )


# --- licences ---------------------------------------------------------------------------------


class LicenceState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    REVOKED = "revoked"


class LicenceEvent(StrEnum):
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    REVOKE = "revoke"
    EXPIRE = "expire"


# The lifecycle as a transition table: (state, event) -> next state. Anything else is refused.
TRANSITIONS: dict[tuple[LicenceState, LicenceEvent], LicenceState] = {
    (LicenceState.DRAFT, LicenceEvent.ACTIVATE): LicenceState.ACTIVE,
    (LicenceState.DRAFT, LicenceEvent.REVOKE): LicenceState.REVOKED,
    (LicenceState.ACTIVE, LicenceEvent.SUSPEND): LicenceState.SUSPENDED,
    (LicenceState.ACTIVE, LicenceEvent.REVOKE): LicenceState.REVOKED,
    (LicenceState.ACTIVE, LicenceEvent.EXPIRE): LicenceState.EXPIRED,
    (LicenceState.SUSPENDED, LicenceEvent.REINSTATE): LicenceState.ACTIVE,
    (LicenceState.SUSPENDED, LicenceEvent.REVOKE): LicenceState.REVOKED,
    (LicenceState.SUSPENDED, LicenceEvent.EXPIRE): LicenceState.EXPIRED,
}

LICENCE_TEXT_VERSION = "1"
LICENCE_TEXT = """Aperture model licence, text version 1.

1. Grant. The licensor grants the licensee a non-exclusive, non-transferable licence to use the
   model version named in the terms, within the fields of use and territories named there, for
   the term named there.
2. Security. The licensee keeps the weights at or above the minimum security level named in the
   terms, reports any incident touching them within 72 hours, and allows audit.
3. Individually marked copies. Every copy delivered under this licence is individually marked
   and registered. The licensee does not try to remove, alter or detect the marking, and allows
   discovery of suspected derivatives.
4. Sub-licensing only where the terms allow it.
5. Fees or programme contributions as scheduled in the terms.
6. Suspension and revocation take effect at once and end every access; on revocation or expiry
   the licensee destroys its copies and confirms it in writing.
"""


def licence_text_digest(text: str = LICENCE_TEXT) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Terms:
    model_version_id: str
    model: str
    organisation: str
    fields_of_use: tuple[str, ...]
    territories: tuple[str, ...]
    starts_on: date
    ends_on: date
    fee: Funding
    minimum_security_level: int
    sublicensing: bool
    text_version: str = LICENCE_TEXT_VERSION
    text_sha256: str = field(default_factory=licence_text_digest)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "organisation": self.organisation,
            "fields_of_use": list(self.fields_of_use),
            "territories": list(self.territories),
            "starts_on": self.starts_on.isoformat(),
            "ends_on": self.ends_on.isoformat(),
            "fee": self.fee.as_dict(),
            "minimum_security_level": f"SL{self.minimum_security_level}",
            "sublicensing": self.sublicensing,
            "text_version": self.text_version,
            "text_sha256": self.text_sha256,
        }


@dataclass(frozen=True, slots=True)
class Licence:
    id: str
    application_id: str | None
    terms: Terms
    state: LicenceState
    created_at: datetime
    updated_at: datetime
    reason: str = ""  # of the last suspension or revocation

    def in_force(self, today: date) -> bool:
        return self.state is LicenceState.ACTIVE and self.terms.starts_on <= today < self.terms.ends_on

    def due_to_expire(self, today: date) -> bool:
        return self.state in (LicenceState.ACTIVE, LicenceState.SUSPENDED) and today >= self.terms.ends_on


def add_months(start: date, months: int) -> date:
    month = start.month - 1 + months
    year = start.year + month // 12
    month = month % 12 + 1
    days = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return date(year, month, min(start.day, days[month - 1]))


def terms_from(
    application: Application,
    *,
    starts_on: date,
    minimum_security_level: int,
    sublicensing: bool = False,
    term_months: int | None = None,
) -> Terms:
    if application.status is not ApplicationStatus.APPROVED:
        raise Conflict(f"the application is {application.status.value}", hint="only approved applications get terms")
    months = term_months or application.term_months
    return Terms(
        model_version_id=application.model_version_id,
        model=application.model,
        organisation=application.organisation,
        fields_of_use=application.fields_of_use,
        territories=application.territories,
        starts_on=starts_on,
        ends_on=add_months(starts_on, months),
        fee=application.funding,
        minimum_security_level=minimum_security_level,
        sublicensing=sublicensing,
    )


def transition(licence: Licence, event: LicenceEvent, now: datetime, reason: str = "") -> Licence:
    target = TRANSITIONS.get((licence.state, event))
    if target is None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is licence.state)
        raise Conflict(
            f"the licence is {licence.state.value}: it cannot {event.value}",
            hint=("allowed now: " + ", ".join(allowed)) if allowed else "the licence is final",
        )
    if event in (LicenceEvent.SUSPEND, LicenceEvent.REVOKE) and not reason.strip():
        raise InvalidInput(f"give the reason to {event.value}", hint="--reason TEXT (recorded and shown)")
    if event is LicenceEvent.ACTIVATE and now.date() >= licence.terms.ends_on:
        raise Conflict("the licence term has already ended", hint="make new terms with a later start")
    return replace(licence, state=target, updated_at=now, reason=reason.strip() or licence.reason)


@dataclass(frozen=True, slots=True)
class Receivable:
    """One instalment the licensee owes: what the revenue ledger of benefit sharing will read."""

    id: str
    licence_id: str
    organisation: str
    due_on: date
    amount_minor: int
    currency: str
    status: str  # open | cancelled


def instalments(terms: Terms) -> list[tuple[date, int]]:
    """(due date, amount) per instalment over the term; the fee is per year for annual and
    quarterly schedules (pro rata by whole months for a final part-period), the whole for `once`."""
    fee = terms.fee
    if fee.amount_minor == 0:
        return []
    if fee.schedule is Schedule.ONCE:
        return [(terms.starts_on, fee.amount_minor)]
    step = 12 if fee.schedule is Schedule.ANNUAL else 3
    per = fee.amount_minor if step == 12 else fee.amount_minor // 4
    out: list[tuple[date, int]] = []
    period = 0
    while (due := add_months(terms.starts_on, period * step)) < terms.ends_on:
        following = add_months(terms.starts_on, (period + 1) * step)  # from the start: no drift at month ends
        if following > terms.ends_on:
            months = 0
            while add_months(terms.starts_on, period * step + months + 1) <= terms.ends_on:
                months += 1
            if months:
                out.append((due, per * months // step))  # pro rata by whole months
        else:
            out.append((due, per))
        period += 1
    return out


# --- copies, tokens and traces ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyFile:
    path: str
    sha256: str
    size: int
    marked: bool  # False: the same bytes as the original's file
    artifact_id: str | None  # the sealed copy's artifact, for marked files


@dataclass(frozen=True, slots=True)
class Copy:
    """A licensee's traceable copy: the registry-level record (A.5.0)."""

    id: str
    licence_id: str
    organisation: str
    model_version_id: str
    model: str
    commitment: str  # SHA-256(seed | shard hashes): opened in trace reports
    alpha: float
    self_test_z: float
    files: tuple[CopyFile, ...]
    created_at: datetime
    created_by: str

    @property
    def shard_hashes(self) -> list[str]:
        return [f.sha256 for f in self.files]


TOKEN_TTL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class KeyScore:
    copy_id: str
    organisation: str
    licence_id: str
    screen_z: float
    z: float | None  # the full test, for the candidates confirmed on every coordinate
    accused: bool


def null_summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, n - 1))
    return {"count": n, "mean": round(mean, 4), "sd": round(sd, 4), "max": round(max(values), 4)}


def collusion_note(accused: list[KeyScore], ranked: list[KeyScore], threshold: float) -> str:
    if len(accused) > 1:
        return (
            f"{len(accused)} licensees' keys score above {threshold:g}: the suspect mixes several marked copies "
            "(collusion); each accused key is individually significant"
        )
    if accused:
        return "one licensee's key scores above the threshold"
    top = ranked[0].z if ranked and ranked[0].z is not None else None
    if top is not None and top >= threshold / 2:
        return (
            f"no key reaches {threshold:g}, but the best scores {top:.2f}: a coalition or heavy processing may "
            "have weakened the mark below the threshold; nobody is accused"
        )
    return "no issued key scores above the threshold: nobody is accused"


def verdict_text(accused: list[KeyScore], threshold: float) -> str:
    if not accused:
        return f"no licensee accused (no issued key reaches z >= {threshold:g})"
    names = ", ".join(f"{s.organisation} (z = {s.z:.1f})" for s in accused if s.z is not None)
    return f"accused at z >= {threshold:g}: {names}"
