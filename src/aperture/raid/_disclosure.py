"""Coordinated disclosure (D5): advisories, affected parties told privately, embargoes, publication."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from aperture import __version__
from aperture.access.domain import Action, Caller
from aperture.core.errors import Conflict, NotFound
from aperture.core.ids import new_id
from aperture.raid import csaf, store
from aperture.raid._context import Context, check_id, record, seen, viewer
from aperture.raid.disclosure import (
    Advisory,
    EmbargoPolicy,
    decide_early,
    embargo_until,
    extend,
    new_advisory,
    notified,
    publish,
)
from aperture.raid.domain import Incident
from aperture.raid.messages import Message, MessageKind, new_message
from aperture.raid.tlp import Tlp, email_banner

PRIVATE = Tlp.AMBER_STRICT  # affected parties are told for their own organisation only


def _missing(advisory_id: str) -> NotFound:
    return NotFound(f"no advisory {advisory_id}", hint="`aperture raid advisory list` shows the advisories you may see")


class Disclosure:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _incident(self, caller: Caller, incident_id: str) -> Incident:
        return seen(self.ctx, caller, incident_id)[0]

    def _advisory(self, caller: Caller, advisory_id: str) -> tuple[Advisory, Incident]:
        key = check_id(advisory_id, "advisory")
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            advisory = store.load_advisory(connection, key, seen_by)
            incident = None if advisory is None else store.load_incident(connection, advisory.incident_id, seen_by)
        if advisory is None or incident is None:
            raise _missing(key)
        return advisory, incident

    def draft(
        self,
        caller: Caller,
        incident_id: str,
        *,
        title: str,
        summary: str,
        remediation: str = "",
        policy: EmbargoPolicy | None = None,
        days: int | None = None,
        fixed_at: datetime | None = None,
        grace: bool = False,
        parties: Iterable[str] = (),
    ) -> Advisory:
        """An advisory about an incident, its embargo computed from when the finding was reported."""
        self.ctx.access.require_instance(caller, Action.RAID_DISCLOSE)
        incident = self._incident(caller, incident_id)
        config = self.ctx.config
        chosen = policy or config.embargo_policy
        reported = incident.aware_at or incident.created_at
        until = embargo_until(
            chosen, reported, fixed_at=fixed_at, grace=grace, days=days if days is not None else config.embargo_days
        )
        now = self.ctx.clock.now()
        advisory = new_advisory(
            id=new_id(),
            incident_id=incident.id,
            title=title,
            summary=summary,
            remediation=remediation,
            policy=chosen,
            embargo=until,
            parties=(*incident.organisations(), *(p.strip() for p in parties if p.strip())),
            by=caller.actor,
            now=now,
        )
        with self.ctx.database.transaction() as connection:
            store.insert_advisory(connection, advisory)
            record(
                self.ctx,
                connection,
                caller.actor,
                incident,
                "raid.advisory.drafted",
                {
                    "advisory": advisory.id,
                    "policy": chosen.value,
                    "embargo_until": None if until is None else until.isoformat(),
                    "parties": len(advisory.parties),
                },
            )
        return advisory

    def notify(self, caller: Caller, advisory_id: str) -> Advisory:
        """Tell every affected party privately (TLP:AMBER+STRICT), through the outbox; all or none."""
        self.ctx.access.require_instance(caller, Action.RAID_DISCLOSE)
        advisory, incident = self._advisory(caller, advisory_id)
        now = self.ctx.clock.now()
        after = notified(advisory, now)
        with self.ctx.database.read() as connection:
            addresses = store.contacts(connection, list(advisory.parties))
        missing = [p for p in advisory.parties if p not in addresses]
        if missing:
            raise Conflict(
                f"no contact address for {', '.join(missing)}: nobody was told",
                hint="`aperture raid contact set NAME ADDRESS` for each, then notify again",
            )
        until = "no fixed date (publication only by a recorded decision)"
        if advisory.embargo_until is not None:
            until = advisory.embargo_until.isoformat()
        messages = [
            new_message(
                id=new_id(),
                now=now,
                incident_id=incident.id,
                kind=MessageKind.ADVISORY,
                recipient=addresses[party],
                subject=f"[{PRIVATE.label}] RAID advisory under embargo: {advisory.title}",
                body=(
                    email_banner(PRIVATE)
                    + f"To {party}: an advisory concerning you, under embargo until {until}.\n"
                    + "Share it only within your organisation, on a need-to-know basis, until it is published.\n\n"
                    + f"{advisory.title}\n\n{advisory.summary}\n"
                    + (f"\nRemediation:\n{advisory.remediation}\n" if advisory.remediation else "")
                    + f"\nRAID advisory {advisory.id}\n"
                ),
            )
            for party in advisory.parties
        ]
        details: dict[str, object] = {
            "advisory": advisory.id,
            "parties": len(messages),
            "messages": [m.id for m in messages],
        }
        return self._save(caller, incident, advisory, after, "raid.advisory.notified", details, messages=messages)

    def decide_early(self, caller: Caller, advisory_id: str, reason: str) -> Advisory:
        """The recorded decision to publish before the embargo ends (who, when, why)."""
        self.ctx.access.require_instance(caller, Action.RAID_PUBLISH_EARLY)
        advisory, incident = self._advisory(caller, advisory_id)
        after = decide_early(advisory, caller.actor, reason, self.ctx.clock.now())
        reason_text = after.early.reason if after.early else ""
        return self._save(
            caller,
            incident,
            advisory,
            after,
            "raid.advisory.early_publication_decided",
            {"advisory": advisory.id},
            timeline={"advisory": advisory.id, "reason": reason_text},
        )

    def extend(self, caller: Caller, advisory_id: str, until: datetime) -> Advisory:
        self.ctx.access.require_instance(caller, Action.RAID_DISCLOSE)
        advisory, incident = self._advisory(caller, advisory_id)
        after = extend(advisory, until, self.ctx.clock.now())
        details: dict[str, object] = {"advisory": advisory.id, "embargo_until": until.isoformat()}
        return self._save(caller, incident, advisory, after, "raid.advisory.extended", details)

    def publish(self, caller: Caller, advisory_id: str) -> Advisory:
        """Public as a CSAF 2.0 document once the embargo passed (or by a recorded decision)."""
        self.ctx.access.require_instance(caller, Action.RAID_DISCLOSE)
        advisory, incident = self._advisory(caller, advisory_id)
        now = self.ctx.clock.now()
        after = publish(advisory, now)
        text = csaf.render(
            csaf.document(
                after,
                publisher=self.ctx.config.publisher_name,
                namespace=self.ctx.config.publisher_namespace,
                severity=incident.severity.value,
                released_at=now,
                engine_version=__version__,
            )
        )
        details: dict[str, object] = {"advisory": advisory.id, "early": after.early is not None}
        return self._save(caller, incident, advisory, after, "raid.advisory.published", details, csaf=text)

    def _save(
        self,
        caller: Caller,
        incident: Incident,
        before: Advisory,
        after: Advisory,
        action: str,
        details: dict[str, object],
        *,
        messages: Sequence[Message] = (),
        csaf: str | None = None,
        timeline: dict[str, object] | None = None,
    ) -> Advisory:
        """Save the advisory (optimistically), its messages and its event in one transaction."""
        with self.ctx.database.transaction() as connection:
            if not store.update_advisory(connection, before, after, csaf=csaf):
                raise Conflict("the advisory changed meanwhile", hint="read it again and retry")
            store.enqueue(connection, messages)
            record(self.ctx, connection, caller.actor, incident, action, details, timeline_details=timeline)
        return after

    def get(self, caller: Caller, advisory_id: str) -> Advisory:
        return self._advisory(caller, advisory_id)[0]

    def advisories(self, caller: Caller) -> list[Advisory]:
        self.ctx.access.require_instance(caller, Action.RAID_DESK)
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            return store.list_advisories(connection, seen_by, published_only=False)

    def published(self) -> list[Advisory]:
        """The public list: published advisories only (anyone)."""
        with self.ctx.database.read() as connection:
            return store.list_advisories(connection, None, published_only=True)

    def csaf(self, advisory_id: str) -> str:
        """A published advisory's CSAF 2.0 document (anyone); unpublished ones read as absent."""
        key = check_id(advisory_id, "advisory")
        with self.ctx.database.read() as connection:
            text = store.load_csaf(connection, key)
        if text is None:
            raise NotFound(f"no published advisory {key}", hint="`aperture raid advisory list --published`")
        return text
