"""Use cases of the artifact vault: stage files, sign manifests, keep references, check blobs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection

from aperture.core.db import Database
from aperture.core.errors import Conflict, IntegrityFailure, InvalidInput, NotInitialised, Unavailable
from aperture.core.ids import new_id
from aperture.vault import signing, store
from aperture.vault.artifacts import (
    ArtifactStore,
    Progress,
    SourceFile,
    StoredBlob,
    fsync_directory,
    open_new_file,
    open_source,
)
from aperture.vault.cleanup import (
    DEFAULT_GRACE_S,
    Kept,
    Leftover,
    LeftoverKind,
    hold,
    sealed_files,
    sealed_temp_name,
    size_of,
    stored_blobs,
    sweep,
    temporary_files,
)
from aperture.vault.domain import SignedManifest, root_digest, verify_bundle
from aperture.vault.keys import InstanceKeys, load_instance_keys
from aperture.vault.sealed_files import require_digest, seal_file, unseal_digest, unseal_to
from aperture.vault.sealing import (
    CHUNK,
    SealedReader,
    Sealer,
    Share,
    check_custody,
    combine_shares,
    generate_tier_key,
    new_artifact_id,
    open_sealed,
    open_sealed_bytes,
    parse_share,
    public_of,
    seal_bytes,
    share_hash,
    share_matches,
    split_key,
)
from aperture.vault.store import Keyring, SealedBlobRow

ARTIFACT_PUBLIC_KEY_FILE = "artifacts-p256.pub"
UPPER_TIER = "upper"


@dataclass(frozen=True, slots=True)
class SealedBlob:
    artifact_id: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class SealStatus:
    initialised: bool
    sealed: bool
    keyring_id: str | None
    threshold: int
    shares: int
    presented: int
    custodians: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ShareReceipt:
    """What presenting a share did: the status after, and which custodian's share it was."""

    status: SealStatus
    index: int
    unsealed_now: bool


@dataclass(frozen=True, slots=True)
class SignedBundle:
    bundle_json: str
    key_id: str
    root_digest: str


@dataclass(frozen=True, slots=True)
class GarbageReport:
    dry_run: bool
    found: tuple[Leftover, ...]  # removed, or (dry run) what would be
    kept: tuple[Kept, ...]  # temporary files left in place, with why
    orphans_skipped: bool  # a store operation was in progress: unreferenced files were not looked at
    sealed_withheld: str | None = None  # why unreferenced sealed files were not removed (None: they were)

    @property
    def removed(self) -> tuple[Leftover, ...]:
        return tuple(item for item in self.found if item.removed)


@dataclass
class Staging:
    """Blobs a use case stored; if it fails, the ones nobody references are removed again."""

    created: list[StoredBlob] = field(default_factory=list)
    stored: list[StoredBlob] = field(default_factory=list)
    sealed: list[SealedBlob] = field(default_factory=list)


