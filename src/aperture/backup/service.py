"""Backup and restore of an instance: the database snapshot, the stores, the keys kept apart.

A backup is consistent while the server runs: the database is copied as one snapshot (SQLite's
online backup API; for PostgreSQL, `pg_dump` under a snapshot exported from a repeatable-read
transaction, in which the schema revision, the log's size and the referenced files are read too),
and the artifact and sealed stores are copied while the staging lock is held shared, so a garbage
collection removes nothing until the copy ends. Blobs and sealed files are immutable, so copying
every complete one after the snapshot covers all the snapshot references; the backup then checks
that each referenced file was copied.

Everything is written into `DEST.partial-<pid>` and renamed to DEST after the manifest (the list
of every file with its SHA-256), so a backup killed at any point leaves only a directory that is
never taken for a backup; the next backup to DEST removes it once its writer is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, create_engine, inspect, make_url, text

from aperture import __version__
from aperture.access.domain import SYSTEM
from aperture.audit.service import AuditLog
from aperture.backup.domain import (
    KEYS_MANIFEST_FILE,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    PG_DUMP_FILE,
    SQLITE_FILE,
    DatabaseKind,
    FileEntry,
    KeysManifest,
    Manifest,
    manifest_text,
    parse_keys_manifest,
    parse_manifest,
    partial_name,
    partial_of,
)
from aperture.core.db import Database, normalise_url
from aperture.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound, Unavailable
from aperture.vault.keys import ARTIFACT_KEY_FILE, INSTANCE_KEY_FILE, load_instance_keys
from aperture.vault.service import VaultService

if TYPE_CHECKING:
    from aperture.bootstrap import Services

BLOCK = 8 * 1024 * 1024
MARKER_FILE = "instance.json"
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class BackupProgress(Protocol):
    def note(self, message: str) -> None: ...

    def start(self, total_bytes: int, files: int) -> None: ...

    def advance(self, done_bytes: int) -> None: ...


class _Silent:
    def note(self, message: str) -> None:
        pass

    def start(self, total_bytes: int, files: int) -> None:
        pass

    def advance(self, done_bytes: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class BackupSource:
    """The instance being backed up, as the composition root built it."""

    home: Path
    database_url: str
    database: Database
    vault: VaultService
    audit: AuditLog
    keys_dir: Path
    data_dirs: tuple[Path, ...]  # further directories of files the database names (RAID attachments)


def backup_source(services: Services) -> BackupSource:
    settings = services.settings
    return BackupSource(
        home=settings.home,
        database_url=settings.resolved_database_url,
        database=services.database,
        vault=services.vault,
        audit=services.audit,
        keys_dir=settings.keys_dir,
        data_dirs=(settings.home / "raid" / "attachments",),
    )


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    manifest: Manifest
    keys_path: Path | None


@dataclass(frozen=True, slots=True)
class RestoredFiles:
    staging_home: Path  # where the files are now (checked there, then renamed to `home`)
    home: Path
    manifest: Manifest
    database_url: str | None  # None: the SQLite file in the home


@dataclass(frozen=True, slots=True)
class VersionCheck:
    reference: str
    ok: bool
    skipped: bool
    detail: str


@dataclass(frozen=True, slots=True)
class RestoreChecks:
    audit_ok: bool
    audit_problems: tuple[str, ...]
    audit_warnings: tuple[str, ...]
    tree_size: int
    expected_tree_size: int
    versions: tuple[VersionCheck, ...]

    @property
    def ok(self) -> bool:
        return (
            self.audit_ok
            and self.tree_size == self.expected_tree_size
            and all(v.ok or v.skipped for v in self.versions)
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    database: DatabaseKind
    file: str
    schema_revision: str
    tree_size: int
    blobs: set[str]
    sealed: set[str]


# --- files -------------------------------------------------------------------------------


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(source: Path, target: Path, progress: BackupProgress, mode: int = 0o600) -> tuple[int, str]:
    """Copy with O_NOFOLLOW/O_EXCL, fsync the copy; (size, SHA-256 of what was copied)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    hasher = hashlib.sha256()
    size = 0
    read_fd = os.open(source, _OPEN_READ)
    try:
        write_fd = os.open(target, _OPEN_NEW, mode)
        try:
            while block := os.read(read_fd, BLOCK):
                hasher.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(write_fd, view) :]
                size += len(block)
                progress.advance(len(block))
            os.fsync(write_fd)
        finally:
            os.close(write_fd)
    finally:
        os.close(read_fd)
    return size, hasher.hexdigest()


