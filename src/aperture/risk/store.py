"""Risk-assessment tables: suite runs and their checkpointed chunks, evidence, and profile versions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from aperture.core.db import metadata
from aperture.risk.domain import Estimate, Evidence, EvidenceKind, ItemResult, RiskDomain, Safeguard

risk_runs = Table(
    "risk_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("suite", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("inputs", Text, nullable=False),  # JSON: everything needed to replay the run
    Column("items_total", Integer, nullable=False),
    Column("items_done", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("evidence_id", String(36), nullable=True),
)

risk_run_chunks = Table(
    "risk_run_chunks",
    metadata,
    Column("run_id", String(36), ForeignKey("risk_runs.id"), primary_key=True),
    Column("chunk", Integer, primary_key=True, autoincrement=False),
    Column("results", Text, nullable=False),  # JSON list of ItemResult
)

risk_evidence = Table(
    "risk_evidence",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("title", String(500), nullable=False),
    Column("suite", String(64), nullable=True),
    Column("domain", String(32), nullable=True),
    Column("safeguard", String(32), nullable=True),
    Column("headline", Text, nullable=True),
    Column("summary", Text, nullable=False),
    Column("provenance", Text, nullable=False),
    Column("author", String(200), nullable=False),
)

risk_profiles = Table(
    "risk_profiles",
    metadata,
    Column("model_version_id", String(36), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- runs -----------------------------------------------------------------------------


def insert_run(
    connection: Connection,
    run_id: str,
    model_version_id: str,
    suite: str,
    created_at: datetime,
    created_by: str,
    inputs: dict[str, Any],
    items_total: int,
) -> None:
    connection.execute(
        risk_runs.insert().values(
            id=run_id,
            model_version_id=model_version_id,
            suite=suite,
            status="running",
            created_at=created_at,
            created_by=created_by,
            inputs=_dumps(inputs),
            items_total=items_total,
            items_done=0,
        )
    )


def load_run(connection: Connection, run_id: str) -> dict[str, Any] | None:
    row = connection.execute(select(risk_runs).where(risk_runs.c.id == run_id)).mappings().first()
    return _run(row) if row is not None else None


def list_runs(connection: Connection, model_version_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    query = select(risk_runs).order_by(risk_runs.c.created_at.desc(), risk_runs.c.id.desc()).limit(limit)
    if model_version_id is not None:
        query = query.where(risk_runs.c.model_version_id == model_version_id)
    return [_run(row) for row in connection.execute(query).mappings()]


def _run(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["inputs"] = json.loads(data["inputs"])
    return data


def save_chunk(connection: Connection, run_id: str, chunk: int, results: list[ItemResult], items_done: int) -> None:
    """One checkpoint: the chunk's results and the run's progress, in the caller's transaction."""
    connection.execute(
        risk_run_chunks.insert().values(run_id=run_id, chunk=chunk, results=_dumps([r.to_dict() for r in results]))
    )
    connection.execute(update(risk_runs).where(risk_runs.c.id == run_id).values(items_done=items_done))


def load_chunks(connection: Connection, run_id: str) -> dict[int, list[ItemResult]]:
    rows = connection.execute(
        select(risk_run_chunks.c.chunk, risk_run_chunks.c.results)
        .where(risk_run_chunks.c.run_id == run_id)
        .order_by(risk_run_chunks.c.chunk)
    )
    return {chunk: [ItemResult.from_dict(item) for item in json.loads(text)] for chunk, text in rows}


def finish_run(
    connection: Connection, run_id: str, status: str, when: datetime, *, error: str | None, evidence_id: str | None
) -> None:
    connection.execute(
        update(risk_runs)
        .where(risk_runs.c.id == run_id)
        .values(status=status, finished_at=when, error=error, evidence_id=evidence_id)
    )


def mark_running(connection: Connection, run_id: str) -> None:
    connection.execute(update(risk_runs).where(risk_runs.c.id == run_id).values(status="running", error=None))


# --- evidence -------------------------------------------------------------------------


def insert_evidence(connection: Connection, evidence: Evidence) -> None:
    connection.execute(
        risk_evidence.insert().values(
            id=evidence.id,
            model_version_id=evidence.model_version_id,
            kind=evidence.kind.value,
            created_at=evidence.created_at,
            title=evidence.title,
            suite=evidence.suite,
            domain=evidence.domain.value if evidence.domain else None,
            safeguard=evidence.safeguard.value if evidence.safeguard else None,
            headline=_dumps(evidence.headline.to_dict()) if evidence.headline else None,
            summary=_dumps(evidence.summary),
            provenance=_dumps(evidence.provenance),
            author=evidence.author,
        )
    )


def list_evidence(connection: Connection, model_version_id: str) -> list[Evidence]:
    rows = connection.execute(
        select(risk_evidence)
        .where(risk_evidence.c.model_version_id == model_version_id)
        .order_by(risk_evidence.c.created_at, risk_evidence.c.id)
    ).mappings()
    return [_evidence(row) for row in rows]


def _evidence(row: Any) -> Evidence:
    created = row["created_at"]
    return Evidence(
        id=row["id"],
        kind=EvidenceKind(row["kind"]),
        model_version_id=row["model_version_id"],
        created_at=created,
        title=row["title"],
        suite=row["suite"],
        domain=RiskDomain(row["domain"]) if row["domain"] else None,
        safeguard=Safeguard(row["safeguard"]) if row["safeguard"] else None,
        headline=Estimate.from_dict(json.loads(row["headline"])) if row["headline"] else None,
        summary=json.loads(row["summary"]),
        provenance=json.loads(row["provenance"]),
        author=row["author"],
    )


# --- profiles -------------------------------------------------------------------------


def next_profile_version(connection: Connection, model_version_id: str) -> int:
    current = connection.execute(
        select(func.max(risk_profiles.c.version)).where(risk_profiles.c.model_version_id == model_version_id)
    ).scalar()
    return int(current or 0) + 1


def insert_profile(
    connection: Connection, model_version_id: str, version: int, created_at: datetime, payload: dict[str, Any]
) -> None:
    connection.execute(
        risk_profiles.insert().values(
            model_version_id=model_version_id, version=version, created_at=created_at, payload=_dumps(payload)
        )
    )


def load_profile(connection: Connection, model_version_id: str, version: int | None = None) -> dict[str, Any] | None:
    query = select(risk_profiles.c.payload).where(risk_profiles.c.model_version_id == model_version_id)
    if version is None:
        query = query.order_by(risk_profiles.c.version.desc()).limit(1)
    else:
        query = query.where(risk_profiles.c.version == version)
    text = connection.execute(query).scalar()
    return json.loads(text) if text is not None else None


def profile_versions(connection: Connection, model_version_id: str) -> list[tuple[int, datetime]]:
    rows = connection.execute(
        select(risk_profiles.c.version, risk_profiles.c.created_at)
        .where(risk_profiles.c.model_version_id == model_version_id)
        .order_by(risk_profiles.c.version)
    )
    return [(int(v), c) for v, c in rows]
