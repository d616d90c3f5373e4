"""Triage (D2): reading the queue, assessing, moving through the lifecycle, assigning analysts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection

from aperture.access.domain import Action, Caller
from aperture.core.errors import Conflict, InvalidInput, NotFound
from aperture.raid import store
from aperture.raid._context import Context, check_id, record, seen, viewer
from aperture.raid.domain import (
    MOVE_ACTIONS,
    Assessment,
    Determination,
    Incident,
    Move,
    Reporter,
    TimelineEvent,
    assess,
    transition,
)
from aperture.raid.serious import CausalLink, Harm, Regime, assess_seriousness
from aperture.raid.taxonomy import Sector, Severity, check_avid, check_member_state
from aperture.raid.tlp import Tlp, Viewer, visible
from aperture.risk.domain import RiskDomain

MAX_PAGE = 500
# What someone outside the desk sees of an item's timeline: that it came in and how it moved.
PUBLIC_EVENTS = ("received", "moved", "shared")
PUBLIC_DETAILS = ("source", "move", "from", "to", "tlp")
Hook = Callable[[Connection, Incident], None]


@dataclass(frozen=True)
class Page:
    items: tuple[Incident, ...]
    total: int


def redact(incident: Incident, seen_by: Viewer) -> Incident:
    """Outside the desk, nobody sees who reported, how to reach them, or the source's raw evidence."""
    if seen_by.desk:
        return incident
    return replace(incident, reporter=Reporter(consent=incident.reporter.consent), evidence={}, assignee=None)


