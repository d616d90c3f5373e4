"""Licensing tables: applications, licences, receivables, traceable copies, download tokens, the
sealed master secret, trace reports and diffusion records. Rows never leave this file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    LargeBinary,
    String,
    Table,
    Text,
    select,
    update,
)

from aperture.core.db import metadata
from aperture.licensing.domain import (
    Answer,
    Application,
    ApplicationStatus,
    Copy,
    CopyFile,
    Funding,
    Licence,
    LicenceState,
    Outcome,
    Ownership,
    Proposal,
    Receivable,
    Schedule,
    ScreeningAnswer,
    SecurityPosture,
    Terms,
)

licensing_applications = Table(
    "licensing_applications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("organisation", String(63), nullable=False, index=True),
    Column("applicant", String(63), nullable=False),
    Column("model_version_id", String(36), nullable=False),
    Column("status", String(32), nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
)

licensing_licences = Table(
    "licensing_licences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("application_id", String(36), nullable=True),
    Column("organisation", String(63), nullable=False, index=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
)

licensing_receivables = Table(
    "licensing_receivables",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("licence_id", String(36), nullable=False, index=True),
    Column("organisation", String(63), nullable=False),
    Column("due_on", Date, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

licensing_copies = Table(
    "licensing_copies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("licence_id", String(36), nullable=False, index=True),
    Column("organisation", String(63), nullable=False),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("commitment", String(64), nullable=False),
    Column("self_test_z", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
)

licensing_tokens = Table(
    "licensing_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("copy_id", String(36), nullable=False, index=True),
    Column("principal", String(63), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
)

licensing_secrets = Table(
    "licensing_secrets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("keyring_id", String(32), nullable=False),
    Column("artifact_id", String(36), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

licensing_traces = Table(
    "licensing_traces",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("report", Text, nullable=False),
    Column("signature", String(200), nullable=False),
)

licensing_diffusions = Table(
    "licensing_diffusions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_version_id", String(36), nullable=False, index=True),
    Column("target", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# --- applications -----------------------------------------------------------------------------


def _application_body(application: Application) -> str:
    body: dict[str, Any] = {
        "model": application.model,
        "intended_use": application.intended_use,
        "fields_of_use": list(application.fields_of_use),
        "territories": list(application.territories),
        "posture": {
            "claimed_level": application.posture.claimed_level,
            "certifications": list(application.posture.certifications),
            "incidents": application.posture.incidents,
        },
        "ownership": {"parent": application.ownership.parent, "non_eu_control": application.ownership.non_eu_control},
        "funding": application.funding.as_dict(),
        "term_months": application.term_months,
        "upper_tier": application.upper_tier,
        "screening": [
            {
                "question": a.question,
                "answer": a.answer.value,
                "note": a.note,
                "evidence": list(a.evidence),
                "by": a.by,
                "at": a.at.isoformat(),
            }
            for a in application.screening
        ],
        "proposal": None
        if application.proposal is None
        else {
            "outcome": application.proposal.outcome.value,
            "reasons": application.proposal.reasons,
            "by": application.proposal.by,
            "at": application.proposal.at.isoformat(),
        },
        "decided_by": list(application.decided_by),
        "reasons": application.reasons,
        "responses": list(application.responses),
    }
    return json.dumps(body)


def _funding(data: dict[str, Any]) -> Funding:
    return Funding(int(data["amount_minor"]), data["currency"], Schedule(data["schedule"]))


def _application(row: Any) -> Application:
    body = json.loads(row["body"])
    proposal = body["proposal"]
    submitted, updated = _aware(row["submitted_at"]), _aware(row["updated_at"])
    assert submitted is not None and updated is not None
    return Application(
        id=row["id"],
        organisation=row["organisation"],
        applicant=row["applicant"],
        model_version_id=row["model_version_id"],
        model=body["model"],
        intended_use=body["intended_use"],
        fields_of_use=tuple(body["fields_of_use"]),
        territories=tuple(body["territories"]),
        posture=SecurityPosture(
            body["posture"]["claimed_level"], tuple(body["posture"]["certifications"]), body["posture"]["incidents"]
        ),
        ownership=Ownership(body["ownership"]["parent"], body["ownership"]["non_eu_control"]),
        funding=_funding(body["funding"]),
        term_months=body["term_months"],
        status=ApplicationStatus(row["status"]),
        submitted_at=submitted,
        updated_at=updated,
        upper_tier=body["upper_tier"],
        screening=tuple(
            ScreeningAnswer(
                a["question"],
                Answer(a["answer"]),
                a["note"],
                tuple(a["evidence"]),
                a["by"],
                datetime.fromisoformat(a["at"]),
            )
            for a in body["screening"]
        ),
        proposal=None
        if proposal is None
        else Proposal(
            Outcome(proposal["outcome"]), proposal["reasons"], proposal["by"], datetime.fromisoformat(proposal["at"])
        ),
        decided_by=tuple(body["decided_by"]),
        reasons=body["reasons"],
        responses=tuple(body["responses"]),
    )


def insert_application(connection: Connection, application: Application) -> None:
    connection.execute(
        licensing_applications.insert().values(
            id=application.id,
            organisation=application.organisation,
            applicant=application.applicant,
            model_version_id=application.model_version_id,
            status=application.status.value,
            submitted_at=application.submitted_at,
            updated_at=application.updated_at,
            body=_application_body(application),
        )
    )


def update_application(connection: Connection, before: Application, after: Application) -> bool:
    """Optimistic: only when the row is still as `before` left it (a concurrent decision loses)."""
    table = licensing_applications
    result = connection.execute(
        update(table)
        .where(table.c.id == before.id, table.c.updated_at == before.updated_at, table.c.status == before.status.value)
        .values(status=after.status.value, updated_at=after.updated_at, body=_application_body(after))
    )
    return result.rowcount == 1


def load_application(connection: Connection, application_id: str) -> Application | None:
    row = connection.execute(select(licensing_applications).where(licensing_applications.c.id == application_id))
    found = row.mappings().first()
    return None if found is None else _application(found)


def list_applications(
    connection: Connection, *, organisation: str | None = None, statuses: tuple[str, ...] | None = None
) -> list[Application]:
    query = select(licensing_applications).order_by(licensing_applications.c.submitted_at.desc())
    if organisation is not None:
        query = query.where(licensing_applications.c.organisation == organisation)
    if statuses:
        query = query.where(licensing_applications.c.status.in_(statuses))
    return [_application(row) for row in connection.execute(query).mappings()]


# --- licences ---------------------------------------------------------------------------------


def _licence_body(licence: Licence) -> str:
    return json.dumps(
        {"terms": licence.terms.as_dict(), "model_version_id": licence.terms.model_version_id, "reason": licence.reason}
    )


def _licence(row: Any) -> Licence:
    body = json.loads(row["body"])
    terms = body["terms"]
    created, updated = _aware(row["created_at"]), _aware(row["updated_at"])
    assert created is not None and updated is not None
    return Licence(
        id=row["id"],
        application_id=row["application_id"],
        terms=Terms(
            model_version_id=body["model_version_id"],
            model=terms["model"],
            organisation=terms["organisation"],
            fields_of_use=tuple(terms["fields_of_use"]),
            territories=tuple(terms["territories"]),
            starts_on=date.fromisoformat(terms["starts_on"]),
            ends_on=date.fromisoformat(terms["ends_on"]),
            fee=_funding(terms["fee"]),
            minimum_security_level=int(terms["minimum_security_level"].removeprefix("SL")),
            sublicensing=terms["sublicensing"],
            text_version=terms["text_version"],
            text_sha256=terms["text_sha256"],
        ),
        state=LicenceState(row["state"]),
        created_at=created,
        updated_at=updated,
        reason=body.get("reason", ""),
    )


def insert_licence(connection: Connection, licence: Licence) -> None:
    connection.execute(
        licensing_licences.insert().values(
            id=licence.id,
            application_id=licence.application_id,
            organisation=licence.terms.organisation,
            model_version_id=licence.terms.model_version_id,
            state=licence.state.value,
            starts_on=licence.terms.starts_on,
            ends_on=licence.terms.ends_on,
            created_at=licence.created_at,
            updated_at=licence.updated_at,
            body=_licence_body(licence),
        )
    )


def update_licence(connection: Connection, before: Licence, after: Licence) -> bool:
    table = licensing_licences
    result = connection.execute(
        update(table)
        .where(table.c.id == before.id, table.c.state == before.state.value)
        .values(state=after.state.value, updated_at=after.updated_at, body=_licence_body(after))
    )
    return result.rowcount == 1


def load_licence(connection: Connection, licence_id: str) -> Licence | None:
    found = (
        connection.execute(select(licensing_licences).where(licensing_licences.c.id == licence_id)).mappings().first()
    )
    return None if found is None else _licence(found)


def list_licences(
    connection: Connection,
    *,
    organisation: str | None = None,
    model_version_id: str | None = None,
    states: tuple[str, ...] | None = None,
) -> list[Licence]:
    table = licensing_licences
    query = select(table).order_by(table.c.created_at.desc())
    if organisation is not None:
        query = query.where(table.c.organisation == organisation)
    if model_version_id is not None:
        query = query.where(table.c.model_version_id == model_version_id)
    if states:
        query = query.where(table.c.state.in_(states))
    return [_licence(row) for row in connection.execute(query).mappings()]


def due_to_expire(connection: Connection, today: date) -> list[Licence]:
    table = licensing_licences
    query = select(table).where(table.c.state.in_(("active", "suspended")), table.c.ends_on <= today)
    return [_licence(row) for row in connection.execute(query).mappings()]


# --- receivables ------------------------------------------------------------------------------


def insert_receivables(connection: Connection, receivables: list[Receivable], now: datetime) -> None:
    for item in receivables:
        connection.execute(
            licensing_receivables.insert().values(
                id=item.id,
                licence_id=item.licence_id,
                organisation=item.organisation,
                due_on=item.due_on,
                amount_minor=item.amount_minor,
                currency=item.currency,
                status=item.status,
                created_at=now,
            )
        )


def cancel_receivables(connection: Connection, licence_id: str, after: date) -> int:
    """Instalments not yet due when a licence ends early are cancelled (never deleted)."""
    table = licensing_receivables
    result = connection.execute(
        update(table)
        .where(table.c.licence_id == licence_id, table.c.due_on > after, table.c.status == "open")
        .values(status="cancelled")
    )
    return result.rowcount


def list_receivables(connection: Connection, licence_id: str | None = None) -> list[Receivable]:
    table = licensing_receivables
    query = select(table).order_by(table.c.due_on, table.c.id)
    if licence_id is not None:
        query = query.where(table.c.licence_id == licence_id)
    return [
        Receivable(
            row["id"],
            row["licence_id"],
            row["organisation"],
            row["due_on"],
            row["amount_minor"],
            row["currency"],
            row["status"],
        )
        for row in connection.execute(query).mappings()
    ]


# --- copies and tokens ------------------------------------------------------------------------


def _copy_body(copy: Copy) -> str:
    return json.dumps(
        {
            "model": copy.model,
            "alpha": copy.alpha,
            "created_by": copy.created_by,
            "files": [
                {"path": f.path, "sha256": f.sha256, "size": f.size, "marked": f.marked, "artifact_id": f.artifact_id}
                for f in copy.files
            ],
        }
    )


def _copy(row: Any) -> Copy:
    body = json.loads(row["body"])
    created = _aware(row["created_at"])
    assert created is not None
    return Copy(
        id=row["id"],
        licence_id=row["licence_id"],
        organisation=row["organisation"],
        model_version_id=row["model_version_id"],
        model=body["model"],
        commitment=row["commitment"],
        alpha=body["alpha"],
        self_test_z=row["self_test_z"],
        files=tuple(CopyFile(f["path"], f["sha256"], f["size"], f["marked"], f["artifact_id"]) for f in body["files"]),
        created_at=created,
        created_by=body["created_by"],
    )


def insert_copy(connection: Connection, copy: Copy) -> None:
    connection.execute(
        licensing_copies.insert().values(
            id=copy.id,
            licence_id=copy.licence_id,
            organisation=copy.organisation,
            model_version_id=copy.model_version_id,
            commitment=copy.commitment,
            self_test_z=copy.self_test_z,
            created_at=copy.created_at,
            body=_copy_body(copy),
        )
    )


def load_copy(connection: Connection, copy_id: str) -> Copy | None:
    found = connection.execute(select(licensing_copies).where(licensing_copies.c.id == copy_id)).mappings().first()
    return None if found is None else _copy(found)


def list_copies(
    connection: Connection, *, model_version_id: str | None = None, licence_id: str | None = None
) -> list[Copy]:
    table = licensing_copies
    query = select(table).order_by(table.c.created_at)
    if model_version_id is not None:
        query = query.where(table.c.model_version_id == model_version_id)
    if licence_id is not None:
        query = query.where(table.c.licence_id == licence_id)
    return [_copy(row) for row in connection.execute(query).mappings()]


def insert_token(
    connection: Connection, digest: bytes, copy_id: str, principal: str, now: datetime, expires_at: datetime
) -> None:
    connection.execute(
        licensing_tokens.insert().values(
            token_hash=digest, copy_id=copy_id, principal=principal, issued_at=now, expires_at=expires_at
        )
    )


def load_token(connection: Connection, digest: bytes) -> dict[str, Any] | None:
    row = connection.execute(select(licensing_tokens).where(licensing_tokens.c.token_hash == digest)).mappings().first()
    if row is None:
        return None
    return {
        "copy_id": row["copy_id"],
        "principal": row["principal"],
        "expires_at": _aware(row["expires_at"]),
        "used_at": _aware(row["used_at"]),
        "cancelled_at": _aware(row["cancelled_at"]),
    }


def use_token(connection: Connection, digest: bytes, now: datetime) -> bool:
    """Mark a token used, once: True for the one request that wins."""
    table = licensing_tokens
    result = connection.execute(
        update(table)
        .where(
            table.c.token_hash == digest,
            table.c.used_at.is_(None),
            table.c.cancelled_at.is_(None),
            table.c.expires_at > now,
        )
        .values(used_at=now)
    )
    return result.rowcount == 1


def cancel_tokens(connection: Connection, copy_ids: list[str], now: datetime) -> int:
    if not copy_ids:
        return 0
    table = licensing_tokens
    result = connection.execute(
        update(table)
        .where(
            table.c.copy_id.in_(copy_ids),
            table.c.used_at.is_(None),
            table.c.cancelled_at.is_(None),
            table.c.expires_at > now,
        )
        .values(cancelled_at=now)
    )
    return result.rowcount


# --- the master secret, traces, diffusion ------------------------------------------------------


def load_secret(connection: Connection, name: str) -> tuple[str, str, bytes] | None:
    row = connection.execute(select(licensing_secrets).where(licensing_secrets.c.name == name)).mappings().first()
    return None if row is None else (row["keyring_id"], row["artifact_id"], bytes(row["sealed"]))


def insert_secret(
    connection: Connection, name: str, keyring_id: str, artifact_id: str, sealed: bytes, now: datetime
) -> None:
    connection.execute(
        licensing_secrets.insert().values(
            name=name, keyring_id=keyring_id, artifact_id=artifact_id, sealed=sealed, created_at=now
        )
    )


def insert_trace(
    connection: Connection, id: str, now: datetime, actor: str, digest: str, report: str, signature: str
) -> None:
    connection.execute(
        licensing_traces.insert().values(
            id=id, created_at=now, created_by=actor, digest=digest, report=report, signature=signature
        )
    )


def load_trace(connection: Connection, trace_id: str) -> tuple[str, str] | None:
    row = connection.execute(select(licensing_traces).where(licensing_traces.c.id == trace_id)).mappings().first()
    return None if row is None else (row["report"], row["signature"])


def list_traces(connection: Connection) -> list[dict[str, Any]]:
    table = licensing_traces
    query = select(table.c.id, table.c.created_at, table.c.created_by, table.c.digest).order_by(
        table.c.created_at.desc()
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def insert_diffusion(
    connection: Connection,
    id: str,
    model_version_id: str,
    target: str,
    status: str,
    now: datetime,
    body: dict[str, Any],
) -> None:
    connection.execute(
        licensing_diffusions.insert().values(
            id=id,
            model_version_id=model_version_id,
            target=target,
            status=status,
            created_at=now,
            body=json.dumps(body),
        )
    )


def list_diffusions(connection: Connection) -> list[dict[str, Any]]:
    table = licensing_diffusions
    rows = connection.execute(select(table).order_by(table.c.created_at.desc())).mappings()
    return [
        {
            "id": row["id"],
            "model_version_id": row["model_version_id"],
            "target": row["target"],
            "status": row["status"],
            "created_at": _aware(row["created_at"]),
            **json.loads(row["body"]),
        }
        for row in rows
    ]
