"""Vault tables: the blobs in the artifact store and who references them. Rows never leave this file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
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


def all_referenced(connection: Connection) -> set[str]:
    """Every digest some owner references (all owners: versions, evidence, applications)."""
    return {str(d) for d in connection.execute(select(vault_blob_refs.c.sha256).distinct()).scalars()}


def forget_unreferenced(connection: Connection, digests: Iterable[str]) -> None:
    wanted = list(set(digests))
    for start in range(0, len(wanted), 500):
        connection.execute(delete(vault_blobs).where(vault_blobs.c.sha256.in_(wanted[start : start + 500])))


def blob_count(connection: Connection) -> int:
    return len(connection.execute(select(vault_blobs.c.sha256)).all())


# --- the upper tier's key custody and sealed artifacts ----------------------------------------

vault_keyrings = Table(
    "vault_keyrings",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("tier", String(20), nullable=False, unique=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("shares", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

vault_key_shares = Table(
    "vault_key_shares",
    metadata,
    Column("keyring_id", String(16), ForeignKey("vault_keyrings.id"), nullable=False),
    Column("share_index", Integer, nullable=False, autoincrement=False),
    Column("custodian", String(63), nullable=False),
    Column("share_hash", LargeBinary(32), nullable=False),
    Column("schema_version", Integer, nullable=False),
    PrimaryKeyConstraint("keyring_id", "share_index"),
)

vault_sealed_blobs = Table(
    "vault_sealed_blobs",
    metadata,
    Column("artifact_id", String(36), primary_key=True),
    Column("owner", String(200), nullable=False, index=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("keyring_id", String(16), ForeignKey("vault_keyrings.id"), nullable=False),
    Column("sealed_at", DateTime(timezone=True), nullable=False),
    Column("schema_version", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Keyring:
    id: str
    tier: str
    public_key: bytes
    threshold: int
    shares: int
    created_at: datetime
    custodians: dict[int, tuple[str, bytes]]  # share index -> (custodian, share hash)


def insert_keyring(connection: Connection, keyring: Keyring) -> None:
    connection.execute(
        vault_keyrings.insert().values(
            id=keyring.id,
            tier=keyring.tier,
            public_key=keyring.public_key,
            threshold=keyring.threshold,
            shares=keyring.shares,
            created_at=keyring.created_at,
            created_by="",
            schema_version=SCHEMA_VERSION,
        )
    )
    connection.execute(
        vault_key_shares.insert(),
        [
            {
                "keyring_id": keyring.id,
                "share_index": index,
                "custodian": custodian,
                "share_hash": digest,
                "schema_version": SCHEMA_VERSION,
            }
            for index, (custodian, digest) in keyring.custodians.items()
        ],
    )


def load_keyring(connection: Connection, tier: str) -> Keyring | None:
    row = connection.execute(select(vault_keyrings).where(vault_keyrings.c.tier == tier)).mappings().first()
    if row is None:
        return None
    shares = connection.execute(select(vault_key_shares).where(vault_key_shares.c.keyring_id == row["id"])).mappings()
    created = row["created_at"]
    return Keyring(
        id=row["id"],
        tier=row["tier"],
        public_key=bytes(row["public_key"]),
        threshold=int(row["threshold"]),
        shares=int(row["shares"]),
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        custodians={int(s["share_index"]): (s["custodian"], bytes(s["share_hash"])) for s in shares},
    )


@dataclass(frozen=True, slots=True)
class SealedBlobRow:
    artifact_id: str
    owner: str
    sha256: str
    size: int
    keyring_id: str


def add_sealed(connection: Connection, rows: Sequence[SealedBlobRow], now: datetime) -> None:
    if not rows:
        return
    connection.execute(
        vault_sealed_blobs.insert(),
        [
            {
                "artifact_id": row.artifact_id,
                "owner": row.owner,
                "sha256": row.sha256,
                "size": row.size,
                "keyring_id": row.keyring_id,
                "sealed_at": now,
                "schema_version": SCHEMA_VERSION,
            }
            for row in rows
        ],
    )


def sealed_for(connection: Connection, owner: str) -> dict[str, SealedBlobRow]:
    """sha256 -> the sealed copy owned by `owner`."""
    query = select(vault_sealed_blobs).where(vault_sealed_blobs.c.owner == owner)
    return {
        row["sha256"]: SealedBlobRow(
            row["artifact_id"], row["owner"], row["sha256"], int(row["size"]), row["keyring_id"]
        )
        for row in connection.execute(query).mappings()
    }


def all_sealed_ids(connection: Connection) -> set[str]:
    return {str(a) for a in connection.execute(select(vault_sealed_blobs.c.artifact_id)).scalars()}


def sealed_owners(connection: Connection) -> dict[str, set[str]]:
    """owner -> the plaintext digests it holds sealed copies of."""
    owners: dict[str, set[str]] = {}
    for owner, digest in connection.execute(select(vault_sealed_blobs.c.owner, vault_sealed_blobs.c.sha256)).all():
        owners.setdefault(str(owner), set()).add(str(digest))
    return owners


def sealed_ids(connection: Connection, artifact_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(artifact_ids), 500):
        chunk = list(artifact_ids[start : start + 500])
        query = select(vault_sealed_blobs.c.artifact_id).where(vault_sealed_blobs.c.artifact_id.in_(chunk))
        found.update(connection.execute(query).scalars())
    return found
