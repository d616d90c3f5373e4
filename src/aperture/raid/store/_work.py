"""Routes, obligations, advisories, contacts and adopted routing tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from aperture.raid.clocks import ClockName, Obligation, Party, Tracked
from aperture.raid.disclosure import Advisory, AdvisoryStatus, EarlyPublication, EmbargoPolicy
from aperture.raid.routing import Route, RouteMatch, Verified
from aperture.raid.store._incidents import visible_clause
from aperture.raid.store._tables import (
    raid_advisories,
    raid_contacts,
    raid_incidents,
    raid_obligations,
    raid_routes,
    raid_routing_tables,
)
from aperture.raid.tlp import Viewer

# --- routes -----------------------------------------------------------------------------------


def insert_routes(connection: Connection, routes: Sequence[Route]) -> None:
    if not routes:
        return
    connection.execute(
        raid_routes.insert(),
        [
            {
                "id": r.id,
                "incident_id": r.incident_id,
                "table_version": r.match.table_version,
                "rule_id": r.match.rule_id,
                "body": r.match.body,
                "required_by_law": r.required_by_law,
                "raid_owned": r.match.raid_owned,
                "created_at": r.created_at,
                "forwarded_at": r.forwarded_at,
                "details": json.dumps(
                    {
                        "also": list(r.match.also),
                        "legal_basis": r.match.legal_basis,
                        "clocks": [c.value for c in r.match.clocks],
                        "sources": list(r.match.sources),
                        "verified": r.match.verified.value,
                    }
                ),
            }
            for r in routes
        ],
    )


def _route(row: Any) -> Route:
    details = json.loads(row.details)
    match = RouteMatch(
        rule_id=row.rule_id,
        body=row.body,
        also=tuple(details["also"]),
        legal_basis=details["legal_basis"],
        clocks=tuple(ClockName(c) for c in details["clocks"]),
        sources=tuple(details["sources"]),
        verified=Verified(details["verified"]),
        raid_owned=row.raid_owned,
        table_version=row.table_version,
    )
    return Route(row.id, row.incident_id, match, row.required_by_law, row.created_at, row.forwarded_at)


def routes(connection: Connection, incident_id: str) -> list[Route]:
    query = select(raid_routes).where(raid_routes.c.incident_id == incident_id).order_by(raid_routes.c.created_at)
    return [_route(row) for row in connection.execute(query)]


def load_route(connection: Connection, route_id: str) -> Route | None:
    row = connection.execute(select(raid_routes).where(raid_routes.c.id == route_id)).first()
    return None if row is None else _route(row)


def delete_unforwarded_routes(connection: Connection, incident_id: str) -> None:
    connection.execute(
        raid_routes.delete().where(raid_routes.c.incident_id == incident_id, raid_routes.c.forwarded_at.is_(None))
    )


def mark_forwarded(connection: Connection, route_id: str, moment: datetime) -> bool:
    result = connection.execute(
        update(raid_routes)
        .where(raid_routes.c.id == route_id, raid_routes.c.forwarded_at.is_(None))
        .values(forwarded_at=moment)
    )
    return result.rowcount == 1


# --- obligations ------------------------------------------------------------------------------


def insert_obligations(connection: Connection, items: Sequence[Tracked]) -> None:
    if not items:
        return
    connection.execute(
        raid_obligations.insert(),
        [
            {
                "id": t.id,
                "incident_id": t.incident_id,
                "route_id": t.route_id,
                "clock": t.obligation.clock.value,
                "kind": t.obligation.kind,
                "party": t.obligation.party.value,
                "recipient": t.obligation.recipient[:300],
                "legal_basis": t.obligation.legal_basis[:400],
                "counts_from": t.obligation.counts_from,
                "due_at": t.obligation.due_at,
                "met_at": t.met_at,
                "reminded_at": t.reminded_at,
                "created_at": t.created_at,
            }
            for t in items
        ],
    )


def _tracked(row: Any) -> Tracked:
    obligation = Obligation(
        ClockName(row.clock),
        row.kind,
        Party(row.party),
        row.due_at,
        row.legal_basis,
        row.counts_from,
        row.recipient,
    )
    return Tracked(row.id, row.incident_id, row.route_id, obligation, row.created_at, row.met_at, row.reminded_at)


def obligations(connection: Connection, incident_id: str) -> list[Tracked]:
    query = (
        select(raid_obligations)
        .where(raid_obligations.c.incident_id == incident_id)
        .order_by(raid_obligations.c.due_at, raid_obligations.c.id)
    )
    return [_tracked(row) for row in connection.execute(query)]


def load_obligation(connection: Connection, obligation_id: str) -> Tracked | None:
    row = connection.execute(select(raid_obligations).where(raid_obligations.c.id == obligation_id)).first()
    return None if row is None else _tracked(row)


def delete_open_obligations(connection: Connection, incident_id: str) -> None:
    """Before recomputing: the met ones stay as the record of what was done."""
    connection.execute(
        raid_obligations.delete().where(
            raid_obligations.c.incident_id == incident_id, raid_obligations.c.met_at.is_(None)
        )
    )


def mark_met(connection: Connection, obligation_id: str, moment: datetime) -> bool:
    result = connection.execute(
        update(raid_obligations)
        .where(raid_obligations.c.id == obligation_id, raid_obligations.c.met_at.is_(None))
        .values(met_at=moment)
    )
    return result.rowcount == 1


def mark_reminded(connection: Connection, obligation_id: str, moment: datetime) -> bool:
    result = connection.execute(
        update(raid_obligations)
        .where(raid_obligations.c.id == obligation_id, raid_obligations.c.reminded_at.is_(None))
        .values(reminded_at=moment)
    )
    return result.rowcount == 1


def due(
    connection: Connection, viewer: Viewer, *, before: datetime, party: str | None = None, limit: int = 500
) -> list[Tracked]:
    """Open obligations due before `before` on incidents the viewer may see (joined in the query)."""
    query = (
        select(raid_obligations)
        .join(raid_incidents, raid_incidents.c.id == raid_obligations.c.incident_id)
        .where(raid_obligations.c.met_at.is_(None), raid_obligations.c.due_at <= before, visible_clause(viewer))
        .order_by(raid_obligations.c.due_at, raid_obligations.c.id)
        .limit(limit)
    )
    if party is not None:
        query = query.where(raid_obligations.c.party == party)
    return [_tracked(row) for row in connection.execute(query)]


def to_remind(connection: Connection, *, before: datetime, limit: int = 500) -> list[tuple[Tracked, str | None]]:
    """Reporter obligations due before `before`, never reminded, with the reporter's contact."""
    query = (
        select(raid_obligations, raid_incidents.c.reporter_contact)
        .join(raid_incidents, raid_incidents.c.id == raid_obligations.c.incident_id)
        .where(
            raid_obligations.c.met_at.is_(None),
            raid_obligations.c.reminded_at.is_(None),
            raid_obligations.c.party == Party.REPORTER.value,
            raid_obligations.c.due_at <= before,
        )
        .order_by(raid_obligations.c.due_at)
        .limit(limit)
    )
    return [(_tracked(row), row.reporter_contact) for row in connection.execute(query)]


