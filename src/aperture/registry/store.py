"""Registry tables: models, versions and their files. Rows never leave this file."""

from __future__ import annotations

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
    PrimaryKeyConstraint,
    RowMapping,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

from aperture.core.db import metadata
from aperture.core.errors import Conflict
from aperture.registry.domain import (
    SCHEMA_VERSION,
    ArtifactFile,
    FileKind,
    Lineage,
    Modality,
    Model,
    ModelSummary,
    ModelVersion,
    VersionFacts,
    WeightFormat,
)

registry_models = Table(
    "registry_models",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
)

registry_versions = Table(
    "registry_versions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model_id", String(36), ForeignKey("registry_models.id"), nullable=False),
    Column("version", String(64), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("registered_by", String(200), nullable=False),
    Column("format", String(20), nullable=False),
    Column("architecture", String(200), nullable=True),
    Column("model_type", String(200), nullable=True),
    Column("parameter_count", BigInteger, nullable=False),
    Column("tensor_count", BigInteger, nullable=False),
    Column("dtypes", String(500), nullable=False),
    Column("total_bytes", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("licence", String(500), nullable=True),
    Column("base_model", String(300), nullable=True),
    Column("base_external", Boolean, nullable=False),
    Column("base_version_id", String(36), ForeignKey("registry_versions.id"), nullable=True),
    Column("base_licence", String(500), nullable=True),
    Column("training_flop", String(48), nullable=True),  # exact integer as text: beyond BIGINT
    Column("modalities", String(200), nullable=False),
    Column("intended_use", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("data_summary", Text, nullable=True),
    Column("manifest_digest", String(64), nullable=False),
    Column("signing_key_id", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    # The signed facts document and the audit leaf that recorded its digest (NULL: registered
    # before facts were signed, revision 0007).
    Column("signed_facts", Text, nullable=True),
    Column("facts_event", BigInteger, nullable=True),
    UniqueConstraint("model_id", "version"),
)

registry_version_files = Table(
    "registry_version_files",
    metadata,
    Column("version_id", String(36), ForeignKey("registry_versions.id"), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("schema_version", Integer, nullable=False),
    PrimaryKeyConstraint("version_id", "path"),
)


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def model_id(connection: Connection, name: str) -> str | None:
    value = connection.execute(select(registry_models.c.id).where(registry_models.c.name == name)).scalar()
    return None if value is None else str(value)


def insert_model(connection: Connection, *, id: str, name: str, created_at: datetime, created_by: str) -> None:
    connection.execute(
        registry_models.insert().values(
            id=id, name=name, created_at=created_at, created_by=created_by, schema_version=SCHEMA_VERSION
        )
    )


def version_id(connection: Connection, name: str, version: str) -> str | None:
    query = (
        select(registry_versions.c.id)
        .join(registry_models, registry_models.c.id == registry_versions.c.model_id)
        .where(registry_models.c.name == name, registry_versions.c.version == version)
    )
    value = connection.execute(query).scalar()
    return None if value is None else str(value)


def insert_version(
    connection: Connection, version: ModelVersion, *, model_id: str, base_version_id: str | None
) -> None:
    facts = version.facts
    connection.execute(
        registry_versions.insert().values(
            id=version.id,
            model_id=model_id,
            version=version.version,
            registered_at=version.registered_at,
            registered_by=version.registered_by,
            format=version.format.value,
            architecture=version.architecture,
            model_type=version.model_type,
            parameter_count=version.parameter_count,
            tensor_count=version.tensor_count,
            dtypes=",".join(version.dtypes),
            total_bytes=version.total_bytes,
            file_count=len(version.files),
            licence=facts.licence,
            base_model=facts.lineage.base_model,
            base_external=facts.lineage.external,
            base_version_id=base_version_id,
            base_licence=facts.lineage.base_licence,
            training_flop=None if facts.training_flop is None else str(facts.training_flop),
            modalities=",".join(m.value for m in facts.modalities),
            intended_use=facts.intended_use,
            description=facts.description,
            data_summary=facts.data_summary,
            manifest_digest=version.manifest_digest,
            signing_key_id=version.signing_key_id,
            signature=version.signature,
            schema_version=version.schema_version,
            signed_facts=version.signed_facts,
            facts_event=version.facts_event,
        )
    )
    connection.execute(
        registry_version_files.insert(),
        [
            {
                "version_id": version.id,
                "path": file.path,
                "size": file.size,
                "sha256": file.sha256,
                "kind": file.kind.value,
                "schema_version": SCHEMA_VERSION,
            }
            for file in version.files
        ],
    )


def set_facts_event(connection: Connection, version_id: str, leaf_index: int) -> None:
    """Record which audit leaf carries the digest of the version's signed facts."""
    query = registry_versions.update().where(registry_versions.c.id == version_id)
    connection.execute(query.values(facts_event=leaf_index))


def replace_signature(
    connection: Connection, version_id: str, *, signature: str, manifest_digest: str, signed_facts: str
) -> None:
    """A version registered before facts were signed gets its facts signed (after review)."""
    query = registry_versions.update().where(
        registry_versions.c.id == version_id, registry_versions.c.signed_facts.is_(None)
    )
    done = connection.execute(
        query.values(signature=signature, manifest_digest=manifest_digest, signed_facts=signed_facts)
    )
    if done.rowcount != 1:
        raise Conflict("the version's facts were signed meanwhile", hint="nothing to do; verify it")


def file_digests_by_version(connection: Connection) -> dict[str, set[str]]:
    """version id -> the SHA-256 of its files."""
    found: dict[str, set[str]] = {}
    query = select(registry_version_files.c.version_id, registry_version_files.c.sha256)
    for version_id, digest in connection.execute(query).all():
        found.setdefault(str(version_id), set()).add(str(digest))
    return found


def all_file_digests(connection: Connection) -> set[str]:
    """The SHA-256 of every file of every version (both tiers)."""
    query = select(registry_version_files.c.sha256).distinct()
    return {str(digest) for digest in connection.execute(query).scalars()}


def _version_query() -> Any:
    return select(registry_versions, registry_models.c.name.label("model_name")).join(
        registry_models, registry_models.c.id == registry_versions.c.model_id
    )


def _files(connection: Connection, version_ids: list[str]) -> dict[str, list[ArtifactFile]]:
    found: dict[str, list[ArtifactFile]] = {vid: [] for vid in version_ids}
    for start in range(0, len(version_ids), 500):
        chunk = version_ids[start : start + 500]
        query = (
            select(registry_version_files)
            .where(registry_version_files.c.version_id.in_(chunk))
            .order_by(registry_version_files.c.version_id, registry_version_files.c.path)
        )
        for row in connection.execute(query).mappings():
            found[row["version_id"]].append(
                ArtifactFile(row["path"], int(row["size"]), row["sha256"], FileKind(row["kind"]))
            )
    return found


def _version(row: RowMapping, files: list[ArtifactFile]) -> ModelVersion:
    facts = VersionFacts(
        licence=row["licence"],
        training_flop=None if row["training_flop"] is None else int(row["training_flop"]),
        modalities=tuple(Modality(m) for m in row["modalities"].split(",") if m),
        intended_use=row["intended_use"],
        description=row["description"],
        data_summary=row["data_summary"],
        lineage=Lineage(
            base_model=row["base_model"],
            external=bool(row["base_external"]),
            base_licence=row["base_licence"],
            base_version_id=row["base_version_id"],
        ),
    )
    return ModelVersion(
        id=row["id"],
        model_name=row["model_name"],
        version=row["version"],
        registered_at=_aware(row["registered_at"]),
        registered_by=row["registered_by"],
        format=WeightFormat(row["format"]),
        architecture=row["architecture"],
        model_type=row["model_type"],
        parameter_count=int(row["parameter_count"]),
        tensor_count=int(row["tensor_count"]),
        dtypes=tuple(d for d in row["dtypes"].split(",") if d),
        total_bytes=int(row["total_bytes"]),
        files=tuple(files),
        facts=facts,
        manifest_digest=row["manifest_digest"],
        signing_key_id=row["signing_key_id"],
        signature=row["signature"],
        schema_version=int(row["schema_version"]),
        signed_facts=row["signed_facts"],
        facts_event=None if row["facts_event"] is None else int(row["facts_event"]),
    )


def load_version(connection: Connection, name: str, version: str) -> ModelVersion | None:
    query = _version_query().where(registry_models.c.name == name, registry_versions.c.version == version)
    row = connection.execute(query).mappings().first()
    if row is None:
        return None
    return _version(row, _files(connection, [row["id"]])[row["id"]])


def load_version_by_id(connection: Connection, version_id: str) -> ModelVersion | None:
    row = connection.execute(_version_query().where(registry_versions.c.id == version_id)).mappings().first()
    if row is None:
        return None
    return _version(row, _files(connection, [row["id"]])[row["id"]])


def load_model(connection: Connection, name: str) -> Model | None:
    model = connection.execute(select(registry_models).where(registry_models.c.name == name)).mappings().first()
    if model is None:
        return None
    query = _version_query().where(registry_versions.c.model_id == model["id"])
    rows = list(
        connection.execute(query.order_by(registry_versions.c.registered_at, registry_versions.c.id)).mappings()
    )
    files = _files(connection, [row["id"] for row in rows])
    return Model(
        id=model["id"],
        name=model["name"],
        created_at=_aware(model["created_at"]),
        created_by=model["created_by"],
        versions=tuple(_version(row, files[row["id"]]) for row in rows),
    )


def list_models(connection: Connection) -> list[ModelSummary]:
    models = list(connection.execute(select(registry_models).order_by(registry_models.c.name)).mappings())
    versions: dict[str, list[str]] = {row["id"]: [] for row in models}
    query = select(registry_versions.c.model_id, registry_versions.c.version).order_by(
        registry_versions.c.registered_at, registry_versions.c.id
    )
    for model_id, version in connection.execute(query).all():
        versions.setdefault(model_id, []).append(version)
    return [
        ModelSummary(
            name=row["name"],
            created_at=_aware(row["created_at"]),
            created_by=row["created_by"],
            versions=tuple(versions[row["id"]]),
        )
        for row in models
    ]


def versions_using_blob(connection: Connection, digest: str) -> list[tuple[str, str, str]]:
    """(model name, version, path) of every recorded file with this digest."""
    query = (
        select(registry_models.c.name, registry_versions.c.version, registry_version_files.c.path)
        .join(registry_versions, registry_versions.c.id == registry_version_files.c.version_id)
        .join(registry_models, registry_models.c.id == registry_versions.c.model_id)
        .where(registry_version_files.c.sha256 == digest)
        .order_by(registry_models.c.name, registry_versions.c.version, registry_version_files.c.path)
    )
    return [(r[0], r[1], r[2]) for r in connection.execute(query).all()]


def version_ids(connection: Connection) -> dict[tuple[str, str], str]:
    """(model name, version) -> version id, for every version."""
    query = select(registry_models.c.name, registry_versions.c.version, registry_versions.c.id).join(
        registry_models, registry_models.c.id == registry_versions.c.model_id
    )
    return {(name, version): str(version_id) for name, version, version_id in connection.execute(query).all()}
