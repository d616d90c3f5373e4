"""Coordinated disclosure and independence: embargoes, advisories, early publication, and what is
shared with regulators beyond what the law requires. Pure.

Embargo defaults (configurable, `APERTURE_RAID_EMBARGO_POLICY`):
- `cert-cc`: public 45 days after the initial report (CERT/CC Vulnerability Disclosure Policy);
- `project-zero`: 90 days to fix; when fixed in time, details 30 days after the fix; a 14-day grace
  period on request shortens the 30 days by the grace used (Google Project Zero, "90+30");
- `project-zero-itw`: the same for bugs exploited in the wild: 7 days, 3-day grace, 30 days after the fix;
- `days`: a fixed number of days (`APERTURE_RAID_EMBARGO_DAYS`);
- `none`: no fixed date (dual-use capability findings): published only by a recorded decision.
Publication before the embargo ends needs a recorded decision (who, when, why) by a role allowed to
make it (`raid_publish_early`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from aperture.core.errors import Conflict, InvalidInput
from aperture.raid.checks import check_text
from aperture.raid.domain import MAX_NOTE, MAX_TEXT, MAX_TITLE, Consent


class EmbargoPolicy(StrEnum):
    CERT_CC = "cert-cc"
    PROJECT_ZERO = "project-zero"
    PROJECT_ZERO_ITW = "project-zero-itw"
    DAYS = "days"
    NONE = "none"


CERT_CC_DAYS = 45
P0_DEADLINE, P0_GRACE, P0_AFTER_FIX = 90, 14, 30
P0_ITW_DEADLINE, P0_ITW_GRACE = 7, 3


def parse_policy(text: str) -> EmbargoPolicy:
    try:
        return EmbargoPolicy(text.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not an embargo policy", hint="cert-cc, project-zero, project-zero-itw, days or none"
        ) from None


def embargo_until(
    policy: EmbargoPolicy,
    reported_at: datetime,
    *,
    fixed_at: datetime | None = None,
    grace: bool = False,
    days: int | None = None,
) -> datetime | None:
    """When the details may be published; None when no date is fixed."""
    if policy is EmbargoPolicy.NONE:
        return None
    if policy is EmbargoPolicy.CERT_CC:
        return reported_at + timedelta(days=CERT_CC_DAYS)
    if policy is EmbargoPolicy.DAYS:
        if days is None or not 1 <= days <= 3650:
            raise InvalidInput("a fixed embargo needs 1-3650 days", hint="APERTURE_RAID_EMBARGO_DAYS or --days")
        return reported_at + timedelta(days=days)
    deadline_days, grace_days = (
        (P0_DEADLINE, P0_GRACE) if policy is EmbargoPolicy.PROJECT_ZERO else (P0_ITW_DEADLINE, P0_ITW_GRACE)
    )
    deadline = reported_at + timedelta(days=deadline_days)
    last = deadline + timedelta(days=grace_days if grace else 0)
    if fixed_at is None or fixed_at > last:
        return last  # not fixed in time: the details go out at the deadline (or the end of the grace)
    used = max(timedelta(0), fixed_at - deadline)  # grace used shortens the patch-adoption period
    return max(fixed_at, fixed_at + timedelta(days=P0_AFTER_FIX) - used)


class AdvisoryStatus(StrEnum):
    DRAFT = "draft"
    EMBARGOED = "embargoed"  # affected parties told privately; public at embargo_until
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class EarlyPublication:
    """The recorded decision to publish before the embargo ends."""

    by: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    incident_id: str
    title: str
    summary: str
    remediation: str
    status: AdvisoryStatus
    policy: EmbargoPolicy
    embargo_until: datetime | None
    parties: tuple[str, ...]  # organisations told privately
    created_at: datetime
    updated_at: datetime
    created_by: str
    notified_at: datetime | None = None
    published_at: datetime | None = None
    early: EarlyPublication | None = None
    revision: int = 1


def new_advisory(
    *,
    id: str,
    incident_id: str,
    title: str,
    summary: str,
    remediation: str,
    policy: EmbargoPolicy,
    embargo: datetime | None,
    parties: tuple[str, ...],
    by: str,
    now: datetime,
) -> Advisory:
    return Advisory(
        id=id,
        incident_id=incident_id,
        title=check_text(title, "advisory title", MAX_TITLE),
        summary=check_text(summary, "advisory summary", MAX_TEXT),
        remediation=check_text(remediation, "remediation", MAX_TEXT, required=False),
        status=AdvisoryStatus.DRAFT,
        policy=policy,
        embargo_until=embargo,
        parties=tuple(dict.fromkeys(parties)),
        created_at=now,
        updated_at=now,
        created_by=by,
    )


def notified(advisory: Advisory, now: datetime) -> Advisory:
    if advisory.status is not AdvisoryStatus.DRAFT:
        raise Conflict(f"the advisory is {advisory.status.value}, not a draft", hint="parties are told once")
    if not advisory.parties:
        raise InvalidInput("the advisory names no affected party", hint="--party ORGANISATION (repeat)")
    return replace(advisory, status=AdvisoryStatus.EMBARGOED, notified_at=now, updated_at=now)


def decide_early(advisory: Advisory, by: str, reason: str, now: datetime) -> Advisory:
    if advisory.status not in (AdvisoryStatus.DRAFT, AdvisoryStatus.EMBARGOED):
        raise Conflict(f"the advisory is {advisory.status.value}", hint="only unpublished advisories")
    text = check_text(reason, "reason for early publication", MAX_NOTE)
    return replace(advisory, early=EarlyPublication(by, now, text), updated_at=now)


def publish(advisory: Advisory, now: datetime) -> Advisory:
    """Public once the embargo has passed, or earlier by a recorded decision; never without telling
    the affected parties first."""
    if advisory.status is not AdvisoryStatus.EMBARGOED:
        hint = "tell the affected parties first (`aperture raid advisory notify ID`)"
        if advisory.status is not AdvisoryStatus.DRAFT:
            hint = "it cannot be published again"
        raise Conflict(f"the advisory is {advisory.status.value}", hint=hint)
    if advisory.early is None and (advisory.embargo_until is None or now < advisory.embargo_until):
        until = (
            "has no public date"
            if advisory.embargo_until is None
            else f"runs until {advisory.embargo_until.isoformat()}"
        )
        raise Conflict(
            f"the embargo {until}",
            hint="wait, or decide to publish early: `aperture raid advisory decide-early ID --reason ...`",
        )
    return replace(advisory, status=AdvisoryStatus.PUBLISHED, published_at=now, updated_at=now)


def extend(advisory: Advisory, until: datetime, now: datetime) -> Advisory:
    if advisory.status not in (AdvisoryStatus.DRAFT, AdvisoryStatus.EMBARGOED):
        raise Conflict(f"the advisory is {advisory.status.value}", hint="only unpublished advisories")
    if advisory.embargo_until is not None and until < advisory.embargo_until:
        raise Conflict(
            "an embargo is only extended here; an earlier publication needs a recorded decision",
            hint="`aperture raid advisory decide-early ID --reason ...`",
        )
    return replace(advisory, embargo_until=until, updated_at=now)


# --- independence: what goes to regulators beyond the law ---------------------------------------


class SharingPolicy(StrEnum):
    """The instance's published policy (`APERTURE_RAID_SHARING_POLICY`)."""

    CONSENT = "consent"  # beyond the legal minimum, follow each reporter's consent
    LEGAL_MINIMUM = "legal-minimum"  # never share beyond what the law requires, whatever the consent


