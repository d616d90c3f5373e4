"""Legal clocks: every obligation's deadline, computed from when we became aware. Pure.

Each clock counts from `aware_at`, the moment the institution learned of the incident (kept apart
from the event's own dates). No clock is computed without it: a missing `aware_at` is an error, not
a guess. The reporter's own obligations are computed so that RAID can remind them; RAID's
forwarding SLA is RAID's own promise to the body a report is routed to.

- ai-act-73 (AI Act Art. 73(2)-(4)): 15 days; 2 days for a widespread infringement or a critical
  infrastructure disruption; 10 days for a death.
- cop-9.3 (GPAI Code of Practice, Safety and Security, Measure 9.3): 2 days (critical
  infrastructure), 5 days (cyber breach), 10 days (death), 15 days (other serious harm); an
  intermediate report at least every 4 weeks while unresolved; a final report within 60 days of
  resolution.
- nis2 (Dir. (EU) 2022/2555 Art. 23(4)(a), (b), (d)): early warning 24 hours; incident notification
  72 hours; final report one month after the notification.
- cra (Reg. (EU) 2024/2847 Art. 14(2)(a), (b), from 11 September 2026): early warning 24 hours;
  vulnerability notification 72 hours.
- raid-forwarding: RAID's own service level, hours per severity in the routing table.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aperture.core.errors import InvalidInput
from aperture.raid.serious import Limb, Seriousness


class Party(StrEnum):
    REPORTER = "reporter"  # the provider or entity whose legal obligation it is (RAID reminds them)
    RAID = "raid"  # the desk's own forwarding promise


class ClockName(StrEnum):
    AI_ACT_73 = "ai-act-73"
    COP_9_3 = "cop-9.3"
    NIS2 = "nis2"
    CRA = "cra"
    RAID_FORWARDING = "raid-forwarding"


@dataclass(frozen=True, slots=True)
class Obligation:
    clock: ClockName
    kind: str  # initial-report, intermediate-report, final-report, early-warning, notification, forward
    party: Party
    due_at: datetime
    legal_basis: str
    counts_from: str  # what the deadline counts from: aware_at, resolved_at, notification, last report
    recipient: str = ""

    @property
    def key(self) -> str:
        """Stable within an incident: one open obligation per clock and kind."""
        return f"{self.clock.value}/{self.kind}"


AIA_DAYS: dict[Limb, int] = {Limb.AIA_GENERAL: 15, Limb.AIA_WIDESPREAD_OR_INFRASTRUCTURE: 2, Limb.AIA_DEATH: 10}
AIA_BASIS: dict[Limb, str] = {
    Limb.AIA_GENERAL: "AI Act Art. 73(2): immediately, and not later than 15 days after becoming aware",
    Limb.AIA_WIDESPREAD_OR_INFRASTRUCTURE: (
        "AI Act Art. 73(3): immediately, and not later than 2 days after becoming aware"
    ),
    Limb.AIA_DEATH: "AI Act Art. 73(4): immediately, and not later than 10 days after becoming aware",
}
COP_DAYS: dict[Limb, int] = {
    Limb.COP_CRITICAL_INFRASTRUCTURE: 2,
    Limb.COP_CYBER_BREACH: 5,
    Limb.COP_DEATH: 10,
    Limb.COP_OTHER_SERIOUS_HARM: 15,
}
COP_INTERMEDIATE = timedelta(weeks=4)
COP_FINAL = timedelta(days=60)
NIS2_EARLY_WARNING = timedelta(hours=24)
NIS2_NOTIFICATION = timedelta(hours=72)
CRA_EARLY_WARNING = timedelta(hours=24)
CRA_NOTIFICATION = timedelta(hours=72)
CRA_APPLIES_FROM = datetime(2026, 9, 11, tzinfo=UTC)  # CRA Art. 71(2): Art. 14 applies from 11 September 2026


def require_aware(aware_at: datetime | None) -> datetime:
    if aware_at is None:
        raise InvalidInput(
            "the incident has no aware_at: no legal clock is computed without knowing when we became aware",
            hint="record it first: `aperture raid aware ID --at 2026-11-24T09:00:00Z` (when the desk learned of it)",
        )
    if aware_at.tzinfo is None:
        raise InvalidInput("aware_at has no time zone", hint="give it in UTC, ending with Z")
    return aware_at


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the last day of a shorter month)."""
    month = moment.month - 1 + months
    year = moment.year + month // 12
    month = month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def ai_act_73(seriousness: Seriousness, aware_at: datetime | None) -> list[Obligation]:
    """The provider's report to the market surveillance authority: the shortest limb that applies."""
    if not seriousness.ai_act.applies:
        return []
    aware = require_aware(aware_at)
    limb = min(seriousness.ai_act.limbs, key=lambda item: AIA_DAYS[item])
    return [
        Obligation(
            ClockName.AI_ACT_73,
            "initial-report",
            Party.REPORTER,
            aware + timedelta(days=AIA_DAYS[limb]),
            AIA_BASIS[limb],
            "aware_at",
        )
    ]


