"""/api/v1/audit/...: the transparency log over HTTP.

Reads are public: events, tree heads and proofs are meant to be checked by anyone (so event
details never hold secrets). Issuing a tree head on demand (POST) needs a key whose holder the
access service lets sign (administrators); the server also issues them periodically on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from aperture.access.domain import Action
from aperture.audit.domain import (
    AuditEvent,
    SignedTreeHead,
    event_json,
    tree_head_json,
)
from aperture.audit.service import MAX_PAGE
from aperture.core.errors import NotFound
from aperture.http_support import SignedIn

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class EventOut(BaseModel):
    leaf_index: int
    event_id: str
    occurred_at: str = Field(description="UTC, e.g. 2026-11-22T10:00:00.000000Z")
    actor: str
    action: str
    resource: str
    details: dict[str, Any]
    schema_version: int
    leaf_hash: str = Field(description="Hex SHA-256(0x00 || leaf data): the Merkle leaf")


class EventPage(BaseModel):
    events: list[EventOut] = Field(description="Newest first.")
    tree_size: int
    next_before: int | None = Field(description="Pass as `before` for the next (older) page; null at the start.")


class TreeHeadOut(BaseModel):
    origin: str
    tree_size: int
    root_hash: str = Field(description="Hex")
    issued_at: str
    key_id: str
    checkpoint: str = Field(description="The C2SP signed-note checkpoint: the exact signed text plus signature.")


class InclusionProofOut(BaseModel):
    type: Literal["aperture.audit.inclusion/v1"]
    leaf_index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str] = Field(description="RFC 9162 audit path, hex, nearest the leaf first.")
    event: EventOut
    tree_head: TreeHeadOut | None = Field(description="The signed head at tree_size, when one was issued.")


class ConsistencyProofOut(BaseModel):
    type: Literal["aperture.audit.consistency/v1"]
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex.")
    first_tree_head: TreeHeadOut | None
    second_tree_head: TreeHeadOut | None


def _event_out(event: AuditEvent) -> EventOut:
    return EventOut(**event_json(event))


def _head_out(head: SignedTreeHead) -> TreeHeadOut:
    return TreeHeadOut(**tree_head_json(head))


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])
    log = services.audit

    @router.get("/events", response_model=EventPage)
    def list_events(
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        before: int | None = Query(None, ge=0, description="Only events with a smaller leaf index."),
    ) -> EventPage:
        events = log.list_events(limit=limit, before=before)
        oldest = events[-1].leaf_index if events else 0
        return EventPage(
            events=[_event_out(e) for e in events],
            tree_size=log.tree_size(),
            next_before=oldest if oldest > 0 else None,
        )

    @router.get("/events/{leaf_index}", response_model=EventOut)
    def get_event(leaf_index: int = Path(ge=0)) -> EventOut:
        return _event_out(log.get_event(leaf_index))

    @router.get("/tree-head", response_model=TreeHeadOut)
    def latest_tree_head() -> TreeHeadOut:
        head = log.latest_tree_head()
        if head is None:
            raise NotFound("no tree head has been signed yet", hint="POST /api/v1/audit/tree-head as an administrator")
        return _head_out(head)

    @router.get("/checkpoint", response_class=PlainTextResponse)
    def latest_checkpoint() -> PlainTextResponse:
        """The latest signed tree head as a bare C2SP checkpoint (text/plain), for note tooling."""
        head = log.latest_tree_head()
        if head is None:
            raise NotFound("no tree head has been signed yet", hint="POST /api/v1/audit/tree-head as an administrator")
        return PlainTextResponse(head.signed_note)

    @router.post("/tree-head", response_model=TreeHeadOut)
    def issue_tree_head(caller: SignedIn) -> TreeHeadOut:
        # The log sits below access (access appends to it), so the decision is asked of the access
        # service here, before the log is called; nothing in this adapter tests a role.
        services.access.require_instance(caller, Action.SIGN_TREE_HEAD)
        return _head_out(log.issue_tree_head())

    @router.get("/proofs/inclusion/{leaf_index}", response_model=InclusionProofOut)
    def inclusion_proof(
        leaf_index: int = Path(ge=0),
        tree_size: int | None = Query(None, ge=1, description="Default: the latest signed tree head."),
    ) -> InclusionProofOut:
        return InclusionProofOut(**log.inclusion_proof(leaf_index, tree_size).to_json())

    @router.get("/proofs/consistency", response_model=ConsistencyProofOut)
    def consistency_proof(
        first: int = Query(..., ge=0),
        second: int | None = Query(None, ge=0, description="Default: the latest signed tree head."),
    ) -> ConsistencyProofOut:
        return ConsistencyProofOut(**log.consistency_proof(first, second).to_json())

    return router
