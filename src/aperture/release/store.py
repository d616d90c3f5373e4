"""Release tables: the tier each version is under, adopted policies, proposals with their votes,
conflicts and challenges, staged plans and re-assessment triggers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, Connection, DateTime, ForeignKey, Integer, String, Table, Text, select

from aperture.core.db import metadata
from aperture.release.domain import Tier

release_tiers = Table(
    "release_tiers",
    metadata,
    Column("model_version_id", String(36), primary_key=True),
    Column("tier", String(16), nullable=False),
    Column("decision_id", String(36), nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
)


def effective_tier(connection: Connection, version_id: str) -> Tier | None:
    row = connection.execute(
        select(release_tiers.c.tier).where(release_tiers.c.model_version_id == version_id)
    ).scalar_one_or_none()
    return Tier(row) if row else None


def put_tier(connection: Connection, version_id: str, tier: Tier, decision_id: str, moment: datetime) -> None:
    values = {"tier": tier.value, "decision_id": decision_id, "effective_at": moment}
    updated = connection.execute(
        release_tiers.update().where(release_tiers.c.model_version_id == version_id).values(**values)
    )
    if updated.rowcount == 0:
        connection.execute(release_tiers.insert().values(model_version_id=version_id, **values))


release_policies = Table(
    "release_policies",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("adopted_at", DateTime(timezone=True), nullable=False),
    Column("adopted_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
)

release_proposals = Table(
    "release_proposals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("reference", String(300), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("rationale", Text, nullable=False),
    Column("proposer", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("quorum", Integer, nullable=False),
    Column("policy_digest", String(64), nullable=False),
    Column("profile_version", Integer, nullable=False),
    Column("decision", Text, nullable=False),  # JSON: the TierDecision the proposal stands on
    Column("stage_id", String(36), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("cooling_off_until", DateTime(timezone=True), nullable=True),
    Column("effective_at", DateTime(timezone=True), nullable=True),
    Column("record", Text, nullable=True),  # JSON: the signed final decision
    Column("signature", String(200), nullable=True),
)

release_votes = Table(
    "release_votes",
    metadata,
    Column("proposal_id", String(36), ForeignKey("release_proposals.id"), primary_key=True),
    Column("member", String(200), primary_key=True),
    Column("approve", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

release_conflicts = Table(
    "release_conflicts",
    metadata,
    Column("proposal_id", String(36), ForeignKey("release_proposals.id"), primary_key=True),
    Column("member", String(200), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

release_challenges = Table(
    "release_challenges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("proposal_id", String(36), ForeignKey("release_proposals.id"), nullable=False, index=True),
    Column("by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

release_stages = Table(
    "release_stages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("plan_proposal_id", String(36), ForeignKey("release_proposals.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("condition", Text, nullable=False),
    Column("status", String(16), nullable=False),  # planned | proposed | done | cancelled
    Column("proposal_id", String(36), nullable=True),
)

release_triggers = Table(
    "release_triggers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # incident | evidence | policy
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
)


# --- policies ---------------------------------------------------------------------------


def insert_policy(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(release_policies.update().values(active=False))
    connection.execute(release_policies.insert().values(**row, active=True))


def active_policy(connection: Connection) -> dict[str, Any] | None:
    row = connection.execute(select(release_policies).where(release_policies.c.active.is_(True))).mappings().first()
    return dict(row) if row else None


def policy_by_digest(connection: Connection, digest: str) -> dict[str, Any] | None:
    row = connection.execute(select(release_policies).where(release_policies.c.digest == digest)).mappings().first()
    return dict(row) if row else None


def list_policies(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(release_policies).order_by(release_policies.c.adopted_at.desc()))
    return [dict(row) for row in rows.mappings()]


# --- proposals, votes, conflicts, challenges ---------------------------------------------


def insert_proposal(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(release_proposals.insert().values(**row))


def update_proposal(connection: Connection, proposal_id: str, **values: Any) -> None:
    connection.execute(release_proposals.update().where(release_proposals.c.id == proposal_id).values(**values))


def load_proposal(connection: Connection, proposal_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    query = select(release_proposals).where(release_proposals.c.id == proposal_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    return _proposal(row) if row else None


def list_proposals(connection: Connection, version_id: str | None = None) -> list[dict[str, Any]]:
    query = select(release_proposals).order_by(release_proposals.c.created_at.desc(), release_proposals.c.id)
    if version_id is not None:
        query = query.where(release_proposals.c.model_version_id == version_id)
    return [_proposal(row) for row in connection.execute(query).mappings()]


def _proposal(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["decision"] = json.loads(out["decision"])
    out["record"] = json.loads(out["record"]) if out["record"] else None
    return out


def insert_vote(
    connection: Connection, proposal_id: str, member: str, approve: bool, reason: str, at: datetime
) -> None:
    connection.execute(
        release_votes.insert().values(proposal_id=proposal_id, member=member, approve=approve, reason=reason, at=at)
    )


def votes(connection: Connection, proposal_id: str) -> list[dict[str, Any]]:
    query = select(release_votes).where(release_votes.c.proposal_id == proposal_id).order_by(release_votes.c.at)
    return [dict(row) for row in connection.execute(query).mappings()]


def insert_conflict(connection: Connection, proposal_id: str, member: str, reason: str, at: datetime) -> None:
    connection.execute(release_conflicts.insert().values(proposal_id=proposal_id, member=member, reason=reason, at=at))


def conflicts(connection: Connection, proposal_id: str) -> list[dict[str, Any]]:
    query = select(release_conflicts).where(release_conflicts.c.proposal_id == proposal_id)
    return [dict(row) for row in connection.execute(query).mappings()]


def insert_challenge(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(release_challenges.insert().values(**row))


def challenges(connection: Connection, proposal_id: str) -> list[dict[str, Any]]:
    query = select(release_challenges).where(release_challenges.c.proposal_id == proposal_id)
    return [dict(row) for row in connection.execute(query).mappings()]


def effective_proposal(connection: Connection, version_id: str) -> dict[str, Any] | None:
    decision_id = connection.execute(
        select(release_tiers.c.decision_id).where(release_tiers.c.model_version_id == version_id)
    ).scalar_one_or_none()
    return load_proposal(connection, decision_id) if decision_id else None


# --- stages and triggers -------------------------------------------------------------------


def insert_stage(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(release_stages.insert().values(**row))


def update_stage(connection: Connection, stage_id: str, **values: Any) -> None:
    connection.execute(release_stages.update().where(release_stages.c.id == stage_id).values(**values))


def load_stage(connection: Connection, stage_id: str) -> dict[str, Any] | None:
    row = connection.execute(select(release_stages).where(release_stages.c.id == stage_id)).mappings().first()
    return dict(row) if row else None


def stages(connection: Connection, version_id: str | None = None) -> list[dict[str, Any]]:
    query = select(release_stages).order_by(release_stages.c.due_at, release_stages.c.position)
    if version_id is not None:
        query = query.where(release_stages.c.model_version_id == version_id)
    return [dict(row) for row in connection.execute(query).mappings()]


def insert_trigger(connection: Connection, row: dict[str, Any]) -> None:
    connection.execute(release_triggers.insert().values(**row))


def triggers(connection: Connection, version_id: str) -> list[dict[str, Any]]:
    query = select(release_triggers).where(release_triggers.c.model_version_id == version_id)
    return [dict(row) for row in connection.execute(query.order_by(release_triggers.c.at)).mappings()]


def tier_rows(connection: Connection) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(select(release_tiers)).mappings()]
