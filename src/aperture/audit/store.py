"""Audit tables and the reads and writes the log needs. Rows never leave this file.

Appends and tile reads go through the raw DBAPI cursor of the caller's SQLAlchemy connection:
they run once per event or several times per proof, and SQLAlchemy's statement compilation and
result wrapping would cost more than the database work itself.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from json.encoder import encode_basestring
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from aperture.audit.domain import (
    EVENT_SCHEMA_VERSION,
    STRIDE,
    TREE_HEAD_SCHEMA_VERSION,
    EventRecord,
    LeafRecord,
    SignedTreeHead,
    fold_subtrees,
    parse_private,
    perfect_root,
    perfect_subtrees,
)
from aperture.core.db import metadata
from aperture.core.errors import IntegrityFailure

# On SQLite an INTEGER primary key is the rowid itself: one B-tree fewer to write per event,
# and leaf-order scans read the table in storage order.
LEAF_INDEX_TYPE = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("leaf_index", LEAF_INDEX_TYPE, primary_key=True, autoincrement=False),
    # Not indexed: nothing looks events up by id (they are addressed by leaf index), and a unique
    # index on a random UUID cost a third of each append's write work. The id is inside the
    # hashed leaf, so it cannot be changed unnoticed.
    Column("event_id", String(36), nullable=False),
    Column("occurred_at", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("resource", String(500), nullable=False),
    Column("details", Text, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("schema_version", Integer, nullable=False),
    # A version 2 leaf's `withheld` member: the commitments to what it withholds, {label: hex}.
    Column("commitments", Text, nullable=True),
    # The private half of a version 2 event (domain.PRIVATE_FORMAT): the withheld values with
    # their salts, and the asset the event concerns. Not hashed into the leaf (the leaf holds the
    # commitments), never served to the public, erasable (personal data) without breaking the tree.
    Column("withheld", Text, nullable=True),
)

audit_tree_heads = Table(
    "audit_tree_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("origin", String(200), nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("issued_at", String(32), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("key_hash", LargeBinary(4), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

# Hashes of the perfect subtrees at levels STRIDE, 2*STRIDE, ... (derived data: recomputable
# from the leaves, filled when tree heads are issued, checked by `aperture audit verify`).
# Refusals anyone can cause (wrong keys, failed sign-ins) are counted here per window, by kind,
# reason, keyed hash of the origin and subject, and summed into one `audit.refusals` event per
# kind when the window closes: bounded in rows (a cap per window) and in log growth.
audit_refusals = Table(
    "audit_refusals",
    metadata,
    Column("window_start", BigInteger, primary_key=True, autoincrement=False),  # epoch seconds
    Column("kind", String(100), primary_key=True),
    Column("reason", String(100), primary_key=True),
    Column("origin", String(32), primary_key=True),  # keyed hash of the address, or "*" past the cap
    Column("subject", String(64), primary_key=True),  # e.g. the key id of a known key; "" when none
    Column("count", BigInteger, nullable=False),
)

audit_tree_nodes = Table(
    "audit_tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("node_index", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

NODE_SCHEMA_VERSION = 1
# pg_advisory_xact_lock key serialising appends on PostgreSQL ("aperture" in ASCII).
APPEND_LOCK_KEY = 0x6170657274757265

_INSERT_EVENT = (
    "INSERT INTO audit_events (leaf_index, event_id, occurred_at, actor, action, resource, details, leaf_hash, "
    "schema_version, commitments, withheld) "
    "VALUES (COALESCE((SELECT MAX(leaf_index) FROM audit_events), -1) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LEAF_TILE = "SELECT leaf_index, leaf_hash FROM audit_events WHERE leaf_index >= ? AND leaf_index < ?"
_NODE_TILE = "SELECT node_index, hash FROM audit_tree_nodes WHERE level = ? AND node_index >= ? AND node_index < ?"
_ALL_RECORDS = (
    "SELECT leaf_index, event_id, occurred_at, actor, action, resource, details, leaf_hash, schema_version, "
    "commitments, withheld FROM audit_events ORDER BY leaf_index"
)


def _sql(connection: Connection, statement: str) -> str:
    # Our statements are written with qmark parameters (sqlite3); psycopg takes %s.
    return statement if connection.dialect.name == "sqlite" else statement.replace("?", "%s")


def _raw(connection: Connection, statement: str, params: tuple[Any, ...]) -> list[Any]:
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_sql(connection, statement), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# --- events ---------------------------------------------------------------------------------


def insert_event(
    connection: Connection,
    event_id: str,
    occurred_at: str,
    actor: str,
    action: str,
    resource: str,
    details_json: str,
    leaf_hash: bytes,
    schema_version: int,
    commitments: str | None,
    withheld: str | None,
) -> int:
    """Append one row at the next leaf index, in the caller's transaction; returns the index.

    The index is computed inside the INSERT from MAX(leaf_index) under the database's write
    serialisation (SQLite: the single writer lock, taken by this statement; PostgreSQL: an
    advisory lock held to commit), so concurrent appends get contiguous, distinct indices and a
    rolled-back append leaves no hole. An in-process counter could do neither.
    """
    params = (
        event_id,
        occurred_at,
        actor,
        action,
        resource,
        details_json,
        leaf_hash,
        schema_version,
        commitments,
        withheld,
    )
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "sqlite":
            cursor.execute(_INSERT_EVENT, params)
            # leaf_index is the rowid (INTEGER PRIMARY KEY): lastrowid is cheaper than RETURNING.
            index: Any = cursor.lastrowid
        else:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
            cursor.execute(_INSERT_EVENT.replace("?", "%s") + " RETURNING leaf_index", params)
            row = cursor.fetchone()
            index = None if row is None else row[0]
    finally:
        cursor.close()
    if index is None:  # pragma: no cover - the INSERT either stores the row or raises
        raise IntegrityFailure("the audit event was not stored", hint="retry; report it if it persists")
    return int(index)


class StandaloneWriter:
    """Appends events that belong to no other change, each in its own transaction, on SQLite.

    Such events (a verification, an export, an access decision) are the frequent ones. Through
    SQLAlchemy's unit of work each costs a pool checkout, BEGIN and COMMIT bookkeeping that took
    as long as the insert itself; here each thread keeps one DBAPI connection of the engine
    (detached from the pool, so it keeps the engine's pragmas) and runs INSERT + COMMIT on it.
    The leaf index is still assigned inside the INSERT under SQLite's writer lock, so these
    appends interleave correctly with appends made inside other transactions.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            pooled = self._engine.raw_connection()
            connection = pooled.driver_connection
            pooled.detach()
            with self._lock:
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def insert(self, params: tuple[Any, ...]) -> int:
        connection = self._connection()
        with connection:  # sqlite3: commits on success, rolls back on error
            cursor = connection.execute(_INSERT_EVENT, params)
        index = cursor.lastrowid
        if index is None:  # pragma: no cover - the INSERT either stores the row or raises
            raise IntegrityFailure("the audit event was not stored", hint="retry; report it if it persists")
        return int(index)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()


def tree_size(connection: Connection) -> int:
    """The next leaf index (MAX + 1: a deleted row in the middle is `verify`'s to report)."""
    rows = _raw(connection, "SELECT MAX(leaf_index) FROM audit_events", ())
    return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1


def _record(row: Any) -> EventRecord:
    version = int(row.schema_version)
    secrets, asset = parse_private(row.withheld)
    if version >= EVENT_SCHEMA_VERSION:  # actor and resource are stored as their leaf members' JSON
        actor, resource = json.loads(row.actor), json.loads(row.resource)
    else:
        actor, resource = row.actor, row.resource
    return EventRecord(
        leaf_index=int(row.leaf_index),
        event_id=row.event_id,
        occurred_at=row.occurred_at,
        action=row.action,
        actor=actor,
        resource=resource,
        details=json.loads(row.details),
        schema_version=version,
        leaf_hash=bytes(row.leaf_hash),
        commitments=json.loads(row.commitments) if row.commitments else {},
        secrets=secrets,
        asset=asset,
    )


def load_record(connection: Connection, leaf_index: int) -> EventRecord | None:
    row = connection.execute(select(audit_events).where(audit_events.c.leaf_index == leaf_index)).first()
    return None if row is None else _record(row)


def list_records(
    connection: Connection,
    *,
    limit: int,
    before: int | None = None,
    action: str | None = None,
    resource: str | None = None,
) -> list[EventRecord]:
    """Newest first; `before` is an exclusive upper bound on the leaf index (for paging).

    `action` and `resource` filter on what the leaf shows: `resource` matches only version 2
    events whose resource is public (stored as its JSON string), never a withheld one."""
    query = select(audit_events).order_by(audit_events.c.leaf_index.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_events.c.leaf_index < before)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if resource is not None:
        query = query.where(
            audit_events.c.schema_version == EVENT_SCHEMA_VERSION,
            audit_events.c.resource == encode_basestring(resource),
        )
    return [_record(row) for row in connection.execute(query)]


def iter_action_records(connection: Connection, *, action: str, after: int, batch: int = 500) -> Iterator[EventRecord]:
    """Oldest first: the events of `action` with a leaf index above `after`, read in batches."""
    while True:
        query = (
            select(audit_events)
            .where(audit_events.c.action == action, audit_events.c.leaf_index > after)
            .order_by(audit_events.c.leaf_index)
            .limit(batch)
        )
        rows = list(connection.execute(query))
        for row in rows:
            yield _record(row)
        if len(rows) < batch:
            return
        after = int(rows[-1].leaf_index)


def _stream(connection: Connection, statement: str, params: tuple[Any, ...], batch: int) -> Iterator[list[Any]]:
    """Rows of a large SELECT in batches of plain tuples, never all in memory at once."""
    if connection.dialect.name == "sqlite":
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement, params)
            while rows := cursor.fetchmany(batch):
                yield list(rows)
        finally:
            cursor.close()
        return
    # PostgreSQL: a server-side cursor (a client-side one would fetch everything first).
    names = [f"p{i}" for i in range(len(params))]
    for name in names:
        statement = statement.replace("?", f":{name}", 1)
    result = connection.execute(
        text(statement), dict(zip(names, params, strict=True)), execution_options={"yield_per": batch}
    )
    for partition in result.partitions():
        yield [tuple(row) for row in partition]


