"""Access tables. Rows never leave this file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)

from aperture.access.domain import (
    ApiKey,
    AssetKind,
    AssetRef,
    Classification,
    KeyRequest,
    KeyRequestStatus,
    LoginState,
    Organisation,
    OrganisationKind,
    Principal,
    PrincipalKind,
    Programme,
    Role,
    RuleOfLaw,
    SecurityLevel,
    State,
    StateKind,
    UiSession,
    Vetting,
)
from aperture.core.db import metadata

SCHEMA_VERSION = 1

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(8), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("roles", String(500), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False, default=1),
    Column("scopes", String(500), nullable=True),
    Column("issued_by", Text, nullable=True),
)


def insert_key(connection: Connection, key: ApiKey, secret_hash: bytes) -> None:
    connection.execute(
        api_keys.insert().values(
            scopes=None if key.scopes is None else ",".join(key.scopes),
            issued_by=_csv(key.issued_by),
            key_id=key.key_id,
            name=key.name,
            principal=key.principal,
            roles=",".join(role.value for role in key.roles),
            secret_hash=secret_hash,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            schema_version=1,
        )
    )


def load_key(connection: Connection, key_id: str) -> tuple[ApiKey, bytes] | None:
    row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
    if row is None:
        return None
    return _key(row), bytes(row["secret_hash"])


def list_keys(connection: Connection) -> list[ApiKey]:
    rows = connection.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()
    return [_key(row) for row in rows]


def count_keys(connection: Connection) -> int:
    return len(connection.execute(select(api_keys.c.key_id)).all())


def mark_revoked(connection: Connection, key_id: str, when: datetime) -> None:
    connection.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=when))


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; every stored time is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _key(row: object) -> ApiKey:
    data = dict(row)  # type: ignore[call-overload]
    created = _aware(data["created_at"])
    assert created is not None
    return ApiKey(
        key_id=data["key_id"],
        name=data["name"],
        principal=data["principal"],
        roles=tuple(Role(value) for value in data["roles"].split(",") if value),
        created_at=created,
        expires_at=_aware(data["expires_at"]),
        revoked_at=_aware(data["revoked_at"]),
        scopes=None if data.get("scopes") is None else tuple(s for s in data["scopes"].split(",") if s),
        issued_by=tuple(_split(data.get("issued_by") or "")),
    )


# --- key requests (a key for someone else: requested by one administrator, approved by a second) -----

access_key_requests = Table(
    "access_key_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("roles", String(500), nullable=False),
    Column("scopes", String(500), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("requested_by", String(200), nullable=False),
    Column("requested_with", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("approved_by", String(200), nullable=True),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("key_id", String(8), nullable=True),
    Column("schema_version", Integer, nullable=False),
)


def insert_key_request(connection: Connection, request: KeyRequest) -> None:
    connection.execute(
        access_key_requests.insert().values(
            id=request.id,
            name=request.name,
            principal=request.principal,
            roles=_csv([role.value for role in request.roles]),
            scopes=None if request.scopes is None else _csv(request.scopes),
            expires_at=request.expires_at,
            requested_by=request.requested_by,
            requested_with=_csv(request.requested_with),
            requested_at=request.requested_at,
            status=request.status.value,
            approved_by=None,
            approved_at=None,
            key_id=None,
            schema_version=SCHEMA_VERSION,
        )
    )


def _key_request(row: Any) -> KeyRequest:
    requested = _aware(row["requested_at"])
    assert requested is not None
    return KeyRequest(
        id=row["id"],
        name=row["name"],
        principal=row["principal"],
        roles=tuple(Role(value) for value in _split(row["roles"])),
        scopes=None if row["scopes"] is None else tuple(_split(row["scopes"])),
        expires_at=_aware(row["expires_at"]),
        requested_by=row["requested_by"],
        requested_with=tuple(_split(row["requested_with"])),
        requested_at=requested,
        status=KeyRequestStatus(row["status"]),
        approved_by=row["approved_by"],
        approved_at=_aware(row["approved_at"]),
        key_id=row["key_id"],
    )


def load_key_request(connection: Connection, request_id: str) -> KeyRequest | None:
    table = access_key_requests
    row = connection.execute(select(table).where(table.c.id == request_id)).mappings().first()
    return None if row is None else _key_request(row)


def list_key_requests(connection: Connection) -> list[KeyRequest]:
    table = access_key_requests
    rows = connection.execute(select(table).order_by(table.c.requested_at)).mappings()
    return [_key_request(row) for row in rows]


def approve_key_request(connection: Connection, request_id: str, approver: str, when: datetime, key_id: str) -> bool:
    """Mark a pending request approved; False when it is no longer pending (a concurrent approval)."""
    table = access_key_requests
    updated = connection.execute(
        update(table)
        .where(table.c.id == request_id, table.c.status == KeyRequestStatus.PENDING.value)
        .values(status=KeyRequestStatus.APPROVED.value, approved_by=approver, approved_at=when, key_id=key_id)
    )
    return bool(updated.rowcount)


# --- UI sessions: a row per sign-in, ended by signing out, a password change or disabling ---------

access_sessions = Table(
    "access_sessions",
    metadata,
    Column("id_hash", LargeBinary(32), primary_key=True),
    Column("principal", String(63), nullable=False, index=True),
    Column("epoch", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False),
)


def insert_session(connection: Connection, id_hash: bytes, session: UiSession) -> None:
    connection.execute(
        access_sessions.insert().values(
            id_hash=id_hash,
            principal=session.principal,
            epoch=session.epoch,
            started_at=session.started_at,
            expires_at=session.expires_at,
            ended_at=None,
            schema_version=SCHEMA_VERSION,
        )
    )


def load_session(connection: Connection, id_hash: bytes) -> UiSession | None:
    table = access_sessions
    row = connection.execute(select(table).where(table.c.id_hash == id_hash)).mappings().first()
    if row is None:
        return None
    started, expires = _aware(row["started_at"]), _aware(row["expires_at"])
    assert started is not None and expires is not None
    return UiSession(row["principal"], int(row["epoch"]), started, expires, _aware(row["ended_at"]))


def end_session(connection: Connection, id_hash: bytes, when: datetime) -> bool:
    table = access_sessions
    updated = connection.execute(
        update(table).where(table.c.id_hash == id_hash, table.c.ended_at.is_(None)).values(ended_at=when)
    )
    return bool(updated.rowcount)


def end_sessions_of(connection: Connection, principal: str, when: datetime) -> int:
    table = access_sessions
    updated = connection.execute(
        update(table).where(table.c.principal == principal, table.c.ended_at.is_(None)).values(ended_at=when)
    )
    return int(updated.rowcount)


# --- principals, programmes, classifications --------------------------------------------------

access_states = Table(
    "access_states",
    metadata,
    Column("code", String(2), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("eu", Boolean, nullable=False),
    Column("cyber_assurance", Integer, nullable=False),
    Column("rule_of_law", String(20), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

access_organisations = Table(
    "access_organisations",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(300), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("state", String(2), ForeignKey("access_states.code"), nullable=False),
    Column("parent", String(300), nullable=True),
    Column("foreign_control", String(2), nullable=True),
    Column("schema_version", Integer, nullable=False),
)

access_programmes = Table(
    "access_programmes",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(300), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

access_principals = Table(
    "access_principals",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("display_name", String(300), nullable=False),
    Column("organisation", String(63), ForeignKey("access_organisations.name"), nullable=True),
    Column("clearance", Integer, nullable=False),
    Column("vetting", String(20), nullable=False),
    Column("roles", String(500), nullable=False),
    Column("programmes", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("session_epoch", Integer, nullable=False),
    Column("password_hash", String(200), nullable=True),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("schema_version", Integer, nullable=False),
)

access_classifications = Table(
    "access_classifications",
    metadata,
    Column("asset_kind", String(20), nullable=False),
    Column("asset_id", String(64), nullable=False),
    Column("label", String(300), nullable=False),
    Column("level", Integer, nullable=False),
    Column("programme", String(63), ForeignKey("access_programmes.name"), nullable=True),
    Column("canary", Boolean, nullable=False),
    Column("classified_at", DateTime(timezone=True), nullable=False),
    Column("classified_by", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
    PrimaryKeyConstraint("asset_kind", "asset_id"),
)

access_generation = Table(
    "access_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
)


def _csv(values: Sequence[str]) -> str:
    return ",".join(values)


def _split(text: str) -> list[str]:
    return [value for value in text.split(",") if value]


def bump_generation(connection: Connection) -> None:
    """Every change to what the entity store is built from bumps this counter, in the change's
    transaction, so every process rebuilds its entity store (see AccessService.authorize)."""
    updated = connection.execute(
        update(access_generation)
        .where(access_generation.c.id == 1)
        .values(generation=access_generation.c.generation + 1)
    )
    if updated.rowcount == 0:
        connection.execute(access_generation.insert().values(id=1, generation=1))


def generation(connection: Connection) -> int:
    value = connection.execute(select(access_generation.c.generation).where(access_generation.c.id == 1)).scalar()
    return int(value or 0)


def upsert_state(connection: Connection, state: State) -> None:
    values = {
        "name": state.name,
        "kind": state.kind.value,
        "eu": state.eu,
        "cyber_assurance": int(state.cyber_assurance),
        "rule_of_law": state.rule_of_law.value,
        "schema_version": SCHEMA_VERSION,
    }
    if load_state(connection, state.code) is None:
        connection.execute(access_states.insert().values(code=state.code, **values))
    else:
        connection.execute(update(access_states).where(access_states.c.code == state.code).values(**values))


def _state(row: Any) -> State:
    return State(
        code=row["code"],
        name=row["name"],
        kind=StateKind(row["kind"]),
        eu=bool(row["eu"]),
        cyber_assurance=SecurityLevel(int(row["cyber_assurance"])),
        rule_of_law=RuleOfLaw(row["rule_of_law"]),
    )


def load_state(connection: Connection, code: str) -> State | None:
    row = connection.execute(select(access_states).where(access_states.c.code == code)).mappings().first()
    return None if row is None else _state(row)


def list_states(connection: Connection) -> list[State]:
    return [_state(row) for row in connection.execute(select(access_states).order_by(access_states.c.code)).mappings()]


def upsert_organisation(connection: Connection, organisation: Organisation) -> None:
    values = {
        "title": organisation.title,
        "kind": organisation.kind.value,
        "state": organisation.state,
        "parent": organisation.parent,
        "foreign_control": organisation.foreign_control,
        "schema_version": SCHEMA_VERSION,
    }
    if load_organisation(connection, organisation.name) is None:
        connection.execute(access_organisations.insert().values(name=organisation.name, **values))
    else:
        table = access_organisations
        connection.execute(update(table).where(table.c.name == organisation.name).values(**values))


def _organisation(row: Any) -> Organisation:
    return Organisation(
        name=row["name"],
        title=row["title"],
        kind=OrganisationKind(row["kind"]),
        state=row["state"],
        parent=row["parent"],
        foreign_control=row["foreign_control"],
    )


def load_organisation(connection: Connection, name: str) -> Organisation | None:
    table = access_organisations
    row = connection.execute(select(table).where(table.c.name == name)).mappings().first()
    return None if row is None else _organisation(row)


def list_organisations(connection: Connection) -> list[Organisation]:
    table = access_organisations
    return [_organisation(row) for row in connection.execute(select(table).order_by(table.c.name)).mappings()]


def insert_programme(connection: Connection, programme: Programme) -> None:
    connection.execute(
        access_programmes.insert().values(name=programme.name, title=programme.title, schema_version=SCHEMA_VERSION)
    )


def load_programme(connection: Connection, name: str) -> Programme | None:
    table = access_programmes
    row = connection.execute(select(table).where(table.c.name == name)).mappings().first()
    return None if row is None else Programme(row["name"], row["title"])


def list_programmes(connection: Connection) -> list[Programme]:
    table = access_programmes
    return [
        Programme(r["name"], r["title"]) for r in connection.execute(select(table).order_by(table.c.name)).mappings()
    ]


def _principal_values(principal: Principal) -> dict[str, Any]:
    return {
        "kind": principal.kind.value,
        "display_name": principal.display_name,
        "organisation": principal.organisation,
        "clearance": int(principal.clearance),
        "vetting": principal.vetting.value,
        "roles": _csv([role.value for role in principal.roles]),
        "programmes": _csv(principal.programmes),
        "disabled": principal.disabled,
        "session_epoch": principal.session_epoch,
        "schema_version": SCHEMA_VERSION,
    }


def insert_principal(connection: Connection, principal: Principal) -> None:
    connection.execute(
        access_principals.insert().values(
            name=principal.name,
            created_at=principal.created_at,
            failed_logins=0,
            **_principal_values(principal),
        )
    )


def update_principal(connection: Connection, principal: Principal) -> None:
    table = access_principals
    connection.execute(update(table).where(table.c.name == principal.name).values(**_principal_values(principal)))


def _principal(row: Any) -> Principal:
    created = _aware(row["created_at"])
    assert created is not None
    return Principal(
        name=row["name"],
        kind=PrincipalKind(row["kind"]),
        display_name=row["display_name"],
        organisation=row["organisation"],
        clearance=SecurityLevel(int(row["clearance"])),
        vetting=Vetting(row["vetting"]),
        roles=tuple(Role(value) for value in _split(row["roles"])),
        programmes=tuple(_split(row["programmes"])),
        created_at=created,
        disabled=bool(row["disabled"]),
        session_epoch=int(row["session_epoch"]),
    )


def load_principal(connection: Connection, name: str) -> Principal | None:
    table = access_principals
    row = connection.execute(select(table).where(table.c.name == name)).mappings().first()
    return None if row is None else _principal(row)


def list_principals(connection: Connection) -> list[Principal]:
    table = access_principals
    return [_principal(row) for row in connection.execute(select(table).order_by(table.c.name)).mappings()]


def load_login(connection: Connection, name: str) -> tuple[Principal, str | None, LoginState] | None:
    table = access_principals
    row = connection.execute(select(table).where(table.c.name == name)).mappings().first()
    if row is None:
        return None
    return _principal(row), row["password_hash"], LoginState(int(row["failed_logins"]), _aware(row["locked_until"]))


def save_login_state(connection: Connection, name: str, state: LoginState) -> None:
    table = access_principals
    connection.execute(
        update(table).where(table.c.name == name).values(failed_logins=state.failed, locked_until=state.locked_until)
    )


def set_password_hash(connection: Connection, name: str, password_hash: str) -> None:
    table = access_principals
    connection.execute(
        update(table)
        .where(table.c.name == name)
        .values(
            password_hash=password_hash, session_epoch=table.c.session_epoch + 1, failed_logins=0, locked_until=None
        )
    )


def upsert_classification(connection: Connection, classification: Classification) -> None:
    table = access_classifications
    asset = classification.asset
    connection.execute(delete(table).where(table.c.asset_kind == asset.kind.value, table.c.asset_id == asset.id))
    connection.execute(
        table.insert().values(
            asset_kind=asset.kind.value,
            asset_id=asset.id,
            label=classification.label,
            level=int(classification.level),
            programme=classification.programme,
            canary=classification.canary,
            classified_at=classification.classified_at,
            classified_by=classification.classified_by,
            schema_version=SCHEMA_VERSION,
        )
    )


def _classification(row: Any) -> Classification:
    classified = _aware(row["classified_at"])
    assert classified is not None
    return Classification(
        asset=AssetRef(AssetKind(row["asset_kind"]), row["asset_id"]),
        label=row["label"],
        level=SecurityLevel(int(row["level"])),
        programme=row["programme"],
        canary=bool(row["canary"]),
        classified_at=classified,
        classified_by=row["classified_by"],
    )


def load_classification(connection: Connection, asset: AssetRef) -> Classification | None:
    table = access_classifications
    query = select(table).where(table.c.asset_kind == asset.kind.value, table.c.asset_id == asset.id)
    row = connection.execute(query).mappings().first()
    return None if row is None else _classification(row)


def list_classifications(connection: Connection, *, canaries_only: bool = False) -> list[Classification]:
    table = access_classifications
    query = select(table).order_by(table.c.asset_kind, table.c.asset_id)
    if canaries_only:
        query = query.where(table.c.canary.is_(True))
    return [_classification(row) for row in connection.execute(query).mappings()]
