"""Use cases of the transparency log: append, read, sign tree heads, prove, verify.

Authorization: reading the log, its tree heads and proofs is public (it is a transparency log,
so event details must never hold secrets). Issuing a tree head on demand is an operator action:
the CLI runs it as the local operator, the HTTP adapter requires an administrator. The audit
area sits below `access` (access appends events), so the caller checks live in the adapters
rather than here, where they would make the two areas import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from aperture.audit import store
from aperture.audit.domain import (
    EMPTY_ROOT,
    EVENT_SCHEMA_VERSION,
    AuditEvent,
    ConsistencyProof,
    InclusionProof,
    LogVerifier,
    SignedTreeHead,
    VerificationReport,
    build_signed_tree_head,
    checkpoint_text,
    consistency_ranges,
    details_text,
    event_leaf_hash,
    inclusion_ranges,
    leaf_data_from_fields,
    leaf_hash,
    log_origin,
    verify_consistency,
    verify_inclusion,
)
from aperture.core.clock import Clock, isoformat
from aperture.core.db import Database
from aperture.core.errors import IntegrityFailure, InvalidInput, NotFound
from aperture.core.ids import new_id

MAX_PAGE = 500
_LIMITS = {"actor": 200, "action": 100, "resource": 500}


def _bad_fields(**fields: str) -> InvalidInput:
    name = next(name for name, value in fields.items() if not 0 < len(value) <= _LIMITS[name])
    return InvalidInput(
        f"an audit event's {name} must be 1 to {_LIMITS[name]} characters",
        hint="this is a bug in the caller of AuditLog.append",
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
    ) -> None:
        self.clock = clock
        self._database = database
        self._signer = signer
        self._standalone: store.StandaloneWriter | None = None
        if database is not None and database.is_sqlite:
            self._standalone = store.StandaloneWriter(database.engine)

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
    ) -> AuditEvent:
        """Append one event as the next leaf, inside the caller's open transaction.

        `upper_tier` says the event concerns an upper-tier asset: the fields its action's
        classification marks upper-tier are withheld from the public view of the log."""
        row = self._row(actor, action, resource, details)
        index = store.insert_event(connection, *row)
        return self._event(index, row, details)

    def record(
        self,
        *,
        actor: str,
        action: str,
        resource: str,
        details: dict[str, Any] | None = None,
        upper_tier: bool = False,
    ) -> AuditEvent:
        """Append one event that belongs to no other change, committed on its own.

        For what only needs recording (a verification, an export, an access decision); a state
        change appends its event with `append` in the change's own transaction instead.
        """
        row = self._row(actor, action, resource, details)
        if self._standalone is not None:
            index = self._standalone.insert(row)
        else:
            with self.database.transaction() as connection:
                index = store.insert_event(connection, *row)
        return self._event(index, row, details)

    def _row(
        self, actor: str, action: str, resource: str, details: dict[str, Any] | None
    ) -> tuple[str, str, str, str, str, str, bytes, int]:
        """The stored fields of a new event, in `store.insert_event`'s order; checks them first."""
        if not (0 < len(actor) <= _LIMITS["actor"] and 0 < len(action) <= _LIMITS["action"]) or not (
            0 < len(resource) <= _LIMITS["resource"]
        ):
            raise _bad_fields(actor=actor, action=action, resource=resource)
        try:
            details_json = details_text(details) if details else "{}"
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                f"audit event details must be canonical JSON: {error}",
                hint="use strings, integers, booleans, null, lists and objects (no floats)",
            ) from None
        event_id = new_id()
        occurred_at = isoformat(self.clock.now())
        hashed = leaf_hash(
            leaf_data_from_fields(EVENT_SCHEMA_VERSION, event_id, occurred_at, actor, action, resource, details_json)
        )
        return (event_id, occurred_at, actor, action, resource, details_json, hashed, EVENT_SCHEMA_VERSION)

    @staticmethod
    def _event(
        index: int, row: tuple[str, str, str, str, str, str, bytes, int], details: dict[str, Any] | None
    ) -> AuditEvent:
        event_id, occurred_at, actor, action, resource, _, _, schema_version = row
        return AuditEvent(index, event_id, occurred_at, actor, action, resource, dict(details or {}), schema_version)

    # --- reading --------------------------------------------------------------------------

    def tree_size(self) -> int:
        with self.database.read() as connection:
            return store.tree_size(connection)

    def list_events(self, *, limit: int = 50, before: int | None = None) -> list[AuditEvent]:
        """Newest first, at most `limit` (1..500); `before` pages back (exclusive leaf index)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", hint=f"ask for at most {MAX_PAGE} events a page")
        if before is not None and before < 0:
            raise InvalidInput("before must be a leaf index (0 or more)", hint="omit it for the newest events")
        with self.database.read() as connection:
            return store.list_events(connection, limit=limit, before=before)

    def get_event(self, leaf_index: int) -> AuditEvent:
        with self.database.read() as connection:
            event = store.load_event(connection, leaf_index)
        if event is None:
            raise NotFound(f"no audit event at leaf {leaf_index}", hint="`aperture audit list` shows the events")
        return event

    def find_events(
        self, *, action: str, resources: Sequence[str], after: int = -1, limit: int = 100
    ) -> list[AuditEvent]:
        """Events of one action about any of `resources` after leaf `after`, oldest first (a scan:
        for occasional checks such as a registry verification, not for pages)."""
        with self.database.read() as connection:
            return store.find_events(connection, action=action, resources=list(resources), after=after, limit=limit)

    def checked_event(self, leaf_index: int) -> AuditEvent:
        """The event at `leaf_index`, after checking that its content still hashes to its leaf and
        that the leaf is included in the tree (under the latest signed head when one covers it).
        IntegrityFailure when the event was changed, NotFound when there is no such leaf."""
        proof = self.newest_inclusion_proof(leaf_index)
        if event_leaf_hash(proof.event) != proof.leaf_hash:
            raise IntegrityFailure(
                f"the event at leaf {leaf_index} was changed after it was logged",
                hint="run `aperture audit verify` and restore the database from backup",
            )
        return proof.event

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
        with self.database.read() as connection:
            size = store.tree_size(connection)
            latest = store.latest_tree_head(connection)
        if size == 0 or (latest is not None and latest.tree_size >= size):
            return None
        return self.issue_tree_head()

    # --- proofs ---------------------------------------------------------------------------

    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> InclusionProof:
        """The audit path of one event in the tree of `tree_size` leaves; by default the tree of
        the latest signed head, so the proof can be checked against a signature offline."""
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
            found = store.load_event_and_leaf_hash(connection, leaf_index)
            if found is None:
                raise IntegrityFailure(f"leaf {leaf_index} is missing", hint="run `aperture audit verify`")
            event, stored_leaf = found
            hashes = store.SubtreeHashes(connection)
            path = tuple(hashes.range_hash(start, end) for start, end in inclusion_ranges(leaf_index, size))
            root = head.root_hash if head is not None else hashes.range_hash(0, size)
        if not verify_inclusion(stored_leaf, leaf_index, size, path, root):
            raise IntegrityFailure(
                f"the stored tree no longer leads from leaf {leaf_index} to the root of size {size}",
                hint="run `aperture audit verify` to find what changed",
            )
        return InclusionProof(event, stored_leaf, size, root, path, head)

    def newest_inclusion_proof(self, leaf_index: int) -> InclusionProof:
        """Against the latest signed tree head when it covers the leaf; else against the current
        tree (an event appended since the last head, before the server signs the next one)."""
        with self.database.read() as connection:
            latest = store.latest_tree_head(connection)
            current = store.tree_size(connection)
        size = latest.tree_size if latest is not None and latest.tree_size > leaf_index else current
        return self.inclusion_proof(leaf_index, size)

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

    def verify(self) -> VerificationReport:
        """Recompute the whole tree from the rows and compare it with every signed tree head and
        stored subtree hash. Returns the report; problems are listed, not raised."""
        public_key_pem = self.signer().public_key_pem
        with self.database.read() as connection:
            verifier = LogVerifier(
                store.list_tree_heads(connection), public_key_pem, store.load_stored_nodes(connection)
            )
            for rows in store.iter_leaf_records(connection):
                verifier.add_rows(rows)
        return verifier.finish()