def iter_leaf_records(connection: Connection, batch: int = 20_000) -> Iterator[list[LeafRecord]]:
    """Every row in leaf order, in batches of plain tuples (the order of domain.LeafRecord)."""
    for rows in _stream(connection, _ALL_RECORDS, (), batch):
        yield cast(list[LeafRecord], rows)


# --- stored subtree hashes ------------------------------------------------------------------


def load_stored_nodes(connection: Connection) -> dict[tuple[int, int], bytes]:
    rows = connection.execute(select(audit_tree_nodes.c.level, audit_tree_nodes.c.node_index, audit_tree_nodes.c.hash))
    return {(int(level), int(index)): bytes(value) for level, index, value in rows}


def _insert_ignoring_duplicates(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose key exists (a concurrent writer stored the same data)."""
    if not rows:
        return 0
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing()
    return int(connection.execute(statement, rows).rowcount or 0)


class SubtreeHashes:
    """Hashes of perfect subtrees of the stored tree, read a tile (2**STRIDE nodes) at a time.

    A subtree at level L is read from the stored nodes when L is a multiple of STRIDE, else
    hashed from at most 2**(STRIDE-1) nodes of the stored level below it, which all lie in one
    tile; missing stored nodes (not filled yet) are computed from the level below in turn. So an
    inclusion proof at a million leaves reads about ten small tiles, never the million leaves.
    """

    def __init__(self, connection: Connection, max_tiles: int = 256) -> None:
        self._connection = connection
        self._tiles: OrderedDict[tuple[int, int], dict[int, bytes]] = OrderedDict()
        self._max_tiles = max_tiles

    def _tile(self, level: int, tile: int) -> dict[int, bytes]:
        key = (level, tile)
        found = self._tiles.get(key)
        if found is not None:
            return found
        start, end = tile << STRIDE, (tile + 1) << STRIDE
        if level == 0:
            rows = _raw(self._connection, _LEAF_TILE, (start, end))
        else:
            rows = _raw(self._connection, _NODE_TILE, (level, start, end))
        found = {int(index): bytes(value) for index, value in rows}
        self._tiles[key] = found
        if len(self._tiles) > self._max_tiles:
            self._tiles.popitem(last=False)
        return found

    def node(self, level: int, index: int) -> bytes:
        base = level - level % STRIDE
        if base != level:
            return self._from_below(level, index, base)
        tile = self._tile(level, index >> STRIDE)
        found = tile.get(index)
        if found is not None:
            return found
        if level == 0:
            raise IntegrityFailure(
                f"leaf {index} of the transparency log is missing",
                hint="run `aperture audit verify` to see what was deleted",
            )
        computed = self._from_below(level, index, level - STRIDE)
        tile[index] = computed  # remember it, so the level above can reuse it
        return computed

    def _from_below(self, level: int, index: int, base: int) -> bytes:
        width = level - base
        first, last = index << width, (index + 1) << width
        tile = self._tile(base, first >> STRIDE)  # width < STRIDE and aligned: one tile holds them all
        hashes = [tile.get(i) for i in range(first, last)]
        if any(value is None for value in hashes):
            hashes = [self.node(base, i) for i in range(first, last)]
        return perfect_root(cast(list[bytes], hashes))

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) for a range that is a node of an RFC 6962 tree."""
        return fold_subtrees([self.node(level, index) for level, index in perfect_subtrees(start, end)])


def _stored_count(connection: Connection, level: int) -> int:
    rows = _raw(connection, "SELECT MAX(node_index) FROM audit_tree_nodes WHERE level = ?", (level,))
    return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1


def fill_stride_nodes(connection: Connection, size: int) -> int:
    """Store every missing stride-level subtree hash of the first `size` leaves; returns how many.

    Each level is one streaming read of the level below (leaf hashes, or the nodes just stored),
    so the first head over a million unsigned leaves reads each leaf hash once.
    """
    reader = SubtreeHashes(connection)  # fills holes in the level below, if any
    stored = 0
    level = STRIDE
    while size >> level:
        start, end = _stored_count(connection, level), size >> level
        if start < end:
            hashes = _fill_level(connection, reader, level, start, end)
            # Inserted after the read finished: never write a table while a cursor scans it.
            for chunk in range(0, len(hashes), 5000):
                rows = [
                    {
                        "level": level,
                        "node_index": start + chunk + i,
                        "hash": value,
                        "schema_version": NODE_SCHEMA_VERSION,
                    }
                    for i, value in enumerate(hashes[chunk : chunk + 5000])
                ]
                stored += _insert_ignoring_duplicates(connection, audit_tree_nodes, rows)
        level += STRIDE
    return stored


def _fill_level(connection: Connection, reader: SubtreeHashes, level: int, start: int, end: int) -> list[bytes]:
    """Hashes of the subtrees (level, start) .. (level, end - 1), from the level STRIDE below."""
    child = level - STRIDE
    first, last = start << STRIDE, end << STRIDE
    statement: str
    params: tuple[int, ...]
    if child == 0:
        statement, params = _LEAF_TILE + " ORDER BY leaf_index", (first, last)
    else:
        statement, params = _NODE_TILE + " ORDER BY node_index", (child, first, last)
    width = 1 << STRIDE
    hashes: list[bytes] = []
    group: list[bytes] = []
    expected = first
    for batch in _stream(connection, statement, params, 20_000):
        for index, value in batch:
            while expected < index:  # a hole below: compute it (a missing leaf raises)
                group = _push(group, hashes, reader.node(child, expected), width)
                expected += 1
            group = _push(group, hashes, bytes(value), width)
            expected += 1
    while expected < last:
        group = _push(group, hashes, reader.node(child, expected), width)
        expected += 1
    return hashes


def _push(group: list[bytes], hashes: list[bytes], value: bytes, width: int) -> list[bytes]:
    """Add a child hash to the group; a full group becomes one parent hash."""
    group.append(value)
    if len(group) < width:
        return group
    hashes.append(perfect_root(group))
    return []


# --- signed tree heads ----------------------------------------------------------------------


def _head(row: Any) -> SignedTreeHead:
    return SignedTreeHead(
        origin=row.origin,
        tree_size=int(row.tree_size),
        root_hash=bytes(row.root_hash),
        issued_at=row.issued_at,
        key_id=row.key_id,
        key_hash=bytes(row.key_hash),
        signature=bytes(row.signature),
        schema_version=int(row.schema_version),
    )


def latest_tree_head(connection: Connection) -> SignedTreeHead | None:
    row = connection.execute(select(audit_tree_heads).order_by(audit_tree_heads.c.tree_size.desc()).limit(1)).first()
    return None if row is None else _head(row)


def tree_head_at(connection: Connection, size: int) -> SignedTreeHead | None:
    row = connection.execute(select(audit_tree_heads).where(audit_tree_heads.c.tree_size == size)).first()
    return None if row is None else _head(row)


def list_tree_heads(connection: Connection) -> list[SignedTreeHead]:
    return [_head(row) for row in connection.execute(select(audit_tree_heads).order_by(audit_tree_heads.c.tree_size))]


def insert_tree_head(connection: Connection, head: SignedTreeHead) -> bool:
    """Store a head; False when a head of that size exists already (issued concurrently)."""
    row = {
        "tree_size": head.tree_size,
        "origin": head.origin,
        "root_hash": head.root_hash,
        "issued_at": head.issued_at,
        "key_id": head.key_id,
        "key_hash": head.key_hash,
        "signature": head.signature,
        "schema_version": TREE_HEAD_SCHEMA_VERSION,
    }
    return _insert_ignoring_duplicates(connection, audit_tree_heads, [row]) > 0


# --- refusal counters -----------------------------------------------------------------------

_BUMP_REFUSAL = (
    "UPDATE audit_refusals SET count = count + 1 "
    "WHERE window_start = ? AND kind = ? AND reason = ? AND origin = ? AND subject = ?"
)
_REFUSAL_ROWS = "SELECT COUNT(*) FROM audit_refusals WHERE window_start = ? AND kind = ?"
_NEW_REFUSAL = (
    "INSERT INTO audit_refusals (window_start, kind, reason, origin, subject, count) VALUES (?, ?, ?, ?, ?, 1) "
    "ON CONFLICT (window_start, kind, reason, origin, subject) DO UPDATE SET count = audit_refusals.count + 1"
)
OVERFLOW = "*"  # the origin and subject of the counter that takes a window's refusals past its cap


def count_refusal(
    connection: Connection, window_start: int, kind: str, reason: str, origin: str, subject: str, cap: int
) -> None:
    """Add one refusal to its counter in the caller's transaction. A window holds at most `cap`
    counters per kind; past that, refusals go to one overflow counter per reason, so the table
    stays bounded whatever the origins and subjects."""
    key = (window_start, kind, reason, origin, subject)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_sql(connection, _BUMP_REFUSAL), key)
        if cursor.rowcount:
            return
        cursor.execute(_sql(connection, _REFUSAL_ROWS), (window_start, kind))
        row = cursor.fetchone()
        if row is not None and int(row[0]) >= cap:
            key = (window_start, kind, reason, OVERFLOW, OVERFLOW)
        cursor.execute(_sql(connection, _NEW_REFUSAL), key)
    finally:
        cursor.close()


def take_refusals(connection: Connection, before_window: int) -> list[tuple[int, str, str, str, str, int]]:
    """Remove and return the counters of every window that started before `before_window` (closed
    windows). Deleting claims them: a concurrent flusher gets none of the same rows."""
    rows = _raw(
        connection,
        "DELETE FROM audit_refusals WHERE window_start < ? "
        "RETURNING window_start, kind, reason, origin, subject, count",
        (before_window,),
    )
    return [(int(w), str(k), str(r), str(o), str(s), int(c)) for w, k, r, o, s, c in rows]


def oldest_refusal_window(connection: Connection) -> int | None:
    rows = _raw(connection, "SELECT MIN(window_start) FROM audit_refusals", ())
    return None if not rows or rows[0][0] is None else int(rows[0][0])
