"""What a backup is, as values: its manifest, the names it may hold, and reading it back safely.

A backup is a directory holding `manifest.json` and the files it lists, each with its size and
SHA-256. The manifest is written last and the directory renamed into place after it, so a
directory without a manifest (or one named `*.partial-<pid>`) is an interrupted backup and is
never restored. The manifest comes from outside when it is restored: it is read with a size bound,
every field is checked, and every path must be a plain relative path inside the backup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from aperture.core.errors import IntegrityFailure, InvalidInput, UnsafeInput

MANIFEST_FILE = "manifest.json"
KEYS_MANIFEST_FILE = "keys.json"
FORMAT = "aperture-backup"
KEYS_FORMAT = "aperture-backup-keys"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_FILES = 1_000_000
MAX_PATH_CHARS = 1024
SQLITE_FILE = "aperture.db"
PG_DUMP_FILE = "database.pgdump"
PARTIAL_MARK = ".partial-"

DatabaseKind = Literal["sqlite", "postgresql"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PART = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_PARTIAL = re.compile(r"^(?P<name>.+)\.partial-(?P<pid>[0-9]{1,10})$")


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # relative, POSIX separators
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    aperture_version: str
    database: DatabaseKind
    database_file: str
    schema_revision: str
    tree_size: int
    signing_key_id: str
    artifact_key_id: str
    keys_kept_apart: bool
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "aperture_version": self.aperture_version,
            "database": self.database,
            "database_file": self.database_file,
            "schema_revision": self.schema_revision,
            "tree_size": self.tree_size,
            "signing_key_id": self.signing_key_id,
            "artifact_key_id": self.artifact_key_id,
            "keys_kept_apart": self.keys_kept_apart,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


@dataclass(frozen=True, slots=True)
class KeysManifest:
    signing_key_id: str
    artifact_key_id: str
    files: tuple[FileEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": KEYS_FORMAT,
            "format_version": FORMAT_VERSION,
            "signing_key_id": self.signing_key_id,
            "artifact_key_id": self.artifact_key_id,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


def manifest_text(value: Manifest | KeysManifest) -> str:
    return json.dumps(value.to_json(), indent=1, sort_keys=True) + "\n"


def safe_relative(path: object, where: str) -> str:
    """A relative POSIX path of plain parts (no `..`, no absolute path, no odd characters)."""
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH_CHARS:
        raise UnsafeInput(f"{where}: a file path is missing or too long", hint="the backup was altered; use another")
    parts = path.split("/")
    if any(part in ("", ".", "..") or not _PART.match(part) for part in parts):
        raise UnsafeInput(
            f"{where}: the path {path!r} is not a plain relative path inside the backup",
            hint="the backup was altered (or not made by `aperture backup`); use another",
        )
    return path


def partial_name(name: str, pid: int) -> str:
    return f"{name}{PARTIAL_MARK}{pid}"


def partial_of(name: str) -> tuple[str, int] | None:
    """(final name, writer pid) of an interrupted write's directory name, else None."""
    found = _PARTIAL.match(name)
    return (found.group("name"), int(found.group("pid"))) if found else None


def _load(text: bytes, where: str) -> dict[str, Any]:
    if len(text) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{where} is larger than {MAX_MANIFEST_BYTES} bytes", hint="it is not an Aperture backup")
    try:
        value = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityFailure(f"{where} is not valid JSON", hint="the backup is damaged; use another") from None
    if not isinstance(value, dict):
        raise IntegrityFailure(f"{where} is not a JSON object", hint="the backup is damaged; use another")
    return value


def _field(value: dict[str, Any], name: str, kind: type, where: str) -> Any:
    found = value.get(name)
    if not isinstance(found, kind) or (kind is int and isinstance(found, bool)):
        raise IntegrityFailure(
            f"{where}: field {name!r} is missing or not a {kind.__name__}", hint="use another backup"
        )
    return found


def _files(value: dict[str, Any], where: str) -> tuple[FileEntry, ...]:
    raw = value.get("files")
    if not isinstance(raw, list) or len(raw) > MAX_FILES:
        raise IntegrityFailure(f"{where}: `files` is missing or too long", hint="use another backup")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise IntegrityFailure(f"{where}: a file entry is not an object", hint="use another backup")
        path = safe_relative(item.get("path"), where)
        size, digest = item.get("size"), item.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IntegrityFailure(f"{where}: {path}: bad size", hint="use another backup")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise IntegrityFailure(f"{where}: {path}: bad sha256", hint="use another backup")
        if path in seen:
            raise IntegrityFailure(f"{where}: {path} is listed twice", hint="use another backup")
        seen.add(path)
        entries.append(FileEntry(path, size, digest))
    return tuple(entries)


def _check_format(value: dict[str, Any], expected: str, where: str) -> None:
    if value.get("format") != expected:
        raise InvalidInput(f"{where} is not an Aperture {expected} manifest", hint="give the directory a backup wrote")
    if value.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{where} has format version {value.get('format_version')!r}; this release reads {FORMAT_VERSION}",
            hint="restore it with the release that made it",
        )


def parse_manifest(text: bytes, where: str = MANIFEST_FILE) -> Manifest:
    value = _load(text, where)
    _check_format(value, FORMAT, where)
    database = _field(value, "database", str, where)
    if database not in ("sqlite", "postgresql"):
        raise IntegrityFailure(f"{where}: unknown database kind {database!r}", hint="use another backup")
    files = _files(value, where)
    database_file = safe_relative(_field(value, "database_file", str, where), where)
    if database_file not in {entry.path for entry in files}:
        raise IntegrityFailure(f"{where}: the database file {database_file} is not listed", hint="use another backup")
    tree_size = _field(value, "tree_size", int, where)
    if tree_size < 0:
        raise IntegrityFailure(f"{where}: negative tree size", hint="use another backup")
    return Manifest(
        created_at=_field(value, "created_at", str, where),
        aperture_version=_field(value, "aperture_version", str, where),
        database=database,
        database_file=database_file,
        schema_revision=_field(value, "schema_revision", str, where),
        tree_size=tree_size,
        signing_key_id=_field(value, "signing_key_id", str, where),
        artifact_key_id=_field(value, "artifact_key_id", str, where),
        keys_kept_apart=_field(value, "keys_kept_apart", bool, where),
        files=files,
    )


def parse_keys_manifest(text: bytes, where: str = KEYS_MANIFEST_FILE) -> KeysManifest:
    value = _load(text, where)
    _check_format(value, KEYS_FORMAT, where)
    files = _files(value, where)
    if any("/" in entry.path for entry in files):
        raise UnsafeInput(f"{where}: key files must sit directly in the keys directory", hint="use another copy")
    return KeysManifest(
        signing_key_id=_field(value, "signing_key_id", str, where),
        artifact_key_id=_field(value, "artifact_key_id", str, where),
        files=files,
    )
