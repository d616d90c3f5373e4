"""Grants, download tokens, canaries and alerts: the rules, as data. Pure: no I/O, no clock.

A grant is requested by one person and approved by a second, distinct person with an approver
role and clearance (the Cedar policies check role and clearance; these rules check the states).
A bulk export of a whole model above SL3 needs a security officer as well, distinct from both.
A grant lasts from its approval for the requested duration, and can be revoked; each download
is a single-use token that expires within minutes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from statistics import fmean

from aperture.access.domain import Action, AssetRef, SecurityLevel, distinct_hands
from aperture.core.errors import Conflict, Forbidden, InvalidInput

TOKEN_PREFIX = "dlt"  # noqa: S105 - a prefix, not a secret
TOKEN_PATTERN = re.compile(r"^dlt_[A-Za-z0-9_-]{43}$")
GRANT_ACTIONS = (Action.DOWNLOAD, Action.EXPORT, Action.COPY_TO_HUB)


class GrantStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    asset: AssetRef
    action: Action
    requester: str
    reason: str
    hub: str | None
    duration: timedelta
    requested_at: datetime
    status: GrantStatus = GrantStatus.PENDING
    approver: str | None = None
    approved_at: datetime | None = None
    officer: str | None = None
    officer_approved_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    # Who issued the key each party acted with: an approval is a second person's only when neither
    # party issued the other's key (`access.domain.distinct_hands`).
    requester_issuers: tuple[str, ...] = ()
    approver_issuers: tuple[str, ...] = ()
    officer_issuers: tuple[str, ...] = ()

    def state(self, now: datetime) -> str:
        """pending, approved, expired or revoked, as a person reads it."""
        if self.status is GrantStatus.APPROVED and self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return self.status.value

    def usable(self, now: datetime) -> bool:
        return self.state(now) == GrantStatus.APPROVED.value


def needs_security_officer(action: Action, level: SecurityLevel) -> bool:
    """A bulk export of a whole model above SL3 additionally needs the security officer."""
    return action is Action.EXPORT and level > SecurityLevel.SL3


def new_grant(
    *,
    id: str,
    asset: AssetRef,
    action: Action,
    requester: str,
    reason: str,
    hub: str | None,
    hours: float,
    max_hours: int,
    level: SecurityLevel,
    now: datetime,
    requester_issuers: tuple[str, ...] = (),
) -> Grant:
    if action not in GRANT_ACTIONS:
        raise InvalidInput(
            f"grants are for weight access, not {action.value}", hint="ask for download, export or copy_to_hub"
        )
    if not level.upper_tier:
        raise InvalidInput(f"this version is {level}: lower-tier weights need no grant", hint="download it directly")
    if not reason.strip():
        raise InvalidInput("a grant request needs a reason", hint="say what the weights are needed for")
    if not 0 < hours <= max_hours:
        raise InvalidInput(f"a grant lasts more than 0 and at most {max_hours} hours", hint=f"ask for 1 to {max_hours}")
    if action is Action.COPY_TO_HUB and not (hub and hub.strip()):
        raise InvalidInput("a copy to a compute hub names the hub", hint="pass the hub's name")
    return Grant(
        id=id,
        asset=asset,
        action=action,
        requester=requester,
        reason=reason.strip()[:2000],
        hub=hub.strip() if hub else None,
        duration=timedelta(hours=hours),
        requested_at=now,
        requester_issuers=requester_issuers,
    )


def approve(
    grant: Grant,
    approver: str,
    *,
    is_officer: bool,
    level: SecurityLevel,
    now: datetime,
    approver_issuers: tuple[str, ...] = (),
) -> Grant:
    """Record one approval; the grant is approved once every needed approval is in. Each approval
    comes from another person than the requester and the other approver: another principal, not
    acting with a key either of them issued (nor they with one the approver issued)."""
    if grant.status is not GrantStatus.PENDING:
        raise Conflict(f"the grant is {grant.state(now)}, not pending", hint="request a new grant")
    if approver == grant.requester:
        raise Forbidden("nobody approves their own request", hint="a second person must approve it (two-person rule)")
    if not distinct_hands(grant.requester, grant.requester_issuers, approver, approver_issuers):
        raise Forbidden(
            "an approval with a key the requester issued (or from the issuer of the requester's key) "
            "is not a second person's",
            hint="a second person, acting with a key of their own, must approve it (two-person rule)",
        )
    if approver in (grant.approver, grant.officer):
        raise Conflict("you already approved this grant", hint="another person must approve it")
    for other, issuers in ((grant.approver, grant.approver_issuers), (grant.officer, grant.officer_issuers)):
        if other is not None and not distinct_hands(other, issuers, approver, approver_issuers):
            raise Forbidden(
                "the other approval was given with a key you issued, or you act with one its giver issued",
                hint="a third person, acting with a key of their own, must approve it",
            )
    needs_officer = needs_security_officer(grant.action, level)
    if needs_officer and is_officer and grant.officer is None:
        grant = replace(grant, officer=approver, officer_approved_at=now, officer_issuers=approver_issuers)
    elif grant.approver is None:
        grant = replace(grant, approver=approver, approved_at=now, approver_issuers=approver_issuers)
    else:
        raise Forbidden(
            "this export above SL3 still needs a security officer's approval",
            hint="ask a security officer (not the requester or first approver) to approve it",
        )
    if grant.approver is not None and (not needs_officer or grant.officer is not None):
        grant = replace(grant, status=GrantStatus.APPROVED, expires_at=now + grant.duration)
    return grant


def revoke(grant: Grant, by: str, now: datetime) -> Grant:
    if grant.status is GrantStatus.REVOKED:
        raise Conflict("the grant is already revoked", hint="nothing to do")
    return replace(grant, status=GrantStatus.REVOKED, revoked_at=now, revoked_by=by)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def check_token(token: str) -> str:
    if not TOKEN_PATTERN.fullmatch(token):
        raise InvalidInput("that is not a download token", hint="use the dlt_... token issued for your grant")
    return token


# --- alerts -----------------------------------------------------------------------------------


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlertKind(StrEnum):
    CANARY = "canary_touched"
    DOWNLOAD_SURGE = "download_surge"
    OUTSIDE_PROGRAMMES = "outside_programmes"
    BAD_SHARE = "bad_unseal_share"
    TOKEN_REPLAY = "token_replay"  # noqa: S105 - an alert kind


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    raised_at: datetime
    severity: Severity
    kind: AlertKind
    principal: str
    asset: AssetRef | None
    origin: str | None
    summary: str
    details: dict[str, object]
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


BASELINE_DAYS = 14


def download_surge(today: int, past_days: list[int], *, factor: float, minimum: int) -> bool:
    """Far more downloads today than the person's baseline (the mean over the past days,
    zeros included), and more than the always-allowed minimum."""
    baseline = fmean(past_days) if past_days else 0.0
    return today > minimum and today > factor * baseline
