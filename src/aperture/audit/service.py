"""Use cases of the transparency log: append, count refusals, read, sign tree heads, prove, verify.

Every event is written as two halves: the leaf (version 2), which holds what the public may see
in clear and a salted commitment to the fields it may not, one per label (`aperture.audit.fields`
classifies them), and the private half with those values and salts. The methods here read as
the local operator (everything disclosed); what a caller may read of the private half is decided in
`aperture.audit.views`, through the access service (which itself appends events here, so this
module cannot depend on it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection

from aperture.audit import store
from aperture.audit.domain import (
    EMPTY_ROOT,
    EVENT_SCHEMA_VERSION,
    SALT_SIZE,
    AuditEvent,
    Checkpoint,
    ConsistencyProof,
    Discloser,
    EventRecord,
    InclusionProof,
    LogVerifier,
    SignedTreeHead,
    VerificationReport,
    build_signed_tree_head,
    check_disclosed,
    checkpoint_text,
    consistency_ranges,
    disclose_all,
    event_json,
    event_leaf_data,
    full_event,
    inclusion_ranges,
    leaf_hash,
    log_origin,
    seal_event,
    verify_consistency,
    verify_inclusion,
)
from aperture.audit.fields import fields_of
from aperture.core.clock import Clock, isoformat
from aperture.core.db import Database
from aperture.core.errors import IntegrityFailure, InvalidInput, NotFound
from aperture.core.ids import new_id

MAX_PAGE = 500
_LIMITS = {"actor": 200, "action": 100, "resource": 500}
MAX_DETAILS = 16_384  # characters of an event's details as canonical JSON
MAX_EVENT = 65_536  # bytes of an event as stored: its leaf and its private half
ASSET_PREFIX = "asset:"  # how the log names a classified asset by its opaque id (AssetRef.audit_resource)
REFUSALS = "audit.refusals"
REFUSAL_WINDOW_S = 300
REFUSAL_CAP = 256  # counters per kind and window; past it, one overflow counter per reason
REFUSALS_LISTED = 100  # origins and subjects named in one summary event (the rest are summed)
_ORIGIN_KEY_CONTEXT = b"aperture-audit-origin-key:v1"


def _bad_fields(**fields: str) -> InvalidInput:
    name = next(name for name, value in fields.items() if not 0 < len(value) <= _LIMITS[name])
    action = fields["action"][:100]
    return InvalidInput(
        f"an audit event's {name} must be 1 to {_LIMITS[name]} characters ({action!r} gave {len(fields[name])})",
        hint="this is a bug in the caller of AuditLog.append: name things in events, don't copy them",
    )


def _too_large(action: str, what: str, size: int, limit: int) -> InvalidInput:
    return InvalidInput(
        f"the audit event {action!r} is too large: {what} is {size}, at most {limit}",
        hint="this is a bug in the caller of AuditLog.append: name things in events, don't copy them",
    )


class TreeHeadSigner(Protocol):
    """What signing tree heads needs of the instance key (aperture.vault.keys.InstanceKeys)."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key_pem(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class AuditLog:
    """The transparency log. `append` writes in the caller's transaction, so a change and its
    event commit together; everything else opens its own connection."""

    def __init__(
        self,
        clock: Clock,
        database: Database | None = None,
        signer: Callable[[], TreeHeadSigner] | None = None,
        *,
        refusal_window_s: int = REFUSAL_WINDOW_S,
        refusal_cap: int = REFUSAL_CAP,
    ) -> None:
        self.clock = clock
        self._database = database
        self._signer = signer
        self._standalone: store.StandaloneWriter | None = None
        if database is not None and database.is_sqlite:
            self._standalone = store.StandaloneWriter(database.engine)
        self.refusal_window_s = refusal_window_s
        self.refusal_cap = refusal_cap
        self._summed_before = 0  # refusal windows before this one have been summed up by this process
        self._origin_key: bytes | None = None
        self.appended = False  # whether this process appended an event (the CLI then signs a head)

    def close(self) -> None:
        if self._standalone is not None:
            self._standalone.close()

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("this AuditLog was built without a database; build it with build_services")
        return self._database

    def signer(self) -> TreeHeadSigner:
        if self._signer is None:
            raise RuntimeError("this AuditLog was built without the instance key; build it with build_services")
        return self._signer()

    # --- writing --------------------------------------------------------------------------

    def append(
        self,
        connection: Connection,
        *,
        actor: str,
        action: str,
        resource: str,
        details: dict[str, Any] | None = None,
        upper_tier: bool = False,
        asset: str | None = None,
    ) -> AuditEvent:
        """Append one event as the next leaf, inside the caller's open transaction.

        What the public sees of it is decided per field by `aperture.audit.fields`. `upper_tier`
        says the event concerns an upper-tier asset (SL3+): its upper-tier fields are withheld
        too. A resource that names an asset by its opaque id (`asset:...`) always counts as
        upper-tier. `asset` is that asset's uid when the resource does not say it (a proposal,
        a licence, `model:NAME:VERSION`); it is kept privately, so that reading the withheld
        fields can be checked against the reader's clearance."""
        row = self._row(actor, action, resource, details, upper_tier, asset)
        index = store.insert_event(connection, *row)
        self.appended = True
        return AuditEvent(index, row[0], row[1], actor, action, resource, dict(details or {}), EVENT_SCHEMA_VERSION)

    def record(
        self,
        *,
        actor: str,
        action: str,
        resource: str,
        details: dict[str, Any] | None = None,
        upper_tier: bool = False,
        asset: str | None = None,
    ) -> AuditEvent:
        """Append one event that belongs to no other change, committed on its own.

        For what only needs recording (a verification, an export, an access decision); a state
        change appends its event with `append` in the change's own transaction instead.
        """
        row = self._row(actor, action, resource, details, upper_tier, asset)
        if self._standalone is not None:
            index = self._standalone.insert(row)
        else:
            with self.database.transaction() as connection:
                index = store.insert_event(connection, *row)
        self.appended = True
        return AuditEvent(index, row[0], row[1], actor, action, resource, dict(details or {}), EVENT_SCHEMA_VERSION)

    def _row(
        self,
        actor: str,
        action: str,
        resource: str,
        details: dict[str, Any] | None,
        upper_tier: bool,
        asset: str | None,
    ) -> tuple[str, str, str, str, str, str, bytes, int, str | None, str | None]:
        """The stored fields of a new event, in `store.insert_event`'s order; checks them first."""
        if not (0 < len(actor) <= _LIMITS["actor"] and 0 < len(action) <= _LIMITS["action"]) or not (
            0 < len(resource) <= _LIMITS["resource"]
        ):
            raise _bad_fields(actor=actor, action=action, resource=resource)
        details = details or {}
        if resource.startswith(ASSET_PREFIX):
            upper_tier = True
            asset = asset or resource[len(ASSET_PREFIX) :]
        event_id = new_id()
        occurred_at = isoformat(self.clock.now())
        try:
            sealed = seal_event(
                fields_of(action),
                upper_tier=upper_tier,
                event_id=event_id,
                occurred_at=occurred_at,
                actor=actor,
                action=action,
                resource=resource,
                details=details,
                asset=asset if upper_tier else None,
                salts=os.urandom(2 * SALT_SIZE),
            )
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                f"audit event details must be canonical JSON: {error}",
                hint="use strings, integers, booleans, null, lists and objects (no floats)",
            ) from None
        for name, member in (("actor", sealed.actor), ("resource", sealed.resource)):
            if len(member) > _LIMITS[name]:  # the column holds the leaf member: quotes and escapes count
                raise _too_large(action, f"the {name} as JSON", len(member), _LIMITS[name])
        if sealed.clear_details > MAX_DETAILS:
            raise _too_large(action, "the details as JSON", sealed.clear_details, MAX_DETAILS)
        if len(sealed.leaf) + len(sealed.private or "") > MAX_EVENT:
            raise _too_large(action, "the event as stored", len(sealed.leaf) + len(sealed.private or ""), MAX_EVENT)
        return (
            event_id,
            occurred_at,
            sealed.actor,
            action,
            sealed.resource,
            sealed.details,
            leaf_hash(sealed.leaf),
            EVENT_SCHEMA_VERSION,
            sealed.commitments,
            sealed.private,
        )

    # --- refusals: counted per window, summed into one event per kind ----------------------

    def count_refusal(
        self,
        kind: str,
        reason: str,
        origin: str | None,
        *,
        subject: str = "",
        connection: Connection | None = None,
    ) -> None:
        """Count one refusal that anyone can cause (a wrong key, a failed sign-in) instead of
        logging it: per window, by reason, by a keyed hash of the origin (never the address) and
        by subject (an id of ours, never text the caller chose). When a window closes, its counts
        become one `audit.refusals` event per kind. Inside `connection` when given."""
        now = self.clock.now()
        window = int(now.timestamp()) // self.refusal_window_s * self.refusal_window_s
        key = (window, kind[:100], reason[:100], self._origin_hash(origin), subject[:64])
        if connection is not None:
            store.count_refusal(connection, *key, cap=self.refusal_cap)
        else:
            with self.database.transaction() as own:
                store.count_refusal(own, *key, cap=self.refusal_cap)
        if window > self._summed_before:
            self.sum_refusals(connection=connection)

    def _origin_hash(self, origin: str | None) -> str:
        """A keyed hash of an address: the same address counts together within the instance,
        and nobody without the instance key can tell which address it is (IPv4 is small enough
        to hash exhaustively, so an unkeyed hash would hide nothing)."""
        if not origin:
            return "-"
        if self._origin_key is None:
            # Ed25519 signatures are deterministic: a key only the instance can derive.
            self._origin_key = hashlib.sha256(self.signer().sign(_ORIGIN_KEY_CONTEXT)).digest()
        return hmac.new(self._origin_key, origin.encode("utf-8"), "sha256").hexdigest()[:16]

    def sum_refusals(self, *, connection: Connection | None = None) -> list[AuditEvent]:
        """Turn the counters of every closed window into one `audit.refusals` event per kind."""
        now = self.clock.now()
        window = int(now.timestamp()) // self.refusal_window_s * self.refusal_window_s
        if connection is None:
            with self.database.transaction() as own:
                events = self._sum_refusals(own, window)
        else:
            events = self._sum_refusals(connection, window)
        self._summed_before = window
        return events

    def _sum_refusals(self, connection: Connection, window: int) -> list[AuditEvent]:
        groups: dict[tuple[int, str], list[tuple[str, str, str, int]]] = {}
        for start, kind, reason, origin, subject, count in store.take_refusals(connection, window):
            groups.setdefault((start, kind), []).append((reason, origin, subject, count))
        return [
            self.append(
                connection,
                actor="system",
                action=REFUSALS,
                resource=f"refusals:{kind}",
                details=_refusal_summary(start, self.refusal_window_s, rows),
            )
            for (start, kind), rows in sorted(groups.items())
        ]

    # --- reading (as the local operator: every field in clear) -----------------------------

    def tree_size(self) -> int:
        with self.database.read() as connection:
            return store.tree_size(connection)

    def tree_size_at(self, connection: Connection) -> int:
        """The log's size as `connection` sees it (a backup's snapshot)."""
        return store.tree_size(connection)

    def list_records(
        self, *, limit: int = 50, before: int | None = None, action: str | None = None, resource: str | None = None
    ) -> list[EventRecord]:
        """Stored events (both halves), newest first, at most `limit` (1..500); `before` pages
        back (exclusive leaf index); `action` and `resource` filter on what the leaf shows."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", hint=f"ask for at most {MAX_PAGE} events a page")
        if before is not None and before < 0:
            raise InvalidInput("before must be a leaf index (0 or more)", hint="omit it for the newest events")
        with self.database.read() as connection:
            return store.list_records(connection, limit=limit, before=before, action=action, resource=resource)

    def get_record(self, leaf_index: int) -> EventRecord:
        with self.database.read() as connection:
            record = store.load_record(connection, leaf_index)
        if record is None:
            raise NotFound(f"no audit event at leaf {leaf_index}", hint="`aperture audit list` shows the events")
        return record

    def list_events(self, *, limit: int = 50, before: int | None = None) -> list[AuditEvent]:
        """Newest first, every field in clear (the operator's view)."""
        return [full_event(record) for record in self.list_records(limit=limit, before=before)]

    def get_event(self, leaf_index: int) -> AuditEvent:
        return full_event(self.get_record(leaf_index))

    @staticmethod
    def event_json(record: EventRecord, disclose: Discloser = disclose_all) -> dict[str, Any]:
        """The event as a reader allowed `disclose` sees it (default: the operator, everything)."""
        return event_json(record, fields_of(record.action), disclose)

    def find_events(
        self, *, action: str, resources: Sequence[str], after: int = -1, limit: int = 100
    ) -> list[AuditEvent]:
        """Events of one action about any of `resources` after leaf `after`, oldest first, in clear
        (the operator's view). A scan of the action's events, since a withheld resource is only in
        the private half: for occasional checks such as a registry verification, not for pages."""
        wanted = set(resources)
        found: list[AuditEvent] = []
        with self.database.read() as connection:
            for record in store.iter_action_records(connection, action=action, after=after):
                event = full_event(record)
                if event.resource in wanted:
                    found.append(event)
                    if len(found) >= limit:
                        break
        return found

    def checked_event(self, leaf_index: int) -> AuditEvent:
        """The event at `leaf_index` in clear, after checking that its content (and every withheld
        field, against its commitment) still hashes to its leaf and that the leaf is the one the
        latest signed head covers. IntegrityFailure when the event was changed, NotFound when
        there is no such leaf."""
        record = self.get_record(leaf_index)
        proof = self.newest_inclusion_proof(leaf_index)
        try:
            intact = leaf_hash(event_leaf_data(proof.event)) == proof.leaf_hash and not check_disclosed(proof.event)
        except (ValueError, KeyError, TypeError):
            intact = False
        included = verify_inclusion(proof.leaf_hash, leaf_index, proof.tree_size, proof.path, proof.root_hash)
        if proof.tree_head is not None and proof.tree_head.root_hash != proof.root_hash:
            included = False
        if not (intact and included):
            raise IntegrityFailure(
                f"the event at leaf {leaf_index} was changed after it was logged",
                hint="run `aperture audit verify` and restore the database from backup",
            )
        return full_event(record)

    def latest_tree_head(self) -> SignedTreeHead | None:
        with self.database.read() as connection:
            return store.latest_tree_head(connection)

    def tree_heads(self) -> list[SignedTreeHead]:
        with self.database.read() as connection:
            return store.list_tree_heads(connection)

    # --- signed tree heads ----------------------------------------------------------------

    def issue_tree_head(self) -> SignedTreeHead:
        """Sign the log at its current size (or return the latest head if nothing was added since).

        Before signing, the tree at the previous head's size must still have the root signed then:
        a log must never sign a checkpoint inconsistent with one it signed before.
        """
        signer = self.signer()
        self.sum_refusals()  # a closed window's refusals belong in the log before it is signed
        with self.database.transaction() as connection:
            size = store.tree_size(connection)
            latest = store.latest_tree_head(connection)
            if latest is not None and latest.tree_size == size:
                return latest
            if latest is not None and latest.tree_size > size:
                raise IntegrityFailure(
                    f"the log has {size} events but a signed tree head commits to {latest.tree_size}",
                    hint="events were deleted; run `aperture audit verify` and restore from backup",
                )
            store.fill_stride_nodes(connection, size)
            hashes = store.SubtreeHashes(connection)
            if latest is not None and hashes.range_hash(0, latest.tree_size) != latest.root_hash:
                raise IntegrityFailure(
                    f"the log's first {latest.tree_size} events no longer match the signed tree head of that size",
                    hint="refusing to sign an inconsistent tree head; run `aperture audit verify`",
                )
            root = hashes.range_hash(0, size) if size else EMPTY_ROOT
            origin = log_origin(signer.key_id)
            issued_at = isoformat(self.clock.now())
            signature = signer.sign(checkpoint_text(origin, size, root, issued_at).encode("utf-8"))
            head = build_signed_tree_head(
                origin=origin,
                tree_size=size,
                root=root,
                issued_at=issued_at,
                key_id=signer.key_id,
                public_key_pem=signer.public_key_pem,
                signature=signature,
            )
            if not store.insert_tree_head(connection, head):
                existing = store.tree_head_at(connection, size)
                assert existing is not None  # the conflicting head was committed by another writer
                return existing
        return head

    def issue_tree_head_if_grown(self) -> SignedTreeHead | None:
        """For the server's periodic task: sign a new head only when events were appended since
        the latest one (so an idle log does not pile up heads). Returns the new head or None."""
        self.sum_refusals()
        with self.database.read() as connection:
            size = store.tree_size(connection)
            latest = store.latest_tree_head(connection)
        if size == 0 or (latest is not None and latest.tree_size >= size):
            return None
        return self.issue_tree_head()

    # --- proofs ---------------------------------------------------------------------------

    def inclusion_proof(
        self, leaf_index: int, tree_size: int | None = None, *, disclose: Discloser = disclose_all
    ) -> InclusionProof:
        """The audit path of one event in the tree of `tree_size` leaves; by default the tree of
        the latest signed head, so the proof can be checked against a signature offline. The
        event is shown as a reader allowed `disclose` sees it (default: the operator)."""
        with self.database.read() as connection:
            current = store.tree_size(connection)
            head = self._head_for(connection, tree_size, leaf_index + 1)
            size = head.tree_size if head is not None else tree_size
            assert size is not None
            if not 0 <= leaf_index < size or size > current:
                raise NotFound(
                    f"no leaf {leaf_index} in a tree of size {size} (the log has {current} events)",
                    hint="leaf indices run from 0 to the tree size minus one",
                )
            record = store.load_record(connection, leaf_index)
            if record is None:
                raise IntegrityFailure(f"leaf {leaf_index} is missing", hint="run `aperture audit verify`")
            stored_leaf = record.leaf_hash
            hashes = store.SubtreeHashes(connection)
            path = tuple(hashes.range_hash(start, end) for start, end in inclusion_ranges(leaf_index, size))
            root = head.root_hash if head is not None else hashes.range_hash(0, size)
        if not verify_inclusion(stored_leaf, leaf_index, size, path, root):
            raise IntegrityFailure(
                f"the stored tree no longer leads from leaf {leaf_index} to the root of size {size}",
                hint="run `aperture audit verify` to find what changed",
            )
        return InclusionProof(self.event_json(record, disclose), stored_leaf, size, root, path, head)

    def newest_inclusion_proof(self, leaf_index: int, *, disclose: Discloser = disclose_all) -> InclusionProof:
        """Against the latest signed tree head when it covers the leaf; else against the current
        tree (an event appended since the last head, before the server signs the next one)."""
        with self.database.read() as connection:
            latest = store.latest_tree_head(connection)
            current = store.tree_size(connection)
        size = latest.tree_size if latest is not None and latest.tree_size > leaf_index else current
        return self.inclusion_proof(leaf_index, size, disclose=disclose)

    def consistency_proof(self, first: int, second: int | None = None) -> ConsistencyProof:
        """Proof that the tree of `first` leaves is a prefix of the tree of `second` leaves
        (default: the latest signed head)."""
        with self.database.read() as connection:
            current = store.tree_size(connection)
            second_head = self._head_for(connection, second, max(first, 1))
            second_size = second_head.tree_size if second_head is not None else second
            assert second_size is not None
            if not 0 <= first <= second_size or second_size > current:
                raise NotFound(
                    f"no consistency proof from size {first} to size {second_size} (the log has {current} events)",
                    hint="give 0 <= first <= second <= the current tree size",
                )
            first_head = store.tree_head_at(connection, first)
            hashes = store.SubtreeHashes(connection)
            path = tuple(hashes.range_hash(start, end) for start, end in consistency_ranges(first, second_size))
            first_root = first_head.root_hash if first_head else hashes.range_hash(0, first)
            second_root = second_head.root_hash if second_head else hashes.range_hash(0, second_size)
        if not verify_consistency(first, second_size, first_root, second_root, path):
            raise IntegrityFailure(
                f"the stored tree of size {second_size} is not an extension of the tree of size {first}",
                hint="run `aperture audit verify` to find what changed",
            )
        return ConsistencyProof(first, second_size, first_root, second_root, path, first_head, second_head)

    def _head_for(self, connection: Connection, size: int | None, at_least: int) -> SignedTreeHead | None:
        """The signed head a proof refers to: the one at `size`, or the latest when no size is
        given (which must cover `at_least` leaves). None means an explicit size with no head."""
        if size is not None:
            if size < 0:
                raise InvalidInput("a tree size is 0 or more", hint="omit it to use the latest signed tree head")
            return store.tree_head_at(connection, size)
        latest = store.latest_tree_head(connection)
        if latest is None or latest.tree_size < at_least:
            raise NotFound(
                "no signed tree head covers that leaf yet",
                hint="run `aperture audit head` to sign the log at its current size, or give a tree size",
            )
        return latest

    # --- verification ---------------------------------------------------------------------

    def verify(
        self, *, checkpoints: Iterable[Checkpoint] = (), max_head_age: timedelta | None = None
    ) -> VerificationReport:
        """Recompute the whole tree from the rows and compare it with every signed tree head,
        stored subtree hash and external checkpoint (already checked to be signed by this
        instance's key); prove each withheld value against its commitment. Reports, never
        raises: problems (tampering), and warnings (leaves no signature covers yet, an old head).
        """
        public_key_pem = self.signer().public_key_pem
        with self.database.read() as connection:
            verifier = LogVerifier(
                store.list_tree_heads(connection),
                public_key_pem,
                store.load_stored_nodes(connection),
                checkpoints=tuple(checkpoints),
            )
            for rows in store.iter_leaf_records(connection):
                verifier.add_rows(rows)
        return verifier.finish(self.clock.now(), max_head_age)


def _top(counts: dict[str, int]) -> dict[str, int]:
    """The most frequent entries (at most REFUSALS_LISTED), the rest summed under `others`."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    top = dict(ranked[:REFUSALS_LISTED])
    rest = sum(count for _, count in ranked[REFUSALS_LISTED:])
    if rest:
        top["others"] = rest
    return top


def _refusal_summary(start: int, window_s: int, rows: list[tuple[str, str, str, int]]) -> dict[str, Any]:
    """The details of one window's `audit.refusals` event for one kind."""
    by_reason: dict[str, int] = {}
    by_origin: dict[str, int] = {}
    by_subject: dict[str, int] = {}
    capped = 0
    for reason, origin, subject, count in rows:
        by_reason[reason] = by_reason.get(reason, 0) + count
        if origin == store.OVERFLOW:
            capped += count
            continue
        by_origin[origin] = by_origin.get(origin, 0) + count
        if subject:
            by_subject[subject] = by_subject.get(subject, 0) + count
    return {
        "window_start": isoformat(datetime.fromtimestamp(start, UTC)),
        "window_s": window_s,
        "total": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "origins": len(by_origin),
        "capped": capped,
        "by_origin": _top(by_origin),
        "by_subject": _top(by_subject),
    }
