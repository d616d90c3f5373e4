"""Use cases of the artifact vault: stage files, sign manifests, keep references, check blobs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection

from aperture.core.db import Database
from aperture.core.errors import Conflict, IntegrityFailure
from aperture.vault import signing, store
from aperture.vault.artifacts import ArtifactStore, Progress, SourceFile, StoredBlob
from aperture.vault.domain import SignedManifest, root_digest, verify_bundle
from aperture.vault.keys import InstanceKeys, load_instance_keys

ARTIFACT_PUBLIC_KEY_FILE = "artifacts-p256.pub"


@dataclass(frozen=True, slots=True)
class SignedBundle:
    bundle_json: str
    key_id: str
    root_digest: str


@dataclass
class Staging:
    """Blobs a use case stored; if it fails, the ones nobody references are removed again."""

    created: list[StoredBlob] = field(default_factory=list)
    stored: list[StoredBlob] = field(default_factory=list)


class VaultService:
    def __init__(self, database: Database, artifacts: ArtifactStore, keys_dir: Path) -> None:
        self.database = database
        self.artifacts = artifacts
        self.keys_dir = keys_dir
        self._keys_lock = threading.Lock()

    @cached_property
    def keys(self) -> InstanceKeys:
        with self._keys_lock:
            return load_instance_keys(self.keys_dir)

    @property
    def public_key_path(self) -> Path:
        return self.keys_dir / ARTIFACT_PUBLIC_KEY_FILE

    @property
    def artifact_public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self.keys.artifact_public_key_pem.encode())
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    # --- staging --------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """Store files inside this block; on an exception, blobs it created that no committed
        record references are deleted (temporary files are always removed by the store)."""
        staged = Staging()
        try:
            yield staged
        except BaseException:
            self.discard_unreferenced([blob.digest for blob in staged.created])
            raise

    def store(
        self, staged: Staging, sources: Sequence[SourceFile], progress: Progress | None = None
    ) -> list[StoredBlob]:
        sink: list[StoredBlob] = []
        try:
            blobs = self.artifacts.store(sources, progress=progress, stored=sink)
        finally:
            staged.created.extend(blob for blob in sink if blob.created)
        staged.stored.extend(blobs)
        return blobs

    def discard_unreferenced(self, digests: Sequence[str]) -> None:
        if not digests:
            return
        with self.artifacts.lock():
            with self.database.read() as connection:
                keep = store.referenced(connection, digests)
            self.artifacts.remove([digest for digest in set(digests) if digest not in keep])

    @contextlib.contextmanager
    def committing(self, blobs: Sequence[StoredBlob]) -> Iterator[None]:
        """Hold the store lock while the references to `blobs` are committed, after checking that
        each is still there (a failed registration running beside this one may have removed a
        blob this one found already stored)."""
        with self.artifacts.lock():
            missing = sorted({blob.digest for blob in blobs if not self.artifacts.has(blob.digest)})
            if missing:
                raise Conflict(
                    f"{len(missing)} stored file(s) were removed by a concurrent failed registration",
                    hint="register again; nothing was recorded",
                )
            yield

    def reference(self, connection: Connection, owner: str, blobs: Sequence[StoredBlob], now: datetime) -> None:
        store.add_references(connection, owner, [(blob.digest, blob.size) for blob in blobs], now)

    # --- signatures -----------------------------------------------------------------------

    def sign(self, model_name: str, entries: Sequence[tuple[str, str]], ignore_paths: Sequence[str]) -> SignedBundle:
        keys = self.keys
        bundle = signing.sign_manifest(keys.artifact_key, model_name, entries, ignore_paths)
        return SignedBundle(bundle, keys.artifact_key_id, root_digest(entries))

    def verify_signature(self, bundle_json: str) -> SignedManifest:
        return verify_bundle(bundle_json, self.artifact_public_key)

    # --- checking and copying blobs -------------------------------------------------------

    def rehash(self, digests: Sequence[str], progress: Progress | None = None) -> dict[str, str | None]:
        return self.artifacts.hash_blobs(digests, progress)

    def copy_out(self, digest: str, destination: Path, progress: Progress | None = None) -> None:
        self.artifacts.copy_out(digest, destination, progress)

    def blob_path(self, digest: str) -> Path:
        """Where a blob lies (read-only): for loading weights in place, without a copy."""
        return self.artifacts.blob_path(digest)

    def source_file(self, path: Path, label: str) -> SourceFile:
        """Plan to store one local file (an attachment)."""
        info = path.stat()
        return SourceFile(path, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, label)

    def require_blob(self, digest: str, label: str) -> None:
        if not self.artifacts.has(digest):
            raise IntegrityFailure(f"the stored file {label} ({digest}) is missing", hint="restore from backup")
