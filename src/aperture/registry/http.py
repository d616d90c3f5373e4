"""/api/v1/models: the registry over HTTP (read, verify, fetch a signature). Mounted by web/app.py.

Handlers are plain `def`: they block on the database and on re-hashing, so FastAPI runs them in
its thread pool. Every route needs an API key (`SignedIn`); the registry's use cases decide the rest (verifying needs a
role that answers for integrity).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from aperture.http_support import SignedIn, Visitor
from aperture.registry.domain import ArtifactFile, Model, ModelSummary, ModelVersion
from aperture.registry.service import VerificationReport

if TYPE_CHECKING:
    from aperture.bootstrap import Services


class ModelSummaryOut(BaseModel):
    name: str
    created_at: datetime
    created_by: str
    versions: list[str] = Field(description="Version strings in registration order.")
    latest_version: str | None


class ArtifactFileOut(BaseModel):
    path: str
    size: int
    sha256: str
    kind: str


class LineageOut(BaseModel):
    base_model: str | None = Field(description="A registered NAME:VERSION, or an external model's name.")
    external: bool
    base_licence: str | None = Field(description="Upstream licence of an external base model (SPDX).")


class VersionOut(BaseModel):
    id: str
    name: str
    version: str
    reference: str
    registered_at: datetime
    registered_by: str
    format: str
    architecture: str | None
    model_type: str | None
    parameter_count: int
    tensor_count: int
    dtypes: list[str]
    total_bytes: int
    licence: str | None
    training_flop: str | None = Field(description="Training compute in FLOP, an exact integer as text.")
    modalities: list[str]
    intended_use: str | None
    description: str | None
    data_summary: str | None
    lineage: LineageOut
    manifest_digest: str = Field(description="model_signing subject digest over the file digests.")
    signing_key_id: str
    facts_digest: str | None = Field(
        description="SHA-256 of the signed facts (aperture-facts.json); null: registered before facts were signed."
    )
    files: list[ArtifactFileOut]


class ModelOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    created_by: str
    versions: list[VersionOut]


class VerificationOut(BaseModel):
    reference: str
    ok: bool
    files_checked: int
    bytes_checked: int
    manifest_digest: str
    signing_key_id: str
    facts: str = Field(description="`signed`, or `unsigned` for a version registered before facts were signed.")
    facts_digest: str | None
    facts_event: int | None = Field(description="The log leaf whose record of the facts' digest was checked.")
    notes: list[str]


def _file_out(file: ArtifactFile) -> ArtifactFileOut:
    return ArtifactFileOut(path=file.path, size=file.size, sha256=file.sha256, kind=file.kind.value)


def version_out(version: ModelVersion) -> VersionOut:
    facts = version.facts
    return VersionOut(
        id=version.id,
        name=version.model_name,
        version=version.version,
        reference=version.reference,
        registered_at=version.registered_at,
        registered_by=version.registered_by,
        format=version.format.value,
        architecture=version.architecture,
        model_type=version.model_type,
        parameter_count=version.parameter_count,
        tensor_count=version.tensor_count,
        dtypes=list(version.dtypes),
        total_bytes=version.total_bytes,
        licence=facts.licence,
        training_flop=None if facts.training_flop is None else str(facts.training_flop),
        modalities=[m.value for m in facts.modalities],
        intended_use=facts.intended_use,
        description=facts.description,
        data_summary=facts.data_summary,
        lineage=LineageOut(
            base_model=facts.lineage.base_model,
            external=facts.lineage.external,
            base_licence=facts.lineage.base_licence,
        ),
        manifest_digest=version.manifest_digest,
        signing_key_id=version.signing_key_id,
        facts_digest=version.facts_digest,
        files=[_file_out(f) for f in version.files],
    )


def _summary_out(model: ModelSummary) -> ModelSummaryOut:
    return ModelSummaryOut(
        name=model.name,
        created_at=model.created_at,
        created_by=model.created_by,
        versions=list(model.versions),
        latest_version=model.latest_version,
    )


def _model_out(model: Model) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        created_at=model.created_at,
        created_by=model.created_by,
        versions=[version_out(v) for v in model.versions],
    )


def _verification_out(report: VerificationReport) -> VerificationOut:
    return VerificationOut(
        reference=report.reference,
        ok=True,
        files_checked=report.files_checked,
        bytes_checked=report.bytes_checked,
        manifest_digest=report.manifest_digest,
        signing_key_id=report.signing_key_id,
        facts=report.facts.value,
        facts_digest=report.facts_digest,
        facts_event=report.facts_event,
        notes=list(report.notes),
    )


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["registry"])
    registry = services.registry

    @router.get("/models", response_model=list[ModelSummaryOut], summary="List registered models")
    def list_models(caller: SignedIn) -> list[ModelSummaryOut]:
        return [_summary_out(m) for m in registry.list_models(caller)]

    @router.get("/models/{name}", response_model=ModelOut, summary="A model with all its versions")
    def get_model(name: str, caller: SignedIn) -> ModelOut:
        return _model_out(registry.get_model(name, caller))

    @router.get("/models/{name}/versions/{version}", response_model=VersionOut, summary="One version")
    def get_version(name: str, version: str, caller: SignedIn) -> VersionOut:
        return version_out(registry.get_version(name, version, caller))

    @router.get(
        "/models/{name}/versions/{version}/signature",
        summary="The version's model_signing bundle (save it as model.sig beside an export)",
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}},
    )
    def get_signature(name: str, version: str, caller: Visitor) -> Response:
        # Public for what the caller may see (SL1 for anyone): `aperture verify-release` checks it.
        found = registry.get_version(name, version, caller)
        return Response(found.signature, media_type="application/json")

    @router.post(
        "/models/{name}/versions/{version}/verify",
        response_model=VerificationOut,
        summary="Check the signature, its binding to the version, the signed facts, and re-hash every file",
    )
    def verify_version(name: str, version: str, caller: SignedIn) -> VerificationOut:
        return _verification_out(registry.verify_version(name, version, caller=caller))

    return router
