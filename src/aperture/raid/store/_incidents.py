"""Incidents, their audience, bindings, timeline and attachments; the visibility rule as SQL."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from aperture.raid.domain import (
    Assessment,
    Binding,
    BindingKind,
    Consent,
    Detection,
    Determination,
    Facts,
    Incident,
    Reporter,
    Source,
    SourceKind,
    Status,
    TimelineEvent,
)
from aperture.raid.serious import CausalLink, Harm, Regime
from aperture.raid.store._tables import (
    raid_attachments,
    raid_audience,
    raid_bindings,
    raid_incidents,
    raid_timeline,
    raid_versions,
)
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import Audience, Tlp, Viewer
from aperture.risk.domain import RiskDomain


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _assessment_dict(assessment: Assessment | None) -> dict[str, Any] | None:
    return None if assessment is None else assessment.as_dict()


def _assessment(data: dict[str, Any] | None) -> Assessment | None:
    if data is None:
        return None
    return Assessment(
        severity=Severity(data["severity"]),
        risk_domain=RiskDomain(data["risk_domain"]) if data["risk_domain"] else None,
        sector=Sector(data["sector"]) if data["sector"] else None,
        member_state=data["member_state"],
        dual_use=data["dual_use"],
        avid=tuple(data["avid"]),
        determination=Determination(data["determination"]),
        harms=frozenset(Harm(h) for h in data["harms"]),
        causal_link=CausalLink(data["causal_link"]),
        regimes=frozenset(Regime(r) for r in data["regimes"]),
        provider_is_institution=data["provider_is_institution"],
        by=data["by"],
        at=_when(data["at"]),
    )


def _body(incident: Incident) -> str:
    return json.dumps(
        {
            "consent": incident.reporter.consent.value,
            "detection": incident.detection.value,
            "occurred_from": _iso(incident.occurred_from),
            "occurred_until": _iso(incident.occurred_until),
            "reporter_aware_at": _iso(incident.reporter_aware_at),
            "assessment": _assessment_dict(incident.assessment),
            "facts": dict(incident.facts.values),
            "resolved_at": _iso(incident.resolved_at),
            "closed_at": _iso(incident.closed_at),
            "reason": incident.reason,
            "evidence": incident.evidence,
        },
        sort_keys=True,
    )


def _columns(incident: Incident) -> dict[str, Any]:
    assessment = incident.assessment
    return {
        "status": incident.status.value,
        "tlp": incident.tlp.value,
        "severity": incident.severity.value,
        "title": incident.title,
        "summary": incident.summary,
        "updated_at": incident.updated_at,
        "aware_at": incident.aware_at,
        "assignee": incident.assignee,
        "merged_into": incident.merged_into,
        "risk_domain": assessment.risk_domain.value if assessment and assessment.risk_domain else None,
        "sector": assessment.sector.value if assessment and assessment.sector else None,
        "member_state": assessment.member_state if assessment else None,
        "dual_use": bool(assessment and assessment.dual_use),
        "body": _body(incident),
    }


def incident_row(incident: Incident, receipt_hash: bytes | None = None) -> dict[str, Any]:
    return {
        "id": incident.id,
        "source_kind": incident.source.kind.value,
        "source_id": incident.source.id,
        "created_at": incident.created_at,
        "reporter_principal": incident.reporter.principal,
        "reporter_organisation": incident.reporter.organisation,
        "reporter_contact": incident.reporter.contact,
        "receipt_hash": receipt_hash,
        "revision": incident.revision,
        **_columns(incident),
    }


def _incident(row: Any, audience: Audience, bindings: tuple[Binding, ...]) -> Incident:
    body = json.loads(row["body"])
    return Incident(
        id=row["id"],
        source=Source(SourceKind(row["source_kind"]), row["source_id"]),
        title=row["title"],
        summary=row["summary"],
        status=Status(row["status"]),
        tlp=Tlp(row["tlp"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        aware_at=row["aware_at"],
        reporter=Reporter(
            row["reporter_principal"], row["reporter_organisation"], row["reporter_contact"], Consent(body["consent"])
        ),
        audience=audience,
        bindings=bindings,
        detection=Detection(body["detection"]),
        occurred_from=_when(body["occurred_from"]),
        occurred_until=_when(body["occurred_until"]),
        reporter_aware_at=_when(body["reporter_aware_at"]),
        assessment=_assessment(body["assessment"]),
        facts=Facts(tuple(sorted(body["facts"].items()))),
        assignee=row["assignee"],
        merged_into=row["merged_into"],
        resolved_at=_when(body["resolved_at"]),
        closed_at=_when(body["closed_at"]),
        reason=body["reason"],
        evidence=body["evidence"],
        revision=row["revision"],
    )


def _dialect_insert(connection: Connection, table: Any) -> Any:
    return (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(table)


def insert_incidents(connection: Connection, rows: Sequence[tuple[Incident, bytes | None]]) -> list[str]:
    """Insert many; an item whose (source kind, source id) is already taken is skipped (ON CONFLICT
    DO NOTHING, both backends). Returns the ids inserted; audience, bindings and versions follow
    for those only."""
    if not rows:
        return []
    statement = (
        _dialect_insert(connection, raid_incidents)
        .on_conflict_do_nothing(index_elements=["source_kind", "source_id"])
        .returning(raid_incidents.c.id)
    )
    inserted = {row[0] for row in connection.execute(statement, [incident_row(i, h) for i, h in rows])}
    taken = [incident for incident, _ in rows if incident.id in inserted]
    _insert_children(connection, taken)
    return [incident.id for incident in taken]


def _insert_children(connection: Connection, incidents: Sequence[Incident]) -> None:
    audience = [
        {"incident_id": i.id, "kind": kind, "name": name}
        for i in incidents
        for kind, names in (("principal", i.audience.principals), ("organisation", i.audience.organisations))
        for name in sorted(names)
    ]
    bindings = [{"incident_id": i.id, "kind": b.kind.value, "ref": b.ref} for i in incidents for b in i.bindings]
    versions = sorted({b.ref for i in incidents for b in i.bindings if b.kind is BindingKind.MODEL_VERSION})
    if audience:
        connection.execute(raid_audience.insert(), audience)
    if bindings:
        connection.execute(raid_bindings.insert(), bindings)
    if versions:
        connection.execute(
            _dialect_insert(connection, raid_versions).on_conflict_do_nothing(),
            [{"version_id": v} for v in versions],
        )


def update_incident(connection: Connection, before: Incident, after: Incident) -> Incident | None:
    """Optimistic: only when nobody changed it meanwhile. Returns the saved incident (revision bumped)."""
    saved = replace(after, revision=before.revision + 1)
    result = connection.execute(
        update(raid_incidents)
        .where(raid_incidents.c.id == before.id, raid_incidents.c.revision == before.revision)
        .values(revision=saved.revision, **_columns(saved))
    )
    if result.rowcount != 1:
        return None
    if after.audience != before.audience:
        connection.execute(raid_audience.delete().where(raid_audience.c.incident_id == before.id))
    if after.bindings != before.bindings:
        connection.execute(raid_bindings.delete().where(raid_bindings.c.incident_id == before.id))
    if after.audience != before.audience or after.bindings != before.bindings:
        changed = replace(
            saved,
            audience=after.audience if after.audience != before.audience else Audience(),
            bindings=after.bindings if after.bindings != before.bindings else (),
        )
        _insert_children(connection, [changed])
    return saved


def _load_children(connection: Connection, ids: Sequence[str]) -> tuple[dict[str, Audience], dict[str, list[Binding]]]:
    audiences: dict[str, tuple[set[str], set[str]]] = {i: (set(), set()) for i in ids}
    bindings: dict[str, list[Binding]] = {i: [] for i in ids}
    if not ids:
        return {}, {}
    for row in connection.execute(select(raid_audience).where(raid_audience.c.incident_id.in_(ids))):
        audiences[row.incident_id][0 if row.kind == "principal" else 1].add(row.name)
    query = (
        select(raid_bindings)
        .where(raid_bindings.c.incident_id.in_(ids))
        .order_by(raid_bindings.c.kind, raid_bindings.c.ref)
    )
    for row in connection.execute(query):
        bindings[row.incident_id].append(Binding(BindingKind(row.kind), row.ref))
    return (
        {i: Audience(frozenset(p), frozenset(o)) for i, (p, o) in audiences.items()},
        bindings,
    )


def _hydrate(connection: Connection, rows: Sequence[Any]) -> list[Incident]:
    ids = [row["id"] for row in rows]
    audiences, bindings = _load_children(connection, ids)
    return [_incident(row, audiences[row["id"]], tuple(bindings[row["id"]])) for row in rows]


def load_incident(connection: Connection, incident_id: str, viewer: Viewer | None = None) -> Incident | None:
    """One incident; with a viewer, None unless the viewer may see it (the same rule as lists)."""
    query = select(raid_incidents).where(raid_incidents.c.id == incident_id)
    if viewer is not None:
        query = query.where(visible_clause(viewer))
    row = connection.execute(query).mappings().first()
    return None if row is None else _hydrate(connection, [row])[0]


def load_by_receipt(connection: Connection, receipt_hash: bytes) -> Incident | None:
    row = (
        connection.execute(select(raid_incidents).where(raid_incidents.c.receipt_hash == receipt_hash))
        .mappings()
        .first()
    )
    return None if row is None else _hydrate(connection, [row])[0]


def load_by_source(connection: Connection, kind: SourceKind, source_id: str) -> Incident | None:
    query = select(raid_incidents).where(
        raid_incidents.c.source_kind == kind.value, raid_incidents.c.source_id == source_id
    )
    row = connection.execute(query).mappings().first()
    return None if row is None else _hydrate(connection, [row])[0]


def bound_versions(connection: Connection) -> list[str]:
    return [row[0] for row in connection.execute(select(raid_versions.c.version_id))]


# --- visibility -------------------------------------------------------------------------------


def visible_clause(viewer: Viewer) -> ColumnElement[bool]:
    """`tlp.visible` as a SQL condition on raid_incidents (a property test keeps the two equal)."""
    incident = raid_incidents.c
    clauses: list[ColumnElement[bool]] = [incident.tlp == Tlp.CLEAR.value]
    if viewer.principal is not None:
        clauses.append(_in_audience(incident.id, "principal", viewer.principal))
    if viewer.desk:
        clauses.append(incident.tlp.in_([Tlp.GREEN.value, Tlp.AMBER.value, Tlp.AMBER_STRICT.value]))
    else:
        if viewer.organisation is not None:
            clauses.append(
                and_(
                    incident.tlp.in_([Tlp.GREEN.value, Tlp.AMBER.value, Tlp.AMBER_STRICT.value]),
                    _in_audience(incident.id, "organisation", viewer.organisation),
                )
            )
        if viewer.client_of is not None:
            clauses.append(
                and_(
                    incident.tlp.in_([Tlp.GREEN.value, Tlp.AMBER.value]),
                    _in_audience(incident.id, "organisation", viewer.client_of),
                )
            )
        if viewer.community:
            clauses.append(incident.tlp == Tlp.GREEN.value)
    shown: ColumnElement[bool] = or_(*clauses)
    if viewer.hidden_versions:
        hidden = exists().where(
            raid_bindings.c.incident_id == incident.id,
            raid_bindings.c.kind == BindingKind.MODEL_VERSION.value,
            raid_bindings.c.ref.in_(sorted(viewer.hidden_versions)),
        )
        shown = and_(shown, ~hidden)
    return shown


def _in_audience(incident_id: Any, kind: str, name: str) -> ColumnElement[bool]:
    return exists().where(
        raid_audience.c.incident_id == incident_id, raid_audience.c.kind == kind, raid_audience.c.name == name
    )


@dataclass(frozen=True, slots=True)
class Filter:
    statuses: tuple[str, ...] = ()
    tlps: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    search: str | None = None
    assignee: str | None = None
    source_kinds: tuple[str, ...] = ()
    version: str | None = None  # items bound to this model version


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _filtered(viewer: Viewer, where: Filter) -> list[ColumnElement[bool]]:
    incident = raid_incidents.c
    conditions: list[ColumnElement[bool]] = [visible_clause(viewer)]
    if where.statuses:
        conditions.append(incident.status.in_(where.statuses))
    if where.tlps:
        conditions.append(incident.tlp.in_(where.tlps))
    if where.severities:
        conditions.append(incident.severity.in_(where.severities))
    if where.source_kinds:
        conditions.append(incident.source_kind.in_(where.source_kinds))
    if where.assignee is not None:
        conditions.append(incident.assignee == where.assignee)
    if where.search:
        pattern = _like(where.search)
        conditions.append(or_(incident.title.ilike(pattern, escape="\\"), incident.summary.ilike(pattern, escape="\\")))
    if where.version is not None:
        conditions.append(
            exists().where(
                raid_bindings.c.incident_id == incident.id,
                raid_bindings.c.kind == BindingKind.MODEL_VERSION.value,
                raid_bindings.c.ref == where.version,
            )
        )
    return conditions


def list_incidents(
    connection: Connection, viewer: Viewer, where: Filter, *, limit: int, offset: int = 0
) -> list[Incident]:
    query = (
        select(raid_incidents)
        .where(*_filtered(viewer, where))
        .order_by(raid_incidents.c.created_at.desc(), raid_incidents.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return _hydrate(connection, list(connection.execute(query).mappings()))


def count_incidents(connection: Connection, viewer: Viewer, where: Filter) -> int:
    query = select(func.count()).select_from(raid_incidents).where(*_filtered(viewer, where))
    return int(connection.execute(query).scalar_one())


def counts_by_status(connection: Connection, viewer: Viewer) -> dict[str, int]:
    query = (
        select(raid_incidents.c.status, func.count()).where(visible_clause(viewer)).group_by(raid_incidents.c.status)
    )
    return {row[0]: int(row[1]) for row in connection.execute(query)}


def visible_ids(connection: Connection, viewer: Viewer, ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    query = select(raid_incidents.c.id).where(raid_incidents.c.id.in_(wanted), visible_clause(viewer))
    return {row[0] for row in connection.execute(query)}


# --- timeline and attachments -----------------------------------------------------------------


def add_events(connection: Connection, events: Sequence[TimelineEvent]) -> None:
    if events:
        connection.execute(
            raid_timeline.insert(),
            [
                {
                    "id": e.id,
                    "incident_id": e.incident_id,
                    "at": e.at,
                    "actor": e.actor[:200],
                    "kind": e.kind,
                    "details": json.dumps(e.details, sort_keys=True),
                }
                for e in events
            ],
        )


def timeline(connection: Connection, incident_id: str, *, limit: int = 1000) -> list[TimelineEvent]:
    query = (
        select(raid_timeline)
        .where(raid_timeline.c.incident_id == incident_id)
        .order_by(raid_timeline.c.at, raid_timeline.c.id)
        .limit(limit)
    )
    return [
        TimelineEvent(row.id, row.incident_id, row.at, row.actor, row.kind, json.loads(row.details))
        for row in connection.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class AttachmentRecord:
    sha256: str
    name: str
    media_type: str
    size: int
    added_at: datetime
    added_by: str


def add_attachments(connection: Connection, incident_id: str, records: Sequence[AttachmentRecord]) -> None:
    if records:
        connection.execute(
            _dialect_insert(connection, raid_attachments).on_conflict_do_nothing(),
            [
                {
                    "incident_id": incident_id,
                    "sha256": r.sha256,
                    "name": r.name,
                    "media_type": r.media_type,
                    "size": r.size,
                    "added_at": r.added_at,
                    "added_by": r.added_by,
                }
                for r in records
            ],
        )


def attachments(connection: Connection, incident_id: str) -> list[AttachmentRecord]:
    query = (
        select(raid_attachments)
        .where(raid_attachments.c.incident_id == incident_id)
        .order_by(raid_attachments.c.added_at)
    )
    return [
        AttachmentRecord(row.sha256, row.name, row.media_type, row.size, row.added_at, row.added_by)
        for row in connection.execute(query)
    ]
