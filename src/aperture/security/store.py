"""Security tables: grants, single-use download tokens, downloads and alerts. Rows never leave this file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from aperture.access.domain import Action, AssetKind, AssetRef
from aperture.core.db import metadata
from aperture.security.domain import Alert, AlertKind, Grant, GrantStatus, Severity

SCHEMA_VERSION = 1

security_grants = Table(
    "security_grants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("asset_kind", String(20), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("action", String(20), nullable=False),
    Column("requester", String(200), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("hub", String(200), nullable=True),
    Column("duration_s", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("approver", String(200), nullable=True),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("officer", String(200), nullable=True),
    Column("officer_approved_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", String(200), nullable=True),
    Column("schema_version", Integer, nullable=False),
    # Who issued the key each party acted with (see access.domain.ApiKey.issued_by).
    Column("requester_issuers", Text, nullable=True),
    Column("approver_issuers", Text, nullable=True),
    Column("officer_issuers", Text, nullable=True),
)

security_tokens = Table(
    "security_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("grant_id", String(36), ForeignKey("security_grants.id"), nullable=False),
    Column("path", String(1000), nullable=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False),
)

security_downloads = Table(
    "security_downloads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("principal", String(200), nullable=False),
    Column("asset_kind", String(20), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("grant_id", String(36), nullable=True),
    Column("bytes", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("schema_version", Integer, nullable=False),
)
from sqlalchemy import Index  # noqa: E402

Index("ix_security_downloads_principal_at", security_downloads.c.principal, security_downloads.c.at)

security_alerts = Table(
    "security_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("raised_at", DateTime(timezone=True), nullable=False, index=True),
    Column("severity", String(10), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("asset_kind", String(20), nullable=True),
    Column("asset_id", String(64), nullable=True),
    Column("origin", String(200), nullable=True),
    Column("summary", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_by", String(200), nullable=True),
    Column("schema_version", Integer, nullable=False),
)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _grant_values(grant: Grant) -> dict[str, Any]:
    return {
        "status": grant.status.value,
        "approver": grant.approver,
        "approved_at": grant.approved_at,
        "officer": grant.officer,
        "officer_approved_at": grant.officer_approved_at,
        "expires_at": grant.expires_at,
        "revoked_at": grant.revoked_at,
        "revoked_by": grant.revoked_by,
        "approver_issuers": _names(grant.approver_issuers),
        "officer_issuers": _names(grant.officer_issuers),
    }


def _names(names: tuple[str, ...]) -> str:
    return ",".join(names)


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(name for name in (text or "").split(",") if name)


def insert_grant(connection: Connection, grant: Grant) -> None:
    connection.execute(
        security_grants.insert().values(
            id=grant.id,
            asset_kind=grant.asset.kind.value,
            asset_id=grant.asset.id,
            action=grant.action.value,
            requester=grant.requester,
            reason=grant.reason,
            hub=grant.hub,
            duration_s=int(grant.duration.total_seconds()),
            requested_at=grant.requested_at,
            schema_version=SCHEMA_VERSION,
            requester_issuers=_names(grant.requester_issuers),
            **_grant_values(grant),
        )
    )


def update_grant(connection: Connection, before: Grant, after: Grant) -> bool:
    """Compare-and-set on the status and approvers: two approvals racing cannot both land."""
    table = security_grants
    query = (
        update(table)
        .where(
            table.c.id == before.id,
            table.c.status == before.status.value,
            table.c.approver.is_(None) if before.approver is None else table.c.approver == before.approver,
            table.c.officer.is_(None) if before.officer is None else table.c.officer == before.officer,
        )
        .values(**_grant_values(after))
    )
    return connection.execute(query).rowcount == 1


def _grant(row: Any) -> Grant:
    requested = _aware(row["requested_at"])
    assert requested is not None
    return Grant(
        id=row["id"],
        asset=AssetRef(AssetKind(row["asset_kind"]), row["asset_id"]),
        action=Action(row["action"]),
        requester=row["requester"],
        reason=row["reason"],
        hub=row["hub"],
        duration=timedelta(seconds=int(row["duration_s"])),
        requested_at=requested,
        status=GrantStatus(row["status"]),
        approver=row["approver"],
        approved_at=_aware(row["approved_at"]),
        officer=row["officer"],
        officer_approved_at=_aware(row["officer_approved_at"]),
        expires_at=_aware(row["expires_at"]),
        revoked_at=_aware(row["revoked_at"]),
        revoked_by=row["revoked_by"],
        requester_issuers=_split(row["requester_issuers"]),
        approver_issuers=_split(row["approver_issuers"]),
        officer_issuers=_split(row["officer_issuers"]),
    )


def load_grant(connection: Connection, grant_id: str) -> Grant | None:
    row = connection.execute(select(security_grants).where(security_grants.c.id == grant_id)).mappings().first()
    return None if row is None else _grant(row)


def list_grants(connection: Connection, limit: int = 200) -> list[Grant]:
    query = select(security_grants).order_by(security_grants.c.requested_at.desc()).limit(limit)
    return [_grant(row) for row in connection.execute(query).mappings()]


def insert_token(
    connection: Connection, digest: bytes, grant_id: str, path: str | None, now: datetime, expires_at: datetime
) -> None:
    connection.execute(
        security_tokens.insert().values(
            token_hash=digest,
            grant_id=grant_id,
            path=path,
            issued_at=now,
            expires_at=expires_at,
            used_at=None,
            schema_version=SCHEMA_VERSION,
        )
    )


def load_token(connection: Connection, digest: bytes) -> tuple[str, str | None, datetime, datetime | None] | None:
    """(grant id, path, expires at, used at) of a token."""
    row = connection.execute(select(security_tokens).where(security_tokens.c.token_hash == digest)).mappings().first()
    if row is None:
        return None
    expires = _aware(row["expires_at"])
    assert expires is not None
    return row["grant_id"], row["path"], expires, _aware(row["used_at"])


def use_token(connection: Connection, digest: bytes, now: datetime) -> bool:
    """Mark a token used, once: True for the one request that wins, False for every replay."""
    table = security_tokens
    query = (
        update(table)
        .where(table.c.token_hash == digest, table.c.used_at.is_(None), table.c.expires_at > now)
        .values(used_at=now)
    )
    return connection.execute(query).rowcount == 1


def insert_download(
    connection: Connection, *, id: str, principal: str, asset: AssetRef, grant_id: str | None, size: int, now: datetime
) -> None:
    connection.execute(
        security_downloads.insert().values(
            id=id,
            principal=principal,
            asset_kind=asset.kind.value,
            asset_id=asset.id,
            grant_id=grant_id,
            bytes=size,
            at=now,
            schema_version=SCHEMA_VERSION,
        )
    )


def download_times(connection: Connection, principal: str, since: datetime) -> list[datetime]:
    table = security_downloads
    query = select(table.c.at).where(table.c.principal == principal, table.c.at >= since)
    return [moment for moment in (_aware(row) for row in connection.execute(query).scalars()) if moment is not None]


def insert_alert(connection: Connection, alert: Alert) -> None:
    connection.execute(
        security_alerts.insert().values(
            id=alert.id,
            raised_at=alert.raised_at,
            severity=alert.severity.value,
            kind=alert.kind.value,
            principal=alert.principal[:200],
            asset_kind=alert.asset.kind.value if alert.asset else None,
            asset_id=alert.asset.id if alert.asset else None,
            origin=alert.origin,
            summary=alert.summary,
            details=json.dumps(alert.details, sort_keys=True, default=str),
            acknowledged_at=None,
            acknowledged_by=None,
            schema_version=SCHEMA_VERSION,
        )
    )


def _alert(row: Any) -> Alert:
    raised = _aware(row["raised_at"])
    assert raised is not None
    asset = AssetRef(AssetKind(row["asset_kind"]), row["asset_id"]) if row["asset_kind"] else None
    return Alert(
        id=row["id"],
        raised_at=raised,
        severity=Severity(row["severity"]),
        kind=AlertKind(row["kind"]),
        principal=row["principal"],
        asset=asset,
        origin=row["origin"],
        summary=row["summary"],
        details=json.loads(row["details"]),
        acknowledged_at=_aware(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
    )


def list_alerts(connection: Connection, *, limit: int = 200, open_only: bool = False) -> list[Alert]:
    query = select(security_alerts).order_by(security_alerts.c.raised_at.desc()).limit(limit)
    if open_only:
        query = query.where(security_alerts.c.acknowledged_at.is_(None))
    return [_alert(row) for row in connection.execute(query).mappings()]


def count_open_alerts(connection: Connection) -> int:
    query = select(func.count()).select_from(security_alerts).where(security_alerts.c.acknowledged_at.is_(None))
    return int(connection.execute(query).scalar() or 0)


def acknowledge_alert(connection: Connection, alert_id: str, by: str, now: datetime) -> bool:
    table = security_alerts
    query = (
        update(table)
        .where(table.c.id == alert_id, table.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=by)
    )
    return connection.execute(query).rowcount == 1