# --- advisories -------------------------------------------------------------------------------


def _advisory_body(advisory: Advisory) -> str:
    return json.dumps(
        {
            "title": advisory.title,
            "summary": advisory.summary,
            "remediation": advisory.remediation,
            "policy": advisory.policy.value,
            "parties": list(advisory.parties),
            "created_by": advisory.created_by,
            "notified_at": None if advisory.notified_at is None else advisory.notified_at.isoformat(),
            "early": None
            if advisory.early is None
            else {"by": advisory.early.by, "at": advisory.early.at.isoformat(), "reason": advisory.early.reason},
        }
    )


def _advisory(row: Any) -> Advisory:
    body = json.loads(row.body)
    early = body["early"]
    return Advisory(
        id=row.id,
        incident_id=row.incident_id,
        title=body["title"],
        summary=body["summary"],
        remediation=body["remediation"],
        status=AdvisoryStatus(row.status),
        policy=EmbargoPolicy(body["policy"]),
        embargo_until=row.embargo_until,
        parties=tuple(body["parties"]),
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=body["created_by"],
        notified_at=None if body["notified_at"] is None else datetime.fromisoformat(body["notified_at"]),
        published_at=row.published_at,
        early=None
        if early is None
        else EarlyPublication(early["by"], datetime.fromisoformat(early["at"]), early["reason"]),
        revision=row.revision,
    )


