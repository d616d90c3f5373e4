"""Access tables. Rows never leave this file."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, Integer, LargeBinary, String, Table, select, update

from aperture.access.domain import ApiKey, Role
from aperture.core.db import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(8), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("roles", String(500), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False, default=1),
)


def insert_key(connection: Connection, key: ApiKey, secret_hash: bytes) -> None:
    connection.execute(
        api_keys.insert().values(
            key_id=key.key_id,
            name=key.name,
            principal=key.principal,
            roles=",".join(role.value for role in key.roles),
            secret_hash=secret_hash,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            schema_version=1,
        )
    )


def load_key(connection: Connection, key_id: str) -> tuple[ApiKey, bytes] | None:
    row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
    if row is None:
        return None
    return _key(row), bytes(row["secret_hash"])


def list_keys(connection: Connection) -> list[ApiKey]:
    rows = connection.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()
    return [_key(row) for row in rows]


def count_keys(connection: Connection) -> int:
    return len(connection.execute(select(api_keys.c.key_id)).all())


def mark_revoked(connection: Connection, key_id: str, when: datetime) -> None:
    connection.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=when))


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; every stored time is UTC.
    from datetime import UTC

    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _key(row: object) -> ApiKey:
    data = dict(row)  # type: ignore[call-overload]
    created = _aware(data["created_at"])
    assert created is not None
    return ApiKey(
        key_id=data["key_id"],
        name=data["name"],
        principal=data["principal"],
        roles=tuple(Role(value) for value in data["roles"].split(",") if value),
        created_at=created,
        expires_at=_aware(data["expires_at"]),
        revoked_at=_aware(data["revoked_at"]),
    )
