"""/api/v1/audit/...: the transparency log over HTTP, and the instance's public keys at
/.well-known/aperture/keys.json.

Reads are public: events, tree heads and proofs are meant to be checked by anyone. Each event is
served in the caller's view: the public view (what its leaf holds: public fields in clear,
withheld ones as commitments) to everyone, plus the withheld values with their salts to callers
the access service allows (`aperture.audit.views`). Issuing a tree head on demand (POST) needs an
administrator key; the server also issues them periodically on its own.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from aperture.access.domain import Action
from aperture.audit.domain import (
    NOTE_ED25519,
    SignedTreeHead,
    ed25519_raw_public_key,
    log_origin,
    note_key_hash,
    tree_head_json,
)
from aperture.audit.service import MAX_PAGE
from aperture.core.errors import NotFound
from aperture.http_support import SignedIn, Visitor

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class EventOut(BaseModel):
    leaf_index: int
    event_id: str
    occurred_at: str = Field(description="UTC, e.g. 2026-11-22T10:00:00.000000Z")
    action: str
    actor: Any = Field(description='The actor, or a withheld marker {"withheld": "internal", "sha256": "..."}.')
    resource: Any = Field(description="The resource, or a withheld marker.")
    details: dict[str, Any] = Field(description="Public details in clear, withheld ones as markers.")
    schema_version: int = Field(description="2: withheld fields as salted commitments; 1: older events.")
    leaf_hash: str = Field(description="Hex SHA-256(0x00 || leaf data): the Merkle leaf")
    withheld: dict[str, str] | None = Field(
        default=None,
        description="Version 2, when fields are withheld: the leaf's commitments, {label: hex SHA-256}.",
    )
    disclosed: dict[str, Any] | None = Field(
        default=None,
        description="Private view only: {label: {salt, fields: {path: value}}} for each label the caller may read.",
    )

    @model_serializer(mode="wrap")
    def _as_shown(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The public view is exactly the leaf's content: no key that the leaf does not hold.
        body: dict[str, Any] = handler(self)
        for name in ("withheld", "disclosed"):
            if body.get(name) is None:
                body.pop(name, None)
        return body


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


def _head_out(head: SignedTreeHead) -> TreeHeadOut:
    return TreeHeadOut(**tree_head_json(head))


# Leaf indexes and tree sizes are 64-bit signed integers in the database: a larger number is refused
# as invalid input, not sent to it.
MAX_INDEX = 2**63 - 1


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])
    log = services.audit

    @router.get("/events", response_model=EventPage)
    def list_events(
        caller: Visitor,
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        before: int | None = Query(None, ge=0, le=MAX_INDEX, description="Only events with a smaller leaf index."),
        action: str | None = Query(None, max_length=100, description="Only events with this action."),
        resource: str | None = Query(
            None, max_length=500, description="Only events whose (public) resource is this, e.g. model:NAME:VERSION."
        ),
    ) -> EventPage:
        events = services.audit_views.events(caller, limit=limit, before=before, action=action, resource=resource)
        oldest = events[-1]["leaf_index"] if events else 0
        return EventPage(
            events=[EventOut(**e) for e in events],
            tree_size=log.tree_size(),
            next_before=oldest if oldest > 0 else None,
        )

    @router.get("/events/{leaf_index}", response_model=EventOut)
    def get_event(caller: Visitor, leaf_index: int = Path(ge=0, le=MAX_INDEX)) -> EventOut:
        return EventOut(**services.audit_views.event(caller, leaf_index))

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
        caller: Visitor,
        leaf_index: int = Path(ge=0, le=MAX_INDEX),
        tree_size: int | None = Query(None, ge=1, le=MAX_INDEX, description="Default: the latest signed tree head."),
    ) -> InclusionProofOut:
        return InclusionProofOut(**services.audit_views.inclusion_proof(caller, leaf_index, tree_size).to_json())

    @router.get("/proofs/consistency", response_model=ConsistencyProofOut)
    def consistency_proof(
        first: int = Query(..., ge=0, le=MAX_INDEX),
        second: int | None = Query(None, ge=0, le=MAX_INDEX, description="Default: the latest signed tree head."),
    ) -> ConsistencyProofOut:
        return ConsistencyProofOut(**log.consistency_proof(first, second).to_json())

    return router


class PublicKeyOut(BaseModel):
    name: str = Field(description="instance (signs tree heads and decisions) or artifacts (signs model manifests)")
    key_id: str = Field(description="The first 16 hex digits of SHA-256 of the key's DER SubjectPublicKeyInfo.")
    algorithm: str
    signs: list[str]
    public_key_pem: str
    log_origin: str | None = Field(default=None, description="The log's name on its signed checkpoints.")
    note_verifier_key: str | None = Field(
        default=None, description="The key in signed-note verifier form: <name>+<key hash hex>+<base64(0x01 || key)>."
    )
    model_signing_hint: str | None = Field(default=None, description="The key hint inside model_signing bundles.")


class PublicKeysOut(BaseModel):
    keys: list[PublicKeyOut]
    checkpoint_url: str = Field(description="The latest signed tree head (a C2SP signed note).")
    documentation: str


def public_keys(services: Services) -> PublicKeysOut:
    """Both public keys of the instance, with what each signs and how to check it."""
    from aperture.vault.domain import ecdsa_hash, public_key_hint

    keys = services.keys
    origin = log_origin(keys.key_id)
    raw = ed25519_raw_public_key(keys.public_key_pem)
    encoded = base64.b64encode(NOTE_ED25519 + raw).decode("ascii")
    note_key = f"{origin}+{note_key_hash(origin, raw).hex()}+{encoded}"
    artifact_key = serialization.load_pem_public_key(keys.artifact_public_key_pem.encode("ascii"))
    assert isinstance(artifact_key, ec.EllipticCurvePublicKey)  # model_signing verifies EC keys only
    digest = ecdsa_hash(artifact_key).name.upper().replace("SHA", "SHA-")
    algorithm = f"ECDSA P-{artifact_key.curve.key_size} {digest}"
    return PublicKeysOut(
        keys=[
            PublicKeyOut(
                name="instance",
                key_id=keys.key_id,
                algorithm="Ed25519",
                signs=["transparency-log tree heads (C2SP checkpoints)", "release decisions", "release policies"],
                public_key_pem=keys.public_key_pem,
                log_origin=origin,
                note_verifier_key=note_key,
            ),
            PublicKeyOut(
                name="artifacts",
                key_id=keys.artifact_key_id,
                algorithm=algorithm,
                signs=["model manifests (OpenSSF model_signing bundles)"],
                public_key_pem=keys.artifact_public_key_pem,
                model_signing_hint=public_key_hint(artifact_key),
            ),
        ],
        checkpoint_url="/api/v1/audit/checkpoint",
        documentation="docs/audit.md (Verifying a release from public material)",
    )


def build_well_known_router(services: Services) -> APIRouter:
    """Routes at the site's root that tools look for by name."""
    router = APIRouter(tags=["audit"])

    @router.get("/.well-known/aperture/keys.json", response_model=PublicKeysOut, response_model_exclude_none=True)
    def keys() -> PublicKeysOut:
        """The instance's public keys: everything needed to check what it signs (no key needed)."""
        return public_keys(services)

    return router