class Desk:
    def __init__(self, ctx: Context, after_change: Hook) -> None:
        self.ctx = ctx
        self._after_change = after_change  # obligations follow awareness and resolution

    # --- reading -------------------------------------------------------------------------

    def get(self, caller: Caller, incident_id: str) -> Incident:
        found, seen_by = seen(self.ctx, caller, incident_id)
        return redact(found, seen_by)

    def queue(self, caller: Caller, where: store.Filter | None = None, *, limit: int = 50, offset: int = 0) -> Page:
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE} and offset 0 or more", hint="page through with --offset")
        seen_by = viewer(self.ctx, caller)
        condition = where or store.Filter()
        with self.ctx.database.read() as connection:
            items = store.list_incidents(connection, seen_by, condition, limit=limit, offset=offset)
            total = store.count_incidents(connection, seen_by, condition)
        return Page(tuple(redact(i, seen_by) for i in items), total)

    def count(self, caller: Caller, where: store.Filter | None = None) -> int:
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            return store.count_incidents(connection, seen_by, where or store.Filter())

    def counts(self, caller: Caller) -> dict[str, int]:
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            return store.counts_by_status(connection, seen_by)

    def timeline(self, caller: Caller, incident_id: str) -> list[TimelineEvent]:
        found, seen_by = seen(self.ctx, caller, incident_id)
        with self.ctx.database.read() as connection:
            events = store.timeline(connection, found.id)
        if seen_by.desk:
            return events
        return [
            replace(e, actor="RAID desk", details={k: v for k, v in e.details.items() if k in PUBLIC_DETAILS})
            for e in events
            if e.kind in PUBLIC_EVENTS
        ]

    def attachments(self, caller: Caller, incident_id: str) -> list[store.AttachmentRecord]:
        found, _ = seen(self.ctx, caller, incident_id)
        with self.ctx.database.read() as connection:
            return store.attachments(connection, found.id)

    def attachment(self, caller: Caller, incident_id: str, digest: str) -> tuple[store.AttachmentRecord, bytes]:
        """The file, for download only (the adapters send it as an attachment, never inline)."""
        for item in self.attachments(caller, incident_id):
            if item.sha256 == digest:
                return item, self.ctx.files.read(digest, self.ctx.config.max_attachment_bytes)
        raise NotFound("no such attachment on this item", hint="`aperture raid show ID` lists its attachments")

    # --- changing ------------------------------------------------------------------------

    def _change(
        self,
        caller: Caller,
        action: Action,
        incident_id: str,
        change: Callable[[Incident], Incident],
        audit_action: str,
        details: Callable[[Incident, Incident], dict[str, object]],
        *,
        check: Callable[[Incident], None] | None = None,
        timeline_details: Callable[[Incident, Incident], dict[str, object]] | None = None,
    ) -> Incident:
        self.ctx.access.require_instance(caller, action)
        current, _ = seen(self.ctx, caller, incident_id)
        if check is not None:
            check(current)
        after = change(current)
        with self.ctx.database.transaction() as connection:
            saved = store.update_incident(connection, current, after)
            if saved is None:
                raise Conflict("the item changed meanwhile", hint="read it again and retry")
            facts = details(current, saved)
            record(
                self.ctx,
                connection,
                caller.actor,
                saved,
                audit_action,
                facts,
                timeline_details=None if timeline_details is None else timeline_details(current, saved),
            )
            self._after_change(connection, saved)
        return saved

    def assess(
        self,
        caller: Caller,
        incident_id: str,
        *,
        severity: Severity,
        risk_domain: RiskDomain | None = None,
        sector: Sector | None = None,
        member_state: str | None = None,
        dual_use: bool = False,
        avid: Iterable[str] = (),
        determination: Determination = Determination.SUSPECTED,
        harms: Iterable[Harm] = (),
        causal_link: CausalLink = CausalLink.UNKNOWN,
        regimes: Iterable[Regime] = (),
        provider_is_institution: bool = False,
    ) -> Incident:
        """Triage's classification; the serious-incident tests run on it and their reasons go on the timeline."""
        now = self.ctx.clock.now()
        assessment = Assessment(
            severity=severity,
            risk_domain=risk_domain,
            sector=sector,
            member_state=None if member_state is None else check_member_state(member_state),
            dual_use=dual_use,
            avid=check_avid(avid),
            determination=determination,
            harms=frozenset(harms),
            causal_link=causal_link,
            regimes=frozenset(regimes),
            provider_is_institution=provider_is_institution,
            by=caller.actor,
            at=now,
        )
        seriousness = assess_seriousness(assessment.seriousness_facts())

        def details(_: Incident, saved: Incident) -> dict[str, object]:
            return {
                "severity": severity.value,
                "risk_domain": risk_domain.value if risk_domain else None,
                "sector": sector.value if sector else None,
                "member_state": assessment.member_state,
                "dual_use": dual_use,
                "avid": list(assessment.avid),
                "serious": seriousness.serious,
                "reportable": seriousness.reportable,
            }

        def timeline(before: Incident, saved: Incident) -> dict[str, object]:
            return {**details(before, saved), "reasons": list(seriousness.reasons)}

        return self._change(
            caller,
            Action.RAID_TRIAGE,
            incident_id,
            lambda current: assess(current, assessment),
            "raid.incident.assessed",
            details,
            timeline_details=timeline,
        )

    def move(
        self, caller: Caller, incident_id: str, move: Move, *, reason: str = "", into: str | None = None
    ) -> Incident:
        target = None if into is None else check_id(into)
        if target is not None:
            self.get(caller, target)  # the incident it joins must be one the caller sees (same answer as absent)
        now = self.ctx.clock.now()

        def details(before: Incident, saved: Incident) -> dict[str, object]:
            found: dict[str, object] = {"move": move.value, "from": before.status.value, "to": saved.status.value}
            if target is not None:
                found["into"] = target
            return found

        return self._change(
            caller,
            MOVE_ACTIONS[move],
            incident_id,
            lambda current: transition(current, move, now, reason=reason, target=target),
            "raid.incident.moved",
            details,
            timeline_details=lambda before, saved: {**details(before, saved), "reason": saved.reason if reason else ""},
        )

    def assign(self, caller: Caller, incident_id: str, analyst: str) -> Incident:
        """Give the item to an analyst: a principal whose roles allow triage and who may see it."""
        try:
            principal = self.ctx.access.get_principal(analyst)
        except NotFound:
            raise InvalidInput(f"{analyst!r} is not a registered principal", hint="`aperture access list`") from None
        assignee = Caller(principal=principal.name, roles=principal.roles)
        if principal.disabled or not self.ctx.access.decide(assignee, Action.RAID_TRIAGE).allowed:
            raise InvalidInput(
                f"{analyst} is not a RAID analyst", hint="assign to a principal with the raid_analyst role"
            )
        their_view = viewer(self.ctx, assignee)

        def check(current: Incident) -> None:
            if current.tlp is Tlp.RED and principal.name not in current.audience.principals:
                raise Conflict(
                    "a TLP:RED item is assigned only to someone already named on it",
                    hint="name them on it first (`aperture raid share ID --principal NAME`)",
                )
            if not visible(current.tlp, current.audience, current.versions(), their_view):
                raise Conflict(
                    f"{analyst} may not see this item (clearance or need-to-know for a version it concerns)",
                    hint="assign it to an analyst cleared for the versions it concerns",
                )

        return self._change(
            caller,
            Action.RAID_TRIAGE,
            incident_id,
            lambda current: replace(current, assignee=principal.name, updated_at=self.ctx.clock.now()),
            "raid.incident.assigned",
            lambda before, saved: {"assignee": principal.name, "previous": before.assignee},
            check=check,
        )

    def set_aware(self, caller: Caller, incident_id: str, at: datetime) -> Incident:
        """When the institution became aware: every legal clock counts from it."""
        now = self.ctx.clock.now()
        if at.tzinfo is None:
            raise InvalidInput("aware_at has no time zone", hint="give it in UTC, ending with Z")
        if at > now:
            raise InvalidInput("aware_at is in the future", hint="give the moment the desk became aware")
        return self._change(
            caller,
            Action.RAID_TRIAGE,
            incident_id,
            lambda current: replace(current, aware_at=at, updated_at=now),
            "raid.incident.aware_set",
            lambda before, saved: {
                "aware_at": at.isoformat(),
                "previous": None if before.aware_at is None else before.aware_at.isoformat(),
            },
        )

    def record_facts(self, caller: Caller, incident_id: str, values: dict[str, str]) -> Incident:
        """What the recipients' forms ask (CoP 9.2 items, NIS2 fields); values stay out of the log."""
        now = self.ctx.clock.now()
        return self._change(
            caller,
            Action.RAID_INVESTIGATE,
            incident_id,
            lambda current: replace(current, facts=current.facts.with_values(values), updated_at=now),
            "raid.incident.facts_recorded",
            lambda before, saved: {"fields": sorted(values)},
        )

    def mine(self, caller: Caller) -> list[Incident]:
        """Items assigned to the caller."""
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            return store.list_incidents(
                connection, seen_by, store.Filter(assignee=caller.principal), limit=MAX_PAGE, offset=0
            )
