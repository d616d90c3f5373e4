"""Routing and clocks (D3): where a report goes, every deadline, drafts, forwarding, reminders."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources

from sqlalchemy import Connection

from aperture.access.domain import Action, Caller
from aperture.core.errors import Conflict, InvalidInput, NotFound
from aperture.core.ids import new_id
from aperture.raid import store
from aperture.raid._context import Context, check_id, record, seen, viewer
from aperture.raid.clocks import ClockName, Obligation, Party, Tracked, compute, raid_forwarding, require_aware
from aperture.raid.disclosure import SHARING_POLICY_TEXT, may_forward
from aperture.raid.domain import Incident, Status
from aperture.raid.drafts import Draft, Form, draft
from aperture.raid.messages import MessageKind, check_address, new_message
from aperture.raid.routing import Route, RoutingTable, forwarding_hours, parse_table, required_by_law, route
from aperture.raid.serious import Seriousness, assess_seriousness
from aperture.raid.tlp import Tlp, email_banner

SHIPPED = "data/routing.yaml"


def shipped_table_text() -> str:
    return (resources.files("aperture.raid") / SHIPPED).read_text(encoding="utf-8")


@dataclass(frozen=True)
class DueItem:
    obligation: Tracked
    overdue: bool


class Routing:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._parsed: tuple[int, RoutingTable] | None = None

    # --- the table -----------------------------------------------------------------------

    def table(self) -> RoutingTable:
        """The table in force: the last one adopted, or the shipped default (number 0)."""
        with self.ctx.database.read() as connection:
            current = store.current_table(connection)
        number, text = current if current is not None else (0, "")
        with self._lock:
            if self._parsed is None or self._parsed[0] != number:
                self._parsed = (number, parse_table(text if current is not None else shipped_table_text()))
            return self._parsed[1]

    def check(self, text: str) -> RoutingTable:
        """Validate a table without adopting it (clear errors, nothing written)."""
        return parse_table(text)

    def adopt(self, caller: Caller, text: str) -> RoutingTable:
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        table = parse_table(text)
        current = self.table()
        if table.version <= current.version:
            raise Conflict(
                f"the table in force is version {current.version}; this one is {table.version}",
                hint="raise `version:` in the file: each adopted table gets a new version",
            )
        with self.ctx.database.transaction() as connection:
            number = store.adopt_table(
                connection, table.version, table.digest, text, caller.actor, self.ctx.clock.now()
            )
            self.ctx.audit.append(
                connection,
                actor=caller.actor,
                action="raid.routing.adopted",
                resource="raid-routing",
                details={"number": number, "version": table.version, "digest": table.digest},
            )
        return table

    # --- routing an incident ---------------------------------------------------------------

    def _visible(self, caller: Caller, incident_id: str) -> Incident:
        return seen(self.ctx, caller, incident_id)[0]

    def route(self, caller: Caller, incident_id: str) -> list[Route]:
        """Every body the table routes the incident to, with all its clocks computed from aware_at."""
        self.ctx.access.require_instance(caller, Action.RAID_ROUTE)
        incident = self._visible(caller, incident_id)
        assessment = incident.assessment
        if assessment is None:
            raise Conflict(
                "the incident is not assessed: routing reads its sector, domain and member state",
                hint="`aperture raid assess ID ...` first",
            )
        require_aware(incident.aware_at)
        table = self.table()
        seriousness = assess_seriousness(assessment.seriousness_facts())
        now = self.ctx.clock.now()
        routes = [
            Route(
                new_id(),
                incident.id,
                match,
                required_by_law(match, assessment.provider_is_institution, seriousness),
                now,
            )
            for match in route(table, assessment)
        ]
        with self.ctx.database.transaction() as connection:
            kept = [r for r in store.routes(connection, incident.id) if r.forwarded_at is not None]
            kept_rules = {r.match.rule_id for r in kept}
            fresh = [r for r in routes if r.match.rule_id not in kept_rules]
            store.delete_unforwarded_routes(connection, incident.id)
            store.insert_routes(connection, fresh)
            count = self._refresh(connection, incident, table=table)
            record(
                self.ctx,
                connection,
                caller.actor,
                incident,
                "raid.incident.routed",
                {
                    "table_version": table.version,
                    "routes": [r.match.rule_id for r in (*kept, *fresh)],
                    "obligations": count,
                },
            )
            return store.routes(connection, incident.id)

    def refresh(self, connection: Connection, incident: Incident) -> None:
        """After a change to awareness or resolution: recompute the open obligations of its routes."""
        if incident.aware_at is not None and store.routes(connection, incident.id):
            self._refresh(connection, incident)

    def _refresh(self, connection: Connection, incident: Incident, *, table: RoutingTable | None = None) -> int:
        assessment = incident.assessment
        if assessment is None or incident.aware_at is None:
            return 0
        table = table or self.table()
        seriousness = assess_seriousness(assessment.seriousness_facts())
        existing = store.obligations(connection, incident.id)
        met = [t for t in existing if t.met_at is not None]
        store.delete_open_obligations(connection, incident.id)
        now = self.ctx.clock.now()
        fresh: list[Tracked] = []
        for chosen in store.routes(connection, incident.id):
            for obligation in self._obligations(chosen, incident, seriousness, table, met):
                if obligation.kind != "intermediate-report" and any(
                    t.route_id == chosen.id and t.obligation.key == obligation.key for t in met
                ):
                    continue
                fresh.append(Tracked(new_id(), incident.id, chosen.id, obligation, now))
        store.insert_obligations(connection, fresh)
        return len(fresh)

    @staticmethod
    def _obligations(
        chosen: Route, incident: Incident, seriousness: Seriousness, table: RoutingTable, met: list[Tracked]
    ) -> list[Obligation]:
        reports = [
            t.met_at
            for t in met
            if t.route_id == chosen.id
            and t.obligation.clock is ClockName.COP_9_3
            and t.met_at is not None
            and t.obligation.kind in ("initial-report", "intermediate-report")
        ]
        notified = [
            t.met_at
            for t in met
            if t.route_id == chosen.id and t.obligation.key == "nis2/notification" and t.met_at is not None
        ]
        found = compute(
            chosen.match.clocks,
            seriousness,
            incident.aware_at,
            recipient=chosen.match.body,
            resolved_at=incident.resolved_at if incident.status in (Status.RESOLVED, Status.CLOSED) else None,
            last_report_at=max(reports) if reports else None,
            notified_at=max(notified) if notified else None,
        )
        if not chosen.match.raid_owned:
            hours = forwarding_hours(table, incident.severity)
            found.append(raid_forwarding(incident.aware_at, hours, chosen.match.body))
        return found

    def routes(self, caller: Caller, incident_id: str) -> list[Route]:
        self.ctx.access.require_instance(caller, Action.RAID_DESK)
        incident = self._visible(caller, incident_id)
        with self.ctx.database.read() as connection:
            return store.routes(connection, incident.id)

    def obligations(self, caller: Caller, incident_id: str) -> list[Tracked]:
        self.ctx.access.require_instance(caller, Action.RAID_DESK)
        incident = self._visible(caller, incident_id)
        with self.ctx.database.read() as connection:
            return store.obligations(connection, incident.id)

    def due(
        self, caller: Caller, *, within: timedelta = timedelta(days=7), party: Party | None = None
    ) -> list[DueItem]:
        """The clocks dashboard: open obligations due within `within` (overdue first), on the items
        the caller may see (the TLP and clearance filter is part of the query)."""
        self.ctx.access.require_instance(caller, Action.RAID_DESK)
        seen_by = viewer(self.ctx, caller)
        now = self.ctx.clock.now()
        with self.ctx.database.read() as connection:
            found = store.due(connection, seen_by, before=now + within, party=None if party is None else party.value)
        return [DueItem(t, t.overdue(now)) for t in found]

    def meet(self, caller: Caller, obligation_id: str, *, at: datetime | None = None) -> Tracked:
        """Record that an obligation was met (a report went); the next intermediate report follows."""
        self.ctx.access.require_instance(caller, Action.RAID_ROUTE)
        key = check_id(obligation_id, "obligation")
        now = self.ctx.clock.now()
        moment = at or now
        if moment > now:
            raise InvalidInput("an obligation cannot be met in the future", hint="give the time it was met")
        with self.ctx.database.read() as connection:
            found = store.load_obligation(connection, key)
        if found is None:
            raise NotFound(f"no obligation {key}", hint="`aperture raid clocks ID` lists an item's obligations")
        incident = self._visible(caller, found.incident_id)
        with self.ctx.database.transaction() as connection:
            if not store.mark_met(connection, key, moment):
                raise Conflict("the obligation is already met", hint="nothing to do")
            record(
                self.ctx,
                connection,
                caller.actor,
                incident,
                "raid.obligation.met",
                {
                    "obligation": key,
                    "clock": found.obligation.clock.value,
                    "kind": found.obligation.kind,
                    "late": moment > found.obligation.due_at,
                },
            )
            self._refresh(connection, incident)
            met = store.load_obligation(connection, key)
        assert met is not None
        return met

    # --- drafts, forwarding, reminders -----------------------------------------------------

    def draft(self, caller: Caller, incident_id: str, form: Form) -> Draft:
        self.ctx.access.require_instance(caller, Action.RAID_ROUTE)
        incident = self._visible(caller, incident_id)
        return draft(form, incident, self._labels(caller, incident))

    def _labels(self, caller: Caller, incident: Incident) -> dict[str, str]:
        labels: dict[str, str] = {}
        for version in incident.versions():
            try:
                labels[version] = self.ctx.registry.version_by_id(version, caller=caller).reference
            except NotFound:
                labels[version] = version
        return labels

    @staticmethod
    def default_form(chosen: Route, incident: Incident) -> Form:
        resolved = incident.status in (Status.RESOLVED, Status.CLOSED)
        if ClockName.NIS2 in chosen.match.clocks:
            return Form.NIS2_FINAL if resolved else Form.NIS2_NOTIFICATION
        return Form.COP_FINAL if resolved else Form.COP_INITIAL

    def forward(self, caller: Caller, route_id: str, *, form: Form | None = None) -> Route:
        """Send the report to the routed body through the outbox, as far as the law, the reporter's
        consent and the sharing policy allow; the reporter's identity only with their consent."""
        self.ctx.access.require_instance(caller, Action.RAID_ROUTE)
        key = check_id(route_id, "route")
        with self.ctx.database.read() as connection:
            chosen = store.load_route(connection, key)
        if chosen is None:
            raise NotFound(f"no route {key}", hint="`aperture raid route ID` routes an item")
        incident = self._visible(caller, chosen.incident_id)
        if chosen.match.raid_owned:
            raise Conflict(f"{chosen.match.body} is the desk itself: nothing to forward", hint="it stays with RAID")
        if chosen.forwarded_at is not None:
            raise Conflict("this route was forwarded already", hint="send updates as new reports")
        if incident.tlp is Tlp.RED:
            raise Conflict(
                "a TLP:RED item stays with those named on it: it is not forwarded",
                hint="ask its source for permission to relabel it, then share it with a lower label",
            )
        decision = may_forward(chosen.required_by_law, incident.reporter.consent, self.ctx.config.sharing_policy)
        if not decision.allowed:
            raise Conflict(
                f"not forwarded: {decision.reason}",
                hint="beyond the law, the sharing policy (`aperture raid policy`) and the reporter's consent decide",
            )
        with self.ctx.database.read() as connection:
            address = store.contacts(connection, [chosen.match.body]).get(chosen.match.body)
        if address is None:
            raise Conflict(
                f"no contact address for {chosen.match.body}",
                hint=f"`aperture raid contact set {chosen.match.body!r} ADDRESS` first",
            )
        report = draft(form or self.default_form(chosen, incident), incident, self._labels(caller, incident))
        tlp = incident.tlp.stricter(self.table().default_tlp)
        body = email_banner(tlp) + report.text().removeprefix(incident.tlp.label + "\n")
        if decision.with_identity and (incident.reporter.principal or incident.reporter.contact):
            who = incident.reporter.principal or "a member of the public"
            body += (
                f"\nReported by {who}" + (f" ({incident.reporter.contact})" if incident.reporter.contact else "") + "\n"
            )
        now = self.ctx.clock.now()
        message = new_message(
            id=new_id(),
            now=now,
            incident_id=incident.id,
            kind=MessageKind.FORWARD,
            recipient=address,
            subject=f"[{tlp.label}] RAID report {incident.id}: {report.form.value}",
            body=body,
        )
        with self.ctx.database.transaction() as connection:
            if not store.mark_forwarded(connection, chosen.id, now):
                raise Conflict("this route was forwarded already", hint="send updates as new reports")
            store.enqueue(connection, [message])
            for tracked in store.obligations(connection, incident.id):
                if tracked.route_id == chosen.id and tracked.obligation.party is Party.RAID and tracked.met_at is None:
                    store.mark_met(connection, tracked.id, now)
            record(
                self.ctx,
                connection,
                caller.actor,
                incident,
                "raid.incident.forwarded",
                {
                    "route": chosen.id,
                    "body": chosen.match.body,
                    "form": report.form.value,
                    "required_by_law": chosen.required_by_law,
                    "with_identity": decision.with_identity,
                    "tlp": tlp.value,
                    "message": message.id,
                },
            )
            forwarded = store.load_route(connection, chosen.id)
        assert forwarded is not None
        return forwarded

    def remind(self, caller: Caller) -> int:
        """Queue a reminder to each reporter whose own deadline falls within the reminder window."""
        self.ctx.access.require_instance(caller, Action.RAID_ROUTE)
        now = self.ctx.clock.now()
        horizon = now + timedelta(hours=self.ctx.config.reminder_hours)
        queued = 0
        with self.ctx.database.transaction() as connection:
            for tracked, contact in store.to_remind(connection, before=horizon):
                if not contact:
                    continue
                try:
                    address = check_address(contact)
                except InvalidInput:
                    continue
                obligation = tracked.obligation
                message = new_message(
                    id=new_id(),
                    now=now,
                    incident_id=tracked.incident_id,
                    kind=MessageKind.REMINDER,
                    recipient=address,
                    subject=f"Reminder: {obligation.kind} due {obligation.due_at.isoformat()}",
                    body=(
                        f"Your {obligation.kind} to {obligation.recipient} is due by {obligation.due_at.isoformat()}.\n"
                        f"{obligation.legal_basis}\nRAID item {tracked.incident_id}\n"
                    ),
                )
                if store.mark_reminded(connection, tracked.id, now):
                    store.enqueue(connection, [message])
                    queued += 1
            if queued:
                self.ctx.audit.append(
                    connection,
                    actor=caller.actor,
                    action="raid.reminders.queued",
                    resource="raid-outbox",
                    details={"count": queued},
                )
        return queued

    # --- contacts and policy -------------------------------------------------------------

    def save_contact(self, caller: Caller, name: str, address: str) -> None:
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        label = " ".join(name.split())
        if not 0 < len(label) <= 300:
            raise InvalidInput("a contact needs the body's or organisation's name (1-300 characters)", hint="NAME")
        checked = check_address(address)
        with self.ctx.database.transaction() as connection:
            store.save_contact(connection, label, checked, self.ctx.clock.now())
            self.ctx.audit.append(
                connection,
                actor=caller.actor,
                action="raid.contact.saved",
                resource="raid-contacts",
                details={"name": label},
            )

    def contacts(self, caller: Caller) -> dict[str, str]:
        self.ctx.access.require_instance(caller, Action.RAID_MANAGE)
        with self.ctx.database.read() as connection:
            return store.contacts(connection)

    def sharing_policy(self) -> dict[str, str]:
        """The visible policy on what goes to regulators beyond the law (anyone may read it)."""
        policy = self.ctx.config.sharing_policy
        return {"policy": policy.value, "text": SHARING_POLICY_TEXT[policy]}