class VaultService:
    def __init__(self, database: Database, artifacts: ArtifactStore, keys_dir: Path, sealed_dir: Path) -> None:
        self.database = database
        self.artifacts = artifacts
        self.keys_dir = keys_dir
        self.sealed_dir = sealed_dir
        self._keys_lock = threading.Lock()
        # The unsealed tier key lives in this process's memory only; shares presented so far too.
        self._seal_lock = threading.Lock()
        self._tier_private: bytes | None = None
        self._presented: dict[int, Share] = {}

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
        record references are deleted (temporary files are always removed by the store).

        The block holds the staging lock (shared), so a garbage collection never takes a blob it
        stored before its commit; and it first removes the temporary files of writers that died
        (a cheap sweep, see `sweep_temporary`)."""
        self.sweep_temporary()
        staged = Staging()
        with self.artifacts.staging_lock():
            try:
                yield staged
            except BaseException:
                self.discard_unreferenced([blob.digest for blob in staged.created])
                self.discard_sealed(staged.sealed)
                raise

    # --- what interrupted writes leave ------------------------------------------------------

    def sweep_temporary(
        self, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False
    ) -> tuple[list[Leftover], list[Kept]]:
        """Remove the temporary files that no live writer holds: those of a writer that is no
        longer running, or older than `grace_s` (see vault.cleanup). Never fails a caller: a file
        that cannot be examined is kept and named."""
        try:
            return sweep(temporary_files(self.artifacts.temp_dir, self.sealed_dir), grace_s=grace_s, dry_run=dry_run)
        except OSError as error:
            return [], [Kept(self.artifacts.root, f"cannot sweep: {error.strerror}")]

    def collect_garbage(
        self, keep_blobs: set[str], *, collect_sealed: bool = True, grace_s: float = DEFAULT_GRACE_S, dry_run: bool
    ) -> GarbageReport:
        """Temporary files no live writer holds, blobs no reference (nor `keep_blobs`) names and
        sealed files no sealed record names: removed (or, dry, listed). Unreferenced files are
        looked at only while no store operation is in progress (the staging lock, exclusively);
        otherwise they are left for a later run and `orphans_skipped` says so."""
        found, kept = self.sweep_temporary(grace_s=grace_s, dry_run=dry_run)
        with self.artifacts.no_staging() as quiet:
            if not quiet:
                return GarbageReport(dry_run, tuple(found), tuple(kept), orphans_skipped=True)
            with self.artifacts.lock():
                with self.database.read() as connection:
                    referenced = store.all_referenced(connection) | keep_blobs
                    sealed_ids = store.all_sealed_ids(connection)
                blobs = [(d, p) for d, p in stored_blobs(self.artifacts.root / "sha256") if d not in referenced]
                sealed = [(a, p) for a, p in sealed_files(self.sealed_dir) if a not in sealed_ids]
                if not collect_sealed:
                    sealed = []
                found += [Leftover(LeftoverKind.BLOB, p, size_of(p), not dry_run) for _, p in blobs]
                found += [Leftover(LeftoverKind.SEALED, p, size_of(p), not dry_run) for _, p in sealed]
                if not dry_run:
                    self.artifacts.remove([digest for digest, _ in blobs])
                    for _, path in sealed:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    for parent in {path.parent for _, path in sealed}:
                        fsync_directory(parent)
                    if blobs:
                        with self.database.transaction() as connection:
                            store.forget_unreferenced(connection, [digest for digest, _ in blobs])
        return GarbageReport(dry_run, tuple(found), tuple(kept), orphans_skipped=False)

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

    # --- backups --------------------------------------------------------------------------

    @contextlib.contextmanager
    def backup_hold(self) -> Iterator[None]:
        """Held while a backup reads the stores: the staging lock, shared, so a garbage collection
        (which needs it exclusively) removes nothing while the backup copies; registrations go on."""
        with self.artifacts.staging_lock():
            yield

    def stored_files(self) -> list[Path]:
        """Every complete blob and sealed file (temporary files left out)."""
        blobs = [path for _, path in stored_blobs(self.artifacts.root / "sha256")]
        return blobs + [path for _, path in sealed_files(self.sealed_dir)]

    def referenced_at(self, connection: Connection) -> tuple[set[str], set[str]]:
        """(blob digests, sealed artifact ids) the rows `connection` sees reference."""
        return store.all_referenced(connection), store.all_sealed_ids(connection)

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
        return SourceFile.planned(path, path.stat(), label)

    def require_blob(self, digest: str, label: str) -> None:
        if not self.artifacts.has(digest):
            raise IntegrityFailure(f"the stored file {label} ({digest}) is missing", hint="restore from backup")

    def linked_directory(self, root: Path, key: str, files: Iterable[tuple[str, str]], label: str) -> Path:
        """A directory `root/key[:24]` of symlinks to stored blobs (relative path -> SHA-256), for
        loading a model's files in place without a copy. Made once and reused: it is built under a
        staging name and renamed, so a reader never sees half of it and concurrent makers agree."""
        target = root / key[:24]
        if (target / ".complete").is_file():
            return target
        staging = root / f".tmp-{new_id()}"
        staging.mkdir(parents=True)
        for path, digest in files:
            self.require_blob(digest, f"{label}/{path}")
            link = staging.joinpath(*path.split("/"))
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.blob_path(digest))
        (staging / ".complete").write_text(key + "\n")
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            if not (target / ".complete").is_file():
                raise
        return target

    # --- the upper tier's seal --------------------------------------------------------------

    def keyring(self) -> Keyring | None:
        with self.database.read() as connection:
            return store.load_keyring(connection, UPPER_TIER)

    def require_keyring(self) -> None:
        self._require_keyring()

    def _require_keyring(self) -> Keyring:
        keyring = self.keyring()
        if keyring is None:
            raise NotInitialised(
                "the upper tier has no key yet", hint="run `aperture seal init --custodian NAME ... --threshold K`"
            )
        return keyring

    def init_seal(
        self, connection: Connection, custodians: Sequence[str], threshold: int, now: datetime
    ) -> tuple[str, list[tuple[str, Share]]]:
        """Make the upper tier's key, split it among the custodians and keep only the public key
        and each share's hash. Returns the shares, to be handed out once; the key is forgotten
        (the tier starts sealed: custodians unseal it)."""
        check_custody(threshold, len(custodians))
        if len(set(custodians)) != len(custodians):
            raise InvalidInput("a custodian is named twice", hint="each custodian holds one share")
        if store.load_keyring(connection, UPPER_TIER) is not None:
            raise Conflict(
                "the upper tier already has a key", hint="its custodians hold the shares; keys are never replaced here"
            )
        keyring_id = secrets.token_hex(8)
        private, public = generate_tier_key()
        shares = split_key(private, keyring_id, threshold, len(custodians))
        del private
        keyring = Keyring(
            id=keyring_id,
            tier=UPPER_TIER,
            public_key=public,
            threshold=threshold,
            shares=len(custodians),
            created_at=now,
            custodians={
                share.index: (custodian, share_hash(share)) for custodian, share in zip(custodians, shares, strict=True)
            },
        )
        store.insert_keyring(connection, keyring)
        return keyring_id, list(zip(custodians, shares, strict=True))

    def seal_status(self) -> SealStatus:
        keyring = self.keyring()
        if keyring is None:
            return SealStatus(False, True, None, 0, 0, 0, ())
        with self._seal_lock:
            return self._status_locked(keyring)

    def present_share(self, custodian: str, share_text: str) -> ShareReceipt:
        """One custodian's share. A share that is not this custodian's, of another keyring, or
        already presented is refused and changes nothing; the k-th good share unseals the tier."""
        keyring = self._require_keyring()
        share = parse_share(share_text)
        wrong = InvalidInput(
            f"that is not {custodian}'s share of the upper tier's key",
            hint="present the share printed for you at `aperture seal init`; a wrong share is recorded",
        )
        if share.keyring_id != keyring.id or share.index not in keyring.custodians:
            raise wrong
        holder, digest = keyring.custodians[share.index]
        if holder != custodian or not share_matches(share, digest):
            raise wrong
        with self._seal_lock:
            if self._tier_private is not None:
                raise Conflict("the upper tier is already unsealed", hint="nothing to do")
            if share.index in self._presented:
                raise Conflict(
                    f"{custodian}'s share was already presented",
                    hint=f"{keyring.threshold - len(self._presented)} other custodian(s) must present theirs",
                )
            self._presented[share.index] = share
            if len(self._presented) < keyring.threshold:
                return ShareReceipt(self._status_locked(keyring), share.index, False)
            private = combine_shares(list(self._presented.values()))
            self._presented.clear()
            if public_of(private) != keyring.public_key:
                raise IntegrityFailure(
                    "the presented shares do not rebuild the upper tier's key",
                    hint="the stored share hashes or public key were altered; restore the database from backup",
                )
            self._tier_private = private
            return ShareReceipt(self._status_locked(keyring), share.index, True)

    def _status_locked(self, keyring: Keyring) -> SealStatus:
        return SealStatus(
            True,
            self._tier_private is None,
            keyring.id,
            keyring.threshold,
            keyring.shares,
            len(self._presented),
            tuple(custodian for _, (custodian, _) in sorted(keyring.custodians.items())),
        )

    def seal(self) -> None:
        """Forget the tier key and any presented shares at once (also what a restart does)."""
        with self._seal_lock:
            self._tier_private = None
            self._presented.clear()

    def _tier_key(self) -> bytes:
        with self._seal_lock:
            key = self._tier_private
        if key is None:
            raise Unavailable(
                "the upper tier is sealed",
                hint="k key custodians must present their shares (POST /api/v1/seal/shares or the /security page)",
            )
        return key

    # --- sealed artifacts -------------------------------------------------------------------

    def sealed_path(self, artifact_id: str) -> Path:
        return self.sealed_dir / artifact_id[:2] / artifact_id

    def seal_files(
        self, staged: Staging, sources: Sequence[SourceFile], progress: Progress | None = None
    ) -> list[SealedBlob]:
        """Encrypt each file into the sealed store as it is read (plaintext never touches disk):
        read, hash, encrypt, write, fsync, rename. Needs only the tier's public key."""
        keyring = self._require_keyring()
        sealed: list[SealedBlob] = []
        for source in sources:
            blob = self._seal_one(keyring, source, progress)
            staged.sealed.append(blob)
            sealed.append(blob)
        return sealed

    def _seal_one(self, keyring: Keyring, source: SourceFile, progress: Progress | None) -> SealedBlob:
        artifact_id = new_artifact_id()
        final = self.sealed_path(artifact_id)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = final.with_name(sealed_temp_name(artifact_id))
        source_fd = open_source(source)
        try:
            sealer = Sealer(keyring.public_key, artifact_id)
            out_fd, direct = open_new_file(temp, 0o600, direct=source.size > sealer.chunk)
            try:
                hold(out_fd)
                with contextlib.suppress(OSError, AttributeError):
                    os.posix_fadvise(source_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                digest = seal_file(sealer, source_fd, out_fd, source, progress, direct=direct)
                os.fsync(out_fd)
            finally:
                os.close(out_fd)
            temp.rename(final)
            fsync_directory(final.parent)
        finally:
            os.close(source_fd)
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return SealedBlob(artifact_id, digest, source.size)

    def reference_sealed(self, connection: Connection, owner: str, blobs: Sequence[SealedBlob], now: datetime) -> None:
        keyring = store.load_keyring(connection, UPPER_TIER)
        assert keyring is not None
        rows = {
            blob.digest: SealedBlobRow(blob.artifact_id, owner, blob.digest, blob.size, keyring.id) for blob in blobs
        }
        store.add_sealed(connection, list(rows.values()), now)

    def discard_sealed(self, blobs: Sequence[SealedBlob]) -> None:
        """Remove sealed files no committed record references (a failed registration's)."""
        if not blobs:
            return
        with self.database.read() as connection:
            keep = store.sealed_ids(connection, [blob.artifact_id for blob in blobs])
        for blob in blobs:
            if blob.artifact_id not in keep:
                with contextlib.suppress(FileNotFoundError):
                    self.sealed_path(blob.artifact_id).unlink()

    def sealed_owners(self) -> dict[str, set[str]]:
        """owner -> the plaintext digests it holds sealed copies of (for a completeness check)."""
        with self.database.read() as connection:
            return store.sealed_owners(connection)

    def sealed_copies(self, owner: str) -> dict[str, SealedBlobRow]:
        with self.database.read() as connection:
            return store.sealed_for(connection, owner)

    def open_sealed(self, row: SealedBlobRow) -> Generator[bytes, None, None]:
        """The plaintext of a sealed artifact, streamed; needs the tier unsealed."""
        key = self._tier_key()
        path = self._existing_sealed(row)
        return open_sealed(path, key, row.artifact_id, row.sha256)

    def _existing_sealed(self, row: SealedBlobRow) -> Path:
        path = self.sealed_path(row.artifact_id)
        if not path.exists():
            raise IntegrityFailure(
                f"the sealed artifact {row.artifact_id} is missing", hint="restore HOME/sealed from backup"
            )
        return path

    def rehash_sealed(self, row: SealedBlobRow, progress: Progress | None = None) -> str | None:
        """Decrypt and hash: the plaintext digest, or None when the file is missing or damaged."""
        key = self._tier_key()
        try:
            with SealedReader(self.sealed_path(row.artifact_id), key, row.artifact_id) as reader:
                return unseal_digest(reader, progress)
        except (FileNotFoundError, IntegrityFailure):
            return None

    def copy_out_sealed(self, row: SealedBlobRow, destination: Path, progress: Progress | None = None) -> None:
        """Decrypt a sealed artifact into `destination` (a new file), checking every chunk and the
        plaintext's digest; on any failure the destination is removed again."""
        key = self._tier_key()
        with SealedReader(self._existing_sealed(row), key, row.artifact_id) as reader:
            fd, direct = open_new_file(destination, 0o600, direct=row.size >= reader.chunk)
            try:
                try:
                    actual = unseal_to(reader, fd, progress, direct=direct)
                    require_digest(actual, row.sha256, row.artifact_id)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    destination.unlink()
                raise

    # --- small secrets and streamed payloads in the upper tier -------------------------------

    def seal_secret(self, plain: bytes) -> tuple[str, str, bytes]:
        """(keyring id, artifact id, sealed bytes) of a small secret, for a table to keep: writing
        needs only the tier's public key; reading it back needs the tier unsealed."""
        keyring = self._require_keyring()
        artifact_id = new_artifact_id()
        return keyring.id, artifact_id, seal_bytes(keyring.public_key, artifact_id, plain)

    def open_secret(self, keyring_id: str, artifact_id: str, sealed: bytes) -> bytes:
        keyring = self._require_keyring()
        if keyring.id != keyring_id:
            raise IntegrityFailure(
                "the secret was sealed under another keyring", hint="restore the database that belongs to this seal"
            )
        return open_sealed_bytes(sealed, self._tier_key(), artifact_id)

    def seal_stream(self, staged: Staging, chunks: Iterable[memoryview | bytes], size: int) -> SealedBlob:
        """Seal a plaintext that is produced as it is written (a marked copy): it never touches the
        disk unencrypted. `size` is the exact total; the digest is computed on the way."""
        keyring = self._require_keyring()
        artifact_id = new_artifact_id()
        final = self.sealed_path(artifact_id)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = final.with_name(sealed_temp_name(artifact_id))
        sealer = Sealer(keyring.public_key, artifact_id, CHUNK)
        count = sealer.chunk_count(size)
        digest = hashlib.sha256()
        buffer = bytearray(sealer.chunk)
        fill = counter = written = 0
        try:
            with temp.open("xb") as out:
                hold(out.fileno())
                out.write(sealer.header)
                for piece in chunks:
                    view = memoryview(piece).cast("B")
                    digest.update(view)
                    written += len(view)
                    position = 0
                    while position < len(view):
                        take = min(sealer.chunk - fill, len(view) - position)
                        buffer[fill : fill + take] = view[position : position + take]
                        fill += take
                        position += take
                        if fill == sealer.chunk and counter < count - 1:
                            out.write(sealer.seal(counter, False, bytes(buffer)))
                            counter += 1
                            fill = 0
                if written != size or counter != count - 1:
                    raise IntegrityFailure(
                        f"the stream gave {written} bytes, {size} were announced", hint="this is a bug: report it"
                    )
                out.write(sealer.seal(counter, True, bytes(buffer[:fill])))
                out.flush()
                os.fsync(out.fileno())
            temp.rename(final)
            fsync_directory(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        blob = SealedBlob(artifact_id, digest.hexdigest(), size)
        staged.sealed.append(blob)
        return blob

    def open_sealed_blob(self, blob: SealedBlob) -> Generator[bytes, None, None]:
        """Read back a sealed blob just written (before any record references it): a self-test."""
        return open_sealed(self.sealed_path(blob.artifact_id), self._tier_key(), blob.artifact_id, blob.digest)