def insert_advisory(connection: Connection, advisory: Advisory) -> None:
    connection.execute(
        raid_advisories.insert().values(
            id=advisory.id,
            incident_id=advisory.incident_id,
            status=advisory.status.value,
            created_at=advisory.created_at,
            updated_at=advisory.updated_at,
            embargo_until=advisory.embargo_until,
            published_at=advisory.published_at,
            revision=advisory.revision,
            body=_advisory_body(advisory),
        )
    )


def update_advisory(connection: Connection, before: Advisory, after: Advisory, csaf: str | None = None) -> bool:
    values: dict[str, Any] = {
        "status": after.status.value,
        "updated_at": after.updated_at,
        "embargo_until": after.embargo_until,
        "published_at": after.published_at,
        "revision": before.revision + 1,
        "body": _advisory_body(after),
    }
    if csaf is not None:
        values["csaf"] = csaf
    result = connection.execute(
        update(raid_advisories)
        .where(raid_advisories.c.id == before.id, raid_advisories.c.revision == before.revision)
        .values(**values)
    )
    return result.rowcount == 1


def load_advisory(connection: Connection, advisory_id: str, viewer: Viewer | None = None) -> Advisory | None:
    """A published advisory is public; an unpublished one is seen by those who see its incident."""
    query = select(raid_advisories).where(raid_advisories.c.id == advisory_id)
    if viewer is not None:
        query = query.join(raid_incidents, raid_incidents.c.id == raid_advisories.c.incident_id).where(
            visible_clause(viewer)
        )
    row = connection.execute(query).first()
    return None if row is None else _advisory(row)


def load_csaf(connection: Connection, advisory_id: str) -> str | None:
    query = select(raid_advisories.c.csaf).where(
        raid_advisories.c.id == advisory_id, raid_advisories.c.status == AdvisoryStatus.PUBLISHED.value
    )
    return connection.execute(query).scalar()


def list_advisories(connection: Connection, viewer: Viewer | None, *, published_only: bool) -> list[Advisory]:
    query = select(raid_advisories).order_by(raid_advisories.c.created_at.desc())
    if published_only:
        query = query.where(raid_advisories.c.status == AdvisoryStatus.PUBLISHED.value)
    if viewer is not None:
        query = query.join(raid_incidents, raid_incidents.c.id == raid_advisories.c.incident_id).where(
            visible_clause(viewer)
        )
    return [_advisory(row) for row in connection.execute(query)]


# --- contacts and routing tables --------------------------------------------------------------


def save_contact(connection: Connection, name: str, address: str, now: datetime) -> None:
    table = raid_contacts
    if connection.execute(select(table.c.name).where(table.c.name == name)).first() is None:
        connection.execute(table.insert().values(name=name, address=address, updated_at=now))
    else:
        connection.execute(update(table).where(table.c.name == name).values(address=address, updated_at=now))


def contacts(connection: Connection, names: Sequence[str] | None = None) -> dict[str, str]:
    query = select(raid_contacts.c.name, raid_contacts.c.address).order_by(raid_contacts.c.name)
    if names is not None:
        query = query.where(raid_contacts.c.name.in_(list(names)))
    return {row.name: row.address for row in connection.execute(query)}


def adopt_table(connection: Connection, version: int, digest: str, text: str, by: str, now: datetime) -> int:
    number = int(connection.execute(select(func.coalesce(func.max(raid_routing_tables.c.number), 0))).scalar_one()) + 1
    connection.execute(
        raid_routing_tables.insert().values(
            number=number, version=version, digest=digest, adopted_at=now, adopted_by=by[:200], text=text
        )
    )
    return number


def current_table(connection: Connection) -> tuple[int, str] | None:
    """(adoption number, text) of the table in force, or None for the shipped default."""
    row = connection.execute(
        select(raid_routing_tables.c.number, raid_routing_tables.c.text)
        .order_by(raid_routing_tables.c.number.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.number, row.text)


def table_versions(connection: Connection) -> list[int]:
    return [row[0] for row in connection.execute(select(raid_routing_tables.c.version))]