def _hash_file(path: Path, progress: BackupProgress) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    fd = os.open(path, _OPEN_READ)
    try:
        while block := os.read(fd, BLOCK):
            hasher.update(block)
            size += len(block)
            progress.advance(len(block))
    finally:
        os.close(fd)
    return size, hasher.hexdigest()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_interrupted(final: Path, progress: BackupProgress) -> None:
    """Remove the partial directories of writes to `final` whose writer is gone; refuse if one runs."""
    if not final.parent.is_dir():
        return
    for entry in final.parent.iterdir():
        found = partial_of(entry.name)
        if found is None or found[0] != final.name or not entry.is_dir() or entry.is_symlink():
            continue
        if _pid_alive(found[1]):
            raise Conflict(
                f"another process (pid {found[1]}) is writing {final} now ({entry.name})",
                hint=f"wait for it to finish or choose another destination (if no backup or restore runs, "
                f"the pid was reused: remove {entry})",
            )
        shutil.rmtree(entry)
        progress.note(f"removed {entry}, left by an interrupted run (pid {found[1]})")


def _require_new(path: Path, what: str) -> None:
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise Conflict(
            f"{path} already exists and is not an empty directory",
            hint=f"give a new path for the {what}; nothing is ever overwritten",
        )


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _relative_parts(path: str) -> Path:
    return Path(*path.split("/"))


# --- the database snapshot -----------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput(f"the SQLite database {url!r} is not a file", hint="back up an instance on a file")
    return Path(database)


def _read_only_database(path: Path) -> Database:
    return Database(create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)))


def _revision(connection: Connection) -> str:
    if not inspect(connection).has_table("alembic_version"):
        raise Unavailable("the database has no Aperture schema", hint="back up an initialised instance")
    return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def _snapshot_sqlite(source: BackupSource, target: Path) -> _Snapshot:
    live = sqlite3.connect(_sqlite_path(source.database_url), timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)  # one step: one read transaction, consistent; WAL writers go on
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            copy.commit()
        finally:
            copy.close()
    finally:
        live.close()
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())
    snapshot = _read_only_database(target)
    try:
        with snapshot.read() as connection:
            blobs, sealed = source.vault.referenced_at(connection)
            return _Snapshot(
                "sqlite", SQLITE_FILE, _revision(connection), source.audit.tree_size_at(connection), blobs, sealed
            )
    finally:
        snapshot.dispose()


def _libpq(url: str) -> tuple[list[str], dict[str, str] | None, str | None]:
    """(`--dbname` arguments, environment, schema) for pg_dump/pg_restore: the password goes in the
    environment, never on the command line; a `search_path` option names the schema to dump."""
    parsed = make_url(normalise_url(url))
    # With a password the tool gets only it (its own variables stay unset); without, it inherits.
    env = {"PGPASSWORD": str(parsed.password)} if parsed.password else None
    conninfo = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    schema = None
    options = parsed.query.get("options")
    option_text = options if isinstance(options, str) else " ".join(options or ())
    for part in option_text.split():
        if part.startswith("-csearch_path="):
            schema = part.removeprefix("-csearch_path=").split(",")[0]
    return ["--dbname", conninfo], env, schema


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable(
            f"`{name}` is not on PATH: a PostgreSQL instance is backed up and restored with it",
            hint="install the PostgreSQL client tools of the server's major version (e.g. postgresql-client)",
        )
    return found


