"""Vault tables: the blobs in the artifact store and who references them. Rows never leave this file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from aperture.core.db import metadata

SCHEMA_VERSION = 1

vault_blobs = Table(
    "vault_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

vault_blob_refs = Table(
    "vault_blob_refs",
    metadata,
    Column("sha256", String(64), ForeignKey("vault_blobs.sha256"), nullable=False, index=True),
    Column("owner", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
    PrimaryKeyConstraint("owner", "sha256"),
)


def add_references(connection: Connection, owner: str, blobs: Sequence[tuple[str, int]], now: datetime) -> None:
    """Record that `owner` uses these (digest, size) blobs; a blob row is created on first use."""
    unique = dict(blobs)
    if not unique:
        return
    rows = [
        {"sha256": digest, "size": size, "stored_at": now, "schema_version": SCHEMA_VERSION}
        for digest, size in unique.items()
    ]
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(postgresql.insert(vault_blobs).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        connection.execute(sqlite.insert(vault_blobs).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        query = select(vault_blobs.c.sha256).where(vault_blobs.c.sha256.in_(unique))
        existing = set(connection.execute(query).scalars())
        fresh = [row for row in rows if row["sha256"] not in existing]
        if fresh:
            connection.execute(vault_blobs.insert(), fresh)
    connection.execute(
        vault_blob_refs.insert(),
        [{"sha256": digest, "owner": owner, "schema_version": SCHEMA_VERSION} for digest in unique],
    )


def referenced(connection: Connection, digests: Iterable[str]) -> set[str]:
    wanted = list(set(digests))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(vault_blob_refs.c.sha256).where(vault_blob_refs.c.sha256.in_(chunk)).distinct()
        found.update(connection.execute(query).scalars())
    return found


def forget_unreferenced(connection: Connection, digests: Iterable[str]) -> None:
    wanted = list(set(digests))
    for start in range(0, len(wanted), 500):
        connection.execute(delete(vault_blobs).where(vault_blobs.c.sha256.in_(wanted[start : start + 500])))


def blob_count(connection: Connection) -> int:
    return len(connection.execute(select(vault_blobs.c.sha256)).all())
