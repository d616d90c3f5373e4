"""Information sharing (D4): TLP labels and recipients, STIX exports and partners' bundles."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aperture.access.domain import Action, Caller
from aperture.core.errors import Conflict, InvalidInput, NotFound
from aperture.core.ids import new_id
from aperture.raid import store
from aperture.raid._context import Context, principal_of, record, seen, viewer
from aperture.raid._intake import IntakeResult
from aperture.raid.domain import (
    Detection,
    Incident,
    IntakeItem,
    Reporter,
    Source,
    SourceKind,
    TimelineEvent,
    new_incident,
    share,
)
from aperture.raid.stix import export_bundle, parse_bundle
from aperture.raid.tlp import Audience, Tlp

MAX_EXPORT = 20_000


class Sharing:
    def __init__(self, ctx: Context, default_tlp: Callable[[], Tlp]) -> None:
        self.ctx = ctx
        self.default_tlp = default_tlp  # the routing table's label for what comes in unmarked

    def share(
        self,
        caller: Caller,
        incident_id: str,
        *,
        tlp: Tlp | None = None,
        add_principals: Iterable[str] = (),
        remove_principals: Iterable[str] = (),
        add_organisations: Iterable[str] = (),
        remove_organisations: Iterable[str] = (),
    ) -> Incident:
        """Relabel an item or change who it is shared with. Naming someone on a TLP:RED item is for
        those already in the exchange (named on it); principals must be registered."""
        self.ctx.access.require_instance(caller, Action.RAID_SHARE)
        current, _ = seen(self.ctx, caller, incident_id)
        added = tuple(dict.fromkeys(p.strip() for p in add_principals if p.strip()))
        for name in added:
            try:
                self.ctx.access.get_principal(name)
            except NotFound:
                raise InvalidInput(f"{name!r} is not a registered principal", hint="`aperture access list`") from None
        label = tlp or current.tlp
        me = principal_of(caller)
        if current.tlp is Tlp.RED and (me is None or me not in current.audience.principals):
            raise Conflict(
                "only someone named on a TLP:RED item widens or relabels it",
                hint="ask one of the principals named on it",
            )
        audience = Audience(
            (current.audience.principals | frozenset(added)) - frozenset(remove_principals),
            (current.audience.organisations | frozenset(o.strip() for o in add_organisations if o.strip()))
            - frozenset(remove_organisations),
        )
        if label is Tlp.RED and me is not None:
            audience = audience.with_principals([me])  # whoever labels it RED stays in the exchange
        after = share(current, label, audience, self.ctx.clock.now())
        with self.ctx.database.transaction() as connection:
            saved = store.update_incident(connection, current, after)
            if saved is None:
                raise Conflict("the item changed meanwhile", hint="read it again and retry")
            record(
                self.ctx,
                connection,
                caller.actor,
                saved,
                "raid.incident.shared",
                {
                    "from": current.tlp.value,
                    "tlp": saved.tlp.value,
                    "principals": len(saved.audience.principals),
                    "organisations": sorted(saved.audience.organisations),
                },
                timeline_kind="shared",
            )
        return saved

    def export(self, caller: Caller, where: store.Filter | None = None, *, validate: bool = True) -> str:
        """A STIX 2.1 bundle of the items the caller may see (the filter is part of the query)."""
        self.ctx.access.require_instance(caller, Action.RAID_DESK)
        seen_by = viewer(self.ctx, caller)
        with self.ctx.database.read() as connection:
            items = store.list_incidents(connection, seen_by, where or store.Filter(), limit=MAX_EXPORT)
        text = export_bundle(items, publisher=self.ctx.config.publisher_name, validate=validate)
        self.ctx.audit.record(
            actor=caller.actor, action="raid.stix.exported", resource="raid-export", details={"incidents": len(items)}
        )
        return text

    def import_bundle(self, caller: Caller, data: bytes) -> IntakeResult:
        """A partner's bundle: each incident becomes an item (idempotent by the partner's STIX id),
        labelled as the partner marked it (unmarked: the routing table's default)."""
        ctx = self.ctx
        ctx.access.require_instance(caller, Action.RAID_REPORT)
        found = parse_bundle(data, max_bytes=ctx.config.stix_max_bytes)
        name = principal_of(caller)
        organisation = None
        if name is not None:
            try:
                organisation = ctx.access.get_principal(name).organisation
            except NotFound:
                organisation = None
        now = ctx.clock.now()
        partner = organisation or caller.principal
        default = self.default_tlp()
        incidents = []
        for index, item in enumerate(found):
            if item.tlp is Tlp.RED:
                raise InvalidInput(
                    f"the STIX bundle is refused: incident {index} is TLP:RED, never exchanged system to system",
                    hint="TLP:RED goes to named people: report it with its recipients named, or in person",
                )
            tlp = item.tlp or default
            intake = IntakeItem(
                source=Source(SourceKind.STIX, f"{partner}:{item.stix_id}"[:200]),
                title=item.name[:200] or "(untitled STIX incident)",
                summary=item.description[:20_000] or item.name[:200] or "(no description)",
                tlp=tlp,
                aware_at=now,
                detection=Detection.HUMAN_REVIEW,
                reporter=Reporter(name, organisation),
                occurred_from=item.created,
                evidence={
                    "stix_id": item.stix_id,
                    "producer": item.producer,
                    "determination": item.determination.value,
                },
            )
            try:
                incidents.append(new_incident(intake, id=new_id(), now=now))
            except InvalidInput as error:
                raise type(error)(f"STIX incident {index}: {error.message}", hint=error.hint) from None
        with ctx.database.transaction() as connection:
            taken = store.insert_incidents(connection, [(i, None) for i in incidents])
            store.add_events(
                connection,
                [TimelineEvent(new_id(), i, now, caller.actor, "received", {"source": "stix"}) for i in taken],
            )
            ctx.audit.append(
                connection,
                actor=caller.actor,
                action="raid.stix.imported",
                resource="raid-intake",
                details={"taken": len(taken), "skipped": len(incidents) - len(taken), "incidents": list(taken)},
            )
        return IntakeResult(tuple(taken), len(incidents) - len(taken))