SHARING_POLICY_TEXT: dict[SharingPolicy, str] = {
    SharingPolicy.CONSENT: (
        "RAID is independent of regulators. It forwards what the law requires (the institution's own "
        "reporting duties as a provider) without the reporter's identity. Anything beyond that goes to a "
        "competent body only as far as the reporter consented: anonymised, or with their identity."
    ),
    SharingPolicy.LEGAL_MINIMUM: (
        "RAID is independent of regulators. It forwards only what the law requires (the institution's own "
        "reporting duties as a provider), never the reporter's identity, whatever the reporter consented to."
    ),
}


@dataclass(frozen=True, slots=True)
class SharingDecision:
    allowed: bool
    with_identity: bool  # the reporter's identity and contact go along
    reason: str


def may_forward(required_by_law: bool, consent: Consent, policy: SharingPolicy) -> SharingDecision:
    """Whether a report may go to a competent body, and whether the reporter's identity goes with it."""
    if required_by_law:
        identity = policy is SharingPolicy.CONSENT and consent is Consent.FULL
        return SharingDecision(
            True, identity, "required by law" + (", with the reporter's consent to name them" if identity else "")
        )
    if policy is SharingPolicy.LEGAL_MINIMUM:
        return SharingDecision(False, False, "not required by law, and the sharing policy is legal-minimum")
    if consent is Consent.LEGAL_MINIMUM:
        return SharingDecision(
            False, False, "not required by law, and the reporter consented to the legal minimum only"
        )
    return SharingDecision(
        True, consent is Consent.FULL, f"not required by law; the reporter consented ({consent.value})"
    )