def _run_tool(arguments: list[str], env: dict[str, str] | None, what: str) -> None:
    done = subprocess.run(arguments, env=env, capture_output=True, text=True, check=False)  # a list, never a shell
    if done.returncode != 0:
        raise Unavailable(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}",
            hint="check that the database is reachable and the client tools match the server's version",
        )


def _snapshot_postgresql(source: BackupSource, target: Path) -> _Snapshot:
    pg_dump = _pg_tool("pg_dump")
    dbname, env, schema = _libpq(source.database_url)
    with source.database.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            exported = str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            revision = _revision(connection)
            tree_size = source.audit.tree_size_at(connection)
            blobs, sealed = source.vault.referenced_at(connection)
            arguments = [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={exported}"]
            if schema:
                arguments.append(f"--schema={schema}")
            _run_tool([*arguments, f"--file={target}", *dbname], env, "pg_dump")
    return _Snapshot("postgresql", PG_DUMP_FILE, revision, tree_size, blobs, sealed)


# --- backup --------------------------------------------------------------------------------


def create_backup(
    source: BackupSource,
    destination: Path,
    *,
    keys_to: Path | None = None,
    progress: BackupProgress | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Write a complete backup to `destination` (a new directory), the keys to `keys_to` if given."""
    sink = progress or _Silent()
    destination = destination.absolute()
    keys_target = keys_to.absolute() if keys_to is not None else None
    if destination.exists() or destination.is_symlink():
        raise Conflict(f"{destination} already exists", hint="give a new directory: a backup never overwrites one")
    if _inside(destination, source.home) or _inside(source.home, destination):
        raise InvalidInput(
            f"the backup {destination} and the instance {source.home} overlap", hint="back up outside APERTURE_HOME"
        )
    if keys_target is not None:
        if _inside(keys_target, destination) or _inside(destination, keys_target):
            raise InvalidInput(
                f"--keys-to {keys_target} overlaps the backup {destination}",
                hint="keep the keys apart from the data: another disk or place, e.g. an offline medium",
            )
        if _inside(keys_target, source.home) or _inside(source.home, keys_target):
            raise InvalidInput(f"--keys-to {keys_target} overlaps the instance", hint="choose a place outside it")
        _require_new(keys_target, "keys")
        _clear_interrupted(keys_target, sink)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _clear_interrupted(destination, sink)
    partial = destination.parent / partial_name(destination.name, os.getpid())
    keys_partial = keys_target.parent / partial_name(keys_target.name, os.getpid()) if keys_target else None
    partial.mkdir(mode=0o700)
    try:
        manifest = _write_backup(source, partial, keys_partial, sink, now or datetime.now(UTC))
        if keys_target is not None and keys_partial is not None:
            keys_target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                keys_target.rmdir()  # an empty directory given: replaced by the complete one
            keys_partial.rename(keys_target)
            _fsync_directory(keys_target.parent)
        partial.rename(destination)
        _fsync_directory(destination.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if keys_partial is not None:
            shutil.rmtree(keys_partial, ignore_errors=True)
        raise
    return BackupResult(destination, manifest, keys_target)


def _data_files(source: BackupSource) -> list[Path]:
    files = source.vault.stored_files()
    for directory in source.data_dirs:
        for root, dirs, names in os.walk(directory):
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
            files += [Path(root) / n for n in names if (Path(root) / n).is_file() and not (Path(root) / n).is_symlink()]
    return files


def _write_backup(
    source: BackupSource, partial: Path, keys_partial: Path | None, sink: BackupProgress, now: datetime
) -> Manifest:
    entries: list[FileEntry] = []
    with source.vault.backup_hold():
        sink.note("snapshotting the database")
        database_target = partial / (PG_DUMP_FILE if not source.database.is_sqlite else SQLITE_FILE)
        if source.database.is_sqlite:
            snapshot = _snapshot_sqlite(source, database_target)
        else:
            snapshot = _snapshot_postgresql(source, database_target)
        size, digest = _hash_file(database_target, _Silent())
        entries.append(FileEntry(snapshot.file, size, digest))
        files = _data_files(source)
        sizes = [path.lstat().st_size for path in files]
        sink.start(sum(sizes), len(files))
        copied_blobs: set[str] = set()
        copied_sealed: set[str] = set()
        for path in files:
            relative = path.relative_to(source.home)
            size, digest = _copy_file(path, partial / relative, sink)
            if path.is_relative_to(source.vault.artifacts.root):
                name = path.parent.name + path.name
                if digest != name:
                    raise IntegrityFailure(
                        f"the stored blob {relative} no longer has the content its name says",
                        hint="run `aperture models verify` on the versions that use it; restore it from an older "
                        "backup",
                    )
                copied_blobs.add(name)
            elif path.is_relative_to(source.vault.sealed_dir):
                copied_sealed.add(path.name)
            entries.append(FileEntry(relative.as_posix(), size, digest))
        missing = sorted(snapshot.blobs - copied_blobs) + sorted(snapshot.sealed - copied_sealed)
        if missing:
            raise IntegrityFailure(
                f"{len(missing)} file(s) the database references are not in the stores: {', '.join(missing[:5])}",
                hint="run `aperture models verify` to find the versions they belong to; nothing was backed up",
            )
    marker = source.home / MARKER_FILE
    size, digest = _copy_file(marker, partial / MARKER_FILE, _Silent())
    entries.append(FileEntry(MARKER_FILE, size, digest))
    keys = load_instance_keys(source.keys_dir)
    if keys_partial is not None:
        _write_keys(source.keys_dir, keys_partial, keys.key_id, keys.artifact_key_id)
    manifest = Manifest(
        created_at=now.isoformat(),
        aperture_version=__version__,
        database=snapshot.database,
        database_file=snapshot.file,
        schema_revision=snapshot.schema_revision,
        tree_size=snapshot.tree_size,
        signing_key_id=keys.key_id,
        artifact_key_id=keys.artifact_key_id,
        keys_kept_apart=keys_partial is not None,
        files=tuple(entries),
    )
    _write_small(partial / MANIFEST_FILE, manifest_text(manifest))
    _fsync_tree(partial)
    return manifest


def _write_small(path: Path, content: str) -> None:
    fd = os.open(path, _OPEN_NEW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_tree(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        _fsync_directory(Path(directory))


def _write_keys(keys_dir: Path, target: Path, signing_key_id: str, artifact_key_id: str) -> None:
    target.mkdir(mode=0o700)
    entries = []
    for path in sorted(keys_dir.iterdir()):
        if path.is_file() and not path.is_symlink():
            size, digest = _copy_file(path, target / path.name, _Silent())
            entries.append(FileEntry(path.name, size, digest))
    _write_small(
        target / KEYS_MANIFEST_FILE, manifest_text(KeysManifest(signing_key_id, artifact_key_id, tuple(entries)))
    )
    _fsync_directory(target)


# --- restore -------------------------------------------------------------------------------


def read_backup(backup: Path) -> Manifest:
    """The manifest of a complete backup; refuses an interrupted one and one whose files differ
    from the manifest (a file missing, added, resized; contents are checked while restoring)."""
    backup = backup.absolute()
    if not backup.is_dir():
        raise NotFound(f"no backup directory at {backup}", hint="give the directory `aperture backup` wrote")
    manifest_path = backup / MANIFEST_FILE
    if partial_of(backup.name) is not None or not manifest_path.is_file() or manifest_path.is_symlink():
        raise IntegrityFailure(
            f"{backup} is an incomplete backup (interrupted before its manifest was written)",
            hint="make a new backup with `aperture backup`; `aperture backup` removes this one once its writer is gone",
        )
    with open(manifest_path, "rb") as handle:
        manifest = parse_manifest(handle.read(MAX_MANIFEST_BYTES + 1), str(manifest_path))
    listed = {entry.path: entry for entry in manifest.files}
    for root, dirs, names in os.walk(backup):
        for name in dirs + names:
            path = Path(root) / name
            relative = path.relative_to(backup).as_posix()
            if path.is_symlink():
                raise IntegrityFailure(f"the backup holds a symbolic link: {relative}", hint="use an unaltered backup")
            if path.is_file() and relative != MANIFEST_FILE and relative not in listed:
                raise IntegrityFailure(
                    f"the backup holds a file its manifest does not list: {relative}", hint="use an unaltered backup"
                )
    for entry in manifest.files:
        path = backup / _relative_parts(entry.path)
        if not path.is_file():
            raise IntegrityFailure(f"the backup is missing {entry.path}", hint="use a complete, unaltered backup")
        if path.stat().st_size != entry.size:
            raise IntegrityFailure(
                f"{entry.path} in the backup has changed: {path.stat().st_size} bytes, the manifest says {entry.size}",
                hint="the backup was altered or damaged; use another",
            )
    return manifest


def _check_keys(keys_from: Path, manifest: Manifest) -> None:
    keys_manifest_path = keys_from / KEYS_MANIFEST_FILE
    if keys_manifest_path.is_file():
        with open(keys_manifest_path, "rb") as handle:
            listed = parse_keys_manifest(handle.read(MAX_MANIFEST_BYTES + 1), str(keys_manifest_path))
        for entry in listed.files:
            path = keys_from / entry.path
            if not path.is_file() or _hash_file(path, _Silent()) != (entry.size, entry.sha256):
                raise IntegrityFailure(
                    f"the key file {path} differs from {KEYS_MANIFEST_FILE}", hint="use an unaltered copy of the keys"
                )
    for name in (INSTANCE_KEY_FILE, ARTIFACT_KEY_FILE):
        if not (keys_from / name).is_file():
            raise NotFound(
                f"no {name} in {keys_from}",
                hint="give --keys-from the directory `aperture backup --keys-to` wrote (or the instance's keys/)",
            )
    keys = load_instance_keys(keys_from)
    if (keys.key_id, keys.artifact_key_id) != (manifest.signing_key_id, manifest.artifact_key_id):
        raise IntegrityFailure(
            f"the keys in {keys_from} (signing key {keys.key_id}) are not this backup's "
            f"(signing key {manifest.signing_key_id})",
            hint="give the keys saved with this backup",
        )


def restore_files(
    backup: Path,
    home: Path,
    *,
    keys_from: Path,
    database_url: str | None = None,
    progress: BackupProgress | None = None,
) -> RestoredFiles:
    """Check the backup and copy it into a staging directory beside `home` (a new or empty
    directory), with the keys; the database into the home (SQLite) or `database_url` (an empty
    PostgreSQL database). On any failure nothing is left behind."""
    sink = progress or _Silent()
    backup, home, keys_from = backup.absolute(), home.absolute(), keys_from.absolute()
    manifest = read_backup(backup)
    _check_keys(keys_from, manifest)
    _require_new(home, "restored instance")
    if _inside(home, backup) or _inside(backup, home):
        raise InvalidInput(f"the new home {home} overlaps the backup {backup}", hint="restore into another directory")
    if manifest.database == "sqlite" and database_url is not None:
        raise InvalidInput(
            "this backup holds a SQLite database, restored as HOME/aperture.db", hint="leave --database-url out"
        )
    if manifest.database == "postgresql":
        if database_url is None:
            raise InvalidInput(
                "this backup holds a PostgreSQL database", hint="give --database-url of an empty PostgreSQL database"
            )
        _require_empty_database(database_url)
    home.parent.mkdir(parents=True, exist_ok=True)
    _clear_interrupted(home, sink)
    staging = home.parent / partial_name(home.name, os.getpid())
    staging.mkdir(mode=0o700)
    try:
        sink.start(manifest.total_bytes, len(manifest.files))
        last = [entry for entry in manifest.files if entry.path == MARKER_FILE]
        for entry in [entry for entry in manifest.files if entry.path != MARKER_FILE] + last:
            source = backup / _relative_parts(entry.path)
            if entry.path == PG_DUMP_FILE and manifest.database == "postgresql":
                _require_same(entry, _hash_file(source, sink))
                continue
            _require_same(entry, _copy_file(source, staging / _relative_parts(entry.path), sink))
            if entry.path == MARKER_FILE:
                _restore_keys(keys_from, staging / "keys")
        if manifest.database == "postgresql" and database_url is not None:
            sink.note("restoring the database with pg_restore")
            _pg_restore(backup / PG_DUMP_FILE, database_url)
        _fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoredFiles(staging, home, manifest, database_url)


def _require_same(entry: FileEntry, found: tuple[int, str]) -> None:
    if found != (entry.size, entry.sha256):
        raise IntegrityFailure(
            f"{entry.path} in the backup has changed: its SHA-256 is not the one in the manifest",
            hint="the backup was altered or damaged; use another (nothing was restored)",
            details={"file": entry.path},
        )


def _restore_keys(keys_from: Path, target: Path) -> None:
    target.mkdir(mode=0o700)
    for path in sorted(keys_from.iterdir()):
        if path.is_file() and not path.is_symlink() and path.name != KEYS_MANIFEST_FILE:
            _copy_file(path, target / path.name, _Silent(), mode=0o644 if path.suffix == ".pub" else 0o600)


def _require_empty_database(url: str) -> None:
    target = Database.from_url(url)
    try:
        with target.read() as connection:
            tables = inspect(connection).get_table_names()
    finally:
        target.dispose()
    if tables:
        raise Conflict(
            f"the target database already has {len(tables)} table(s)",
            hint="restore into a new, empty PostgreSQL database (createdb)",
        )


def _pg_restore(dump: Path, url: str) -> None:
    pg_restore = _pg_tool("pg_restore")
    dbname, env, _ = _libpq(url)
    arguments = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    _run_tool([*arguments, *dbname, str(dump)], env, "pg_restore")


def finish_restore(restored: RestoredFiles) -> Path:
    """Move the checked staging directory to the new home."""
    with contextlib.suppress(FileNotFoundError):
        restored.home.rmdir()  # an empty directory given: replaced by the restored one
    restored.staging_home.rename(restored.home)
    _fsync_directory(restored.home.parent)
    return restored.home


def abandon_restore(restored: RestoredFiles) -> None:
    shutil.rmtree(restored.staging_home, ignore_errors=True)


# --- checks on the restored copy -------------------------------------------------------------


def check_restored(services: Services, manifest: Manifest, progress: BackupProgress | None = None) -> RestoreChecks:
    """What `aperture audit verify` and `aperture models verify` check, on the restored copy:
    the whole log recomputed against every signed head, and every version's signature and files."""
    sink = progress or _Silent()
    sink.note("verifying the transparency log")
    report = services.audit.verify()
    tree_size = services.audit.tree_size()
    versions: list[VersionCheck] = []
    for model in services.registry.list_models(SYSTEM):
        for version in model.versions:
            reference = f"{model.name}:{version}"
            sink.note(f"verifying {reference}")
            try:
                done = services.registry.verify_version(model.name, version, caller=SYSTEM)
            except Unavailable as error:  # the sealed tier: its files decrypt only once it is unsealed
                versions.append(VersionCheck(reference, False, True, error.message))
            except IntegrityFailure as error:
                versions.append(VersionCheck(reference, False, False, error.message))
            else:
                detail = f"{done.files_checked} files re-hashed, signature valid"
                versions.append(VersionCheck(reference, True, False, detail))
    if services.audit.appended:
        services.audit.issue_tree_head()
    return RestoreChecks(
        audit_ok=report.ok,
        audit_problems=tuple(f"{p.where}: {p.message}" for p in report.problems),
        audit_warnings=tuple(f"{p.where}: {p.message}" for p in report.warnings),
        tree_size=tree_size,
        expected_tree_size=manifest.tree_size,
        versions=tuple(versions),
    )
