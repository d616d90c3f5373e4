"""Release tables: the tier each model version is released under (the effect of its latest decision)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, String, Table, select

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