def cop_9_3(
    seriousness: Seriousness,
    aware_at: datetime | None,
    *,
    resolved_at: datetime | None = None,
    last_report_at: datetime | None = None,
) -> list[Obligation]:
    """The signatory's initial report (shortest limb), then an intermediate report at least every
    four weeks while unresolved, and a final report within 60 days of resolution."""
    if not seriousness.code_of_practice.applies:
        return []
    aware = require_aware(aware_at)
    limb = min(seriousness.code_of_practice.limbs, key=lambda item: COP_DAYS[item])
    days = COP_DAYS[limb]
    initial = aware + timedelta(days=days)
    found = [
        Obligation(
            ClockName.COP_9_3,
            "initial-report",
            Party.REPORTER,
            initial,
            f"GPAI Code of Practice, Measure 9.3 ({limb.value.removeprefix('cop-9.3-')}): not later than {days} days "
            "after becoming aware of the model's involvement",
            "aware_at",
        )
    ]
    if resolved_at is None:
        anchor = last_report_at or initial
        found.append(
            Obligation(
                ClockName.COP_9_3,
                "intermediate-report",
                Party.REPORTER,
                anchor + COP_INTERMEDIATE,
                "GPAI Code of Practice, Measure 9.3: an intermediate report at least every 4 weeks until resolved",
                "last report" if last_report_at else "initial report deadline",
            )
        )
    else:
        found.append(
            Obligation(
                ClockName.COP_9_3,
                "final-report",
                Party.REPORTER,
                resolved_at + COP_FINAL,
                "GPAI Code of Practice, Measure 9.3: a final report not later than 60 days after resolution",
                "resolved_at",
            )
        )
    return found


def nis2(aware_at: datetime | None, *, notified_at: datetime | None = None) -> list[Obligation]:
    """A significant incident of an essential or important entity (NIS2 Art. 23(4))."""
    aware = require_aware(aware_at)
    notification = aware + NIS2_NOTIFICATION
    return [
        Obligation(
            ClockName.NIS2,
            "early-warning",
            Party.REPORTER,
            aware + NIS2_EARLY_WARNING,
            "NIS2 Art. 23(4)(a): an early warning without undue delay and within 24 hours of becoming aware",
            "aware_at",
        ),
        Obligation(
            ClockName.NIS2,
            "notification",
            Party.REPORTER,
            notification,
            "NIS2 Art. 23(4)(b): an incident notification within 72 hours of becoming aware",
            "aware_at",
        ),
        Obligation(
            ClockName.NIS2,
            "final-report",
            Party.REPORTER,
            add_months(notified_at or notification, 1),
            "NIS2 Art. 23(4)(d): a final report not later than one month after the incident notification",
            "notification" if notified_at else "notification deadline",
        ),
    ]


def cra(aware_at: datetime | None) -> list[Obligation]:
    """An actively exploited vulnerability in a product with digital elements (CRA Art. 14(2))."""
    aware = require_aware(aware_at)
    if aware < CRA_APPLIES_FROM:
        return []
    return [
        Obligation(
            ClockName.CRA,
            "early-warning",
            Party.REPORTER,
            aware + CRA_EARLY_WARNING,
            "CRA Art. 14(2)(a): an early warning within 24 hours of becoming aware",
            "aware_at",
        ),
        Obligation(
            ClockName.CRA,
            "notification",
            Party.REPORTER,
            aware + CRA_NOTIFICATION,
            "CRA Art. 14(2)(b): a vulnerability notification within 72 hours of becoming aware",
            "aware_at",
        ),
    ]


def raid_forwarding(aware_at: datetime | None, hours: int, recipient: str) -> Obligation:
    aware = require_aware(aware_at)
    return Obligation(
        ClockName.RAID_FORWARDING,
        "forward",
        Party.RAID,
        aware + timedelta(hours=hours),
        f"RAID forwarding service level: within {hours} hours of becoming aware",
        "aware_at",
        recipient,
    )


def compute(
    clocks: Iterable[ClockName],
    seriousness: Seriousness,
    aware_at: datetime | None,
    *,
    recipient: str,
    resolved_at: datetime | None = None,
    last_report_at: datetime | None = None,
    notified_at: datetime | None = None,
) -> list[Obligation]:
    """Every reporter obligation of the named clocks (RAID's own SLA is added by the router)."""
    require_aware(aware_at)
    found: list[Obligation] = []
    for clock in dict.fromkeys(clocks):
        if clock is ClockName.AI_ACT_73:
            found += ai_act_73(seriousness, aware_at)
        elif clock is ClockName.COP_9_3:
            found += cop_9_3(seriousness, aware_at, resolved_at=resolved_at, last_report_at=last_report_at)
        elif clock is ClockName.NIS2:
            found += nis2(aware_at, notified_at=notified_at)
        elif clock is ClockName.CRA:
            found += cra(aware_at)
    return [_to(item, recipient) for item in found]


def _to(obligation: Obligation, recipient: str) -> Obligation:
    return Obligation(
        obligation.clock,
        obligation.kind,
        obligation.party,
        obligation.due_at,
        obligation.legal_basis,
        obligation.counts_from,
        recipient,
    )


@dataclass(frozen=True, slots=True)
class Tracked:
    """An obligation as the desk keeps it: computed once, met once, reminded once."""

    id: str
    incident_id: str
    route_id: str | None
    obligation: Obligation
    created_at: datetime
    met_at: datetime | None = None
    reminded_at: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        return self.met_at is None and now > self.obligation.due_at
