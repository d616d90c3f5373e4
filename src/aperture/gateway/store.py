"""Gateway tables: keys, backends, grants, limits, prices, safety policies, daily usage, the
write-ahead log's marks, blocks and alerts. Rows never leave this file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from aperture.core.db import metadata
from aperture.gateway.domain import (
    Alert,
    Backend,
    BackendKind,
    Block,
    DailyUsage,
    GatewayKey,
    Limits,
    Price,
    SafetyPolicy,
    ScopeKind,
)

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("key_id", String(8), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("organisation", String(63), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

gateway_backends = Table(
    "gateway_backends",
    metadata,
    Column("model", String(300), primary_key=True),
    Column("version_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("url", String(500), nullable=True),
    Column("remote_model", String(300), nullable=True),
    Column("timeout_s", Float, nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
    Column("bound_by", String(200), nullable=False),
    Column("api_key", String(500), nullable=True),
)

gateway_grants = Table(
    "gateway_grants",
    metadata,
    Column("organisation", String(63), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("granted_by", String(200), nullable=False),
)

gateway_limits = Table(
    "gateway_limits",
    metadata,
    Column("scope_kind", String(16), primary_key=True),
    Column("scope", String(63), primary_key=True),
    Column("requests_per_minute", BigInteger, nullable=True),
    Column("tokens_per_minute", BigInteger, nullable=True),
    Column("monthly_tokens", BigInteger, nullable=True),
    Column("max_tokens", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

gateway_prices = Table(
    "gateway_prices",
    metadata,
    Column("model", String(300), primary_key=True),
    Column("input_eur_per_mtok", Float, nullable=False),
    Column("output_eur_per_mtok", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

gateway_policies = Table(
    "gateway_policies",
    metadata,
    Column("model", String(300), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

gateway_usage = Table(
    "gateway_usage",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("organisation", String(63), primary_key=True),
    Column("key_id", String(8), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("blocked", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_eur", Float, nullable=False),
)

gateway_log_marks = Table(
    "gateway_log_marks",
    metadata,
    Column("log", String(100), primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

gateway_blocks = Table(
    "gateway_blocks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(8), nullable=False, index=True),
    Column("organisation", String(63), nullable=False),
    Column("model", String(300), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("rule", String(600), nullable=False),
    Column("excerpt", Text, nullable=False),
)

gateway_alerts = Table(
    "gateway_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("key_id", String(8), nullable=False, index=True),
    Column("organisation", String(63), nullable=False),
    Column("summary", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("picked_up_at", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False),
)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _must(moment: datetime | None) -> datetime:
    value = _utc(moment)
    assert value is not None
    return value


# --- keys -----------------------------------------------------------------------------------


def insert_key(connection: Connection, key: GatewayKey, secret_hash: bytes) -> None:
    connection.execute(
        gateway_keys.insert().values(
            key_id=key.key_id,
            name=key.name,
            organisation=key.organisation,
            secret_hash=secret_hash,
            created_at=key.created_at,
            created_by=key.created_by,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )
    )


def _key(row: Any) -> GatewayKey:
    return GatewayKey(
        key_id=row.key_id,
        name=row.name,
        organisation=row.organisation,
        created_at=_must(row.created_at),
        created_by=row.created_by,
        expires_at=_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
    )


def load_key(connection: Connection, key_id: str) -> tuple[GatewayKey, bytes] | None:
    row = connection.execute(select(gateway_keys).where(gateway_keys.c.key_id == key_id)).first()
    return None if row is None else (_key(row), bytes(row.secret_hash))


def list_keys(connection: Connection, organisation: str | None = None) -> list[GatewayKey]:
    query = select(gateway_keys).order_by(gateway_keys.c.created_at)
    if organisation is not None:
        query = query.where(gateway_keys.c.organisation == organisation)
    return [_key(row) for row in connection.execute(query)]


def revoke_key(connection: Connection, key_id: str, moment: datetime) -> None:
    connection.execute(gateway_keys.update().where(gateway_keys.c.key_id == key_id).values(revoked_at=moment))


# --- backends, grants, limits, prices, policies -----------------------------------------------


def put_backend(connection: Connection, backend: Backend) -> None:
    connection.execute(gateway_backends.delete().where(gateway_backends.c.model == backend.model))
    connection.execute(
        gateway_backends.insert().values(
            model=backend.model,
            version_id=backend.version_id,
            kind=backend.kind.value,
            url=backend.url,
            remote_model=backend.remote_model,
            timeout_s=backend.timeout_s,
            bound_at=backend.bound_at,
            bound_by=backend.bound_by,
            api_key=backend.api_key,
        )
    )


def delete_backend(connection: Connection, model: str) -> bool:
    return bool(connection.execute(gateway_backends.delete().where(gateway_backends.c.model == model)).rowcount)


def list_backends(connection: Connection) -> list[Backend]:
    return [
        Backend(
            model=row.model,
            version_id=row.version_id,
            kind=BackendKind(row.kind),
            url=row.url,
            remote_model=row.remote_model,
            timeout_s=float(row.timeout_s),
            bound_at=_must(row.bound_at),
            bound_by=row.bound_by,
            api_key=row.api_key,
        )
        for row in connection.execute(select(gateway_backends).order_by(gateway_backends.c.model))
    ]


def put_grant(connection: Connection, organisation: str, model: str, moment: datetime, by: str) -> None:
    connection.execute(
        gateway_grants.delete().where(
            and_(gateway_grants.c.organisation == organisation, gateway_grants.c.model == model)
        )
    )
    connection.execute(
        gateway_grants.insert().values(organisation=organisation, model=model, granted_at=moment, granted_by=by)
    )


def delete_grant(connection: Connection, organisation: str, model: str) -> bool:
    result = connection.execute(
        gateway_grants.delete().where(
            and_(gateway_grants.c.organisation == organisation, gateway_grants.c.model == model)
        )
    )
    return bool(result.rowcount)


def list_grants(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.execute(select(gateway_grants.c.organisation, gateway_grants.c.model).order_by("model"))
    return [(row.organisation, row.model) for row in rows]


def put_limits(connection: Connection, kind: ScopeKind, scope: str, limits: Limits, moment: datetime) -> None:
    where = and_(gateway_limits.c.scope_kind == kind.value, gateway_limits.c.scope == scope)
    connection.execute(gateway_limits.delete().where(where))
    connection.execute(
        gateway_limits.insert().values(scope_kind=kind.value, scope=scope, updated_at=moment, **limits.as_dict())
    )


def list_limits(connection: Connection) -> dict[tuple[ScopeKind, str], Limits]:
    return {
        (ScopeKind(row.scope_kind), row.scope): Limits(
            row.requests_per_minute, row.tokens_per_minute, row.monthly_tokens, row.max_tokens
        )
        for row in connection.execute(select(gateway_limits))
    }


def put_price(connection: Connection, price: Price, moment: datetime) -> None:
    connection.execute(gateway_prices.delete().where(gateway_prices.c.model == price.model))
    connection.execute(
        gateway_prices.insert().values(
            model=price.model,
            input_eur_per_mtok=price.input_eur_per_mtok,
            output_eur_per_mtok=price.output_eur_per_mtok,
            updated_at=moment,
        )
    )


def list_prices(connection: Connection) -> dict[str, Price]:
    return {
        row.model: Price(row.model, float(row.input_eur_per_mtok), float(row.output_eur_per_mtok))
        for row in connection.execute(select(gateway_prices))
    }


def put_policy(connection: Connection, policy: SafetyPolicy, moment: datetime) -> None:
    connection.execute(gateway_policies.delete().where(gateway_policies.c.model == policy.model))
    connection.execute(
        gateway_policies.insert().values(
            model=policy.model, policy=json.dumps(policy.as_dict(), sort_keys=True), updated_at=moment
        )
    )


def list_policies(connection: Connection) -> dict[str, SafetyPolicy]:
    return {
        row.model: SafetyPolicy.from_dict(row.model, json.loads(row.policy))
        for row in connection.execute(select(gateway_policies))
    }


# --- usage and the write-ahead log's marks --------------------------------------------------


def add_usage(connection: Connection, rows: Sequence[DailyUsage]) -> None:
    """Add to the daily totals: one upsert per (day, organisation, key, model)."""
    if not rows:
        return
    dialect = connection.dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for row in rows:
        statement = insert(gateway_usage).values(
            **{k: v for k, v in row.as_dict().items()} | {"cost_eur": row.cost_eur}
        )
        excluded = statement.excluded
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["day", "organisation", "key_id", "model"],
                set_={
                    "requests": gateway_usage.c.requests + excluded.requests,
                    "blocked": gateway_usage.c.blocked + excluded.blocked,
                    "prompt_tokens": gateway_usage.c.prompt_tokens + excluded.prompt_tokens,
                    "completion_tokens": gateway_usage.c.completion_tokens + excluded.completion_tokens,
                    "cost_eur": gateway_usage.c.cost_eur + excluded.cost_eur,
                },
            )
        )


def usage(
    connection: Connection, *, organisation: str | None = None, since: str | None = None, until: str | None = None
) -> list[DailyUsage]:
    query = select(gateway_usage).order_by(
        gateway_usage.c.day, gateway_usage.c.organisation, gateway_usage.c.key_id, gateway_usage.c.model
    )
    if organisation is not None:
        query = query.where(gateway_usage.c.organisation == organisation)
    if since is not None:
        query = query.where(gateway_usage.c.day >= since)
    if until is not None:
        query = query.where(gateway_usage.c.day <= until)
    return [
        DailyUsage(
            row.day,
            row.organisation,
            row.key_id,
            row.model,
            int(row.requests),
            int(row.blocked),
            int(row.prompt_tokens),
            int(row.completion_tokens),
            float(row.cost_eur),
        )
        for row in connection.execute(query)
    ]


def month_tokens(connection: Connection, kind: ScopeKind, scope: str, month: str) -> int:
    column = gateway_usage.c.key_id if kind is ScopeKind.KEY else gateway_usage.c.organisation
    total = connection.execute(
        select(func.coalesce(func.sum(gateway_usage.c.prompt_tokens + gateway_usage.c.completion_tokens), 0)).where(
            and_(column == scope, gateway_usage.c.day.like(f"{month}-%"))
        )
    ).scalar_one()
    return int(total)


def log_mark(connection: Connection, log: str) -> int:
    value = connection.execute(select(gateway_log_marks.c.offset).where(gateway_log_marks.c.log == log)).scalar()
    return int(value or 0)


def put_log_mark(connection: Connection, log: str, offset: int, moment: datetime) -> None:
    updated = connection.execute(
        gateway_log_marks.update().where(gateway_log_marks.c.log == log).values(offset=offset, updated_at=moment)
    )
    if updated.rowcount == 0:
        connection.execute(gateway_log_marks.insert().values(log=log, offset=offset, updated_at=moment))


def delete_log_mark(connection: Connection, log: str) -> None:
    connection.execute(gateway_log_marks.delete().where(gateway_log_marks.c.log == log))


# --- blocks and alerts ----------------------------------------------------------------------


def insert_block(connection: Connection, block: Block) -> None:
    connection.execute(
        gateway_blocks.insert().values(
            id=block.id,
            at=block.at,
            key_id=block.key_id,
            organisation=block.organisation,
            model=block.model,
            stage=block.stage.value,
            rule=block.rule[:600],
            excerpt=block.excerpt,
        )
    )


def recent_blocks(connection: Connection, key_id: str, since: datetime) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(gateway_blocks)
        .where(and_(gateway_blocks.c.key_id == key_id, gateway_blocks.c.at >= since))
        .order_by(gateway_blocks.c.at)
    )
    return [
        {
            "id": row.id,
            "at": _must(row.at).isoformat(),
            "model": row.model,
            "stage": row.stage,
            "rule": row.rule,
            "excerpt": row.excerpt,
        }
        for row in rows
    ]


def last_alert_at(connection: Connection, key_id: str, kind: str) -> datetime | None:
    value = connection.execute(
        select(func.max(gateway_alerts.c.raised_at)).where(
            and_(gateway_alerts.c.key_id == key_id, gateway_alerts.c.kind == kind)
        )
    ).scalar()
    return _utc(value)


def insert_alert(connection: Connection, alert: Alert) -> None:
    connection.execute(
        gateway_alerts.insert().values(
            id=alert.id,
            raised_at=alert.raised_at,
            kind=alert.kind,
            key_id=alert.key_id,
            organisation=alert.organisation,
            summary=alert.summary,
            evidence=json.dumps(list(alert.evidence), sort_keys=True),
            picked_up_at=alert.picked_up_at,
            schema_version=1,
        )
    )


def list_alerts(connection: Connection, *, open_only: bool = False) -> list[Alert]:
    query = select(gateway_alerts).order_by(gateway_alerts.c.raised_at.desc())
    if open_only:
        query = query.where(gateway_alerts.c.picked_up_at.is_(None))
    return [
        Alert(
            id=row.id,
            raised_at=_must(row.raised_at),
            kind=row.kind,
            key_id=row.key_id,
            organisation=row.organisation,
            summary=row.summary,
            evidence=tuple(json.loads(row.evidence)),
            picked_up_at=_utc(row.picked_up_at),
        )
        for row in connection.execute(query)
    ]


def mark_alert_picked_up(connection: Connection, alert_id: str, moment: datetime) -> bool:
    result = connection.execute(
        gateway_alerts.update().where(gateway_alerts.c.id == alert_id).values(picked_up_at=moment)
    )
    return bool(result.rowcount)
