"""What interrupted writes leave in the stores, and removing it without harming a live writer.

A process killed while it stores files (kill -9, a power cut) leaves temporary files (`.part`),
and blobs or sealed files it had finished but whose references it never committed. Nothing else
removes them, so they are found here:

- **Temporary files** are named with their writer's process id (`<pid>-<random>.part` in
  `artifacts/.tmp/`, `<artifact id>.<pid>.part` beside sealed files), and the writer holds an
  exclusive `flock` on each for as long as it writes; the kernel drops it when the writer dies,
  SIGKILL included. One is removed only when nobody holds its lock (checked by taking the lock,
  and removed while holding it) and either its writer is no longer running on this host or it is
  older than the grace period. Cheap enough to run at start-up and before each store operation.
- **Unreferenced blobs and sealed files** are removed only by `collect_garbage`, while holding the
  staging lock exclusively: every store operation holds it shared from its first file to its
  commit, so no blob another operation has stored but not yet referenced is ever taken. When any
  operation is in progress the unreferenced files are left for the next run (and said so).

Locks are `flock` locks: they hold between processes on one host (the artifact store is a local
file system; on a network file system run the collection with the servers stopped).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

TEMP_SUFFIX = ".part"
DEFAULT_GRACE_S = 600.0
_BLOB_TEMP = re.compile(r"^([0-9]{1,10})-[0-9a-f]{16}\.part$")
_SEALED_TEMP = re.compile(r"^[0-9a-f-]{36}\.([0-9]{1,10})\.part$")
_BLOB_NAME = re.compile(r"^[0-9a-f]{62}$")
_SEALED_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_OPEN_EXISTING = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class LeftoverKind(StrEnum):
    TEMPORARY = "temporary"  # a half-written file of an interrupted store
    BLOB = "blob"  # a complete blob in artifacts/sha256 that nothing references
    SEALED = "sealed"  # a complete sealed file that nothing references


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: LeftoverKind
    path: Path
    size: int
    removed: bool


@dataclass(frozen=True, slots=True)
class Kept:
    """A temporary file left in place, and why."""

    path: Path
    reason: str


def blob_temp_name() -> str:
    return f"{os.getpid()}-{os.urandom(8).hex()}{TEMP_SUFFIX}"


def sealed_temp_name(artifact_id: str) -> str:
    return f"{artifact_id}.{os.getpid()}{TEMP_SUFFIX}"


def hold(fd: int) -> None:
    """Mark a temporary file as being written: an exclusive lock, dropped when the writer dies."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def writer_pid(name: str) -> int | None:
    match = _BLOB_TEMP.match(name) or _SEALED_TEMP.match(name)
    return None if match is None else int(match.group(1))


def running(pid: int) -> bool:
    """Whether a process with this id runs on this host (ours always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def temporary_files(artifacts_temp: Path, sealed_root: Path) -> Iterator[Path]:
    """Every temporary name in the two stores (regular files and anything else ending in .part)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(artifacts_temp):
            if entry.name.endswith(TEMP_SUFFIX):
                yield Path(entry.path)
    for directory in _subdirectories(sealed_root):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(directory):
                if entry.name.endswith(TEMP_SUFFIX):
                    yield Path(entry.path)


def _subdirectories(root: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def sweep(paths: Iterable[Path], *, grace_s: float, dry_run: bool) -> tuple[list[Leftover], list[Kept]]:
    """Remove (or, dry, list) the temporary files no live writer holds; the rest are kept, with why."""
    found: list[Leftover] = []
    kept: list[Kept] = []
    now = time.time()
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        if not stat.S_ISREG(info.st_mode):
            kept.append(Kept(path, "not a regular file"))
            continue
        pid = writer_pid(path.name)
        gone = pid is not None and not running(pid)
        if not gone and now - info.st_mtime < grace_s:
            kept.append(Kept(path, "being written" if pid is not None else "newer than the grace period"))
            continue
        outcome = _remove_unlocked(path, dry_run)
        if outcome is None:
            kept.append(Kept(path, "being written (locked)"))
        elif outcome:
            found.append(Leftover(LeftoverKind.TEMPORARY, path, info.st_size, removed=not dry_run))
    return found, kept


def _remove_unlocked(path: Path, dry_run: bool) -> bool | None:
    """Take the file's lock and remove it while holding it: True when done (or, dry, possible),
    None when a live writer holds the lock, False when it disappeared meanwhile."""
    try:
        fd = os.open(path, _OPEN_EXISTING)
    except FileNotFoundError:
        return False
    except OSError as error:
        if error.errno == errno.ELOOP:
            return False
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if os.fstat(fd).st_ino != path.lstat().st_ino:
            return False  # renamed into place and replaced meanwhile: not ours to remove
        if not dry_run:
            path.unlink()
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def stored_blobs(sha256_root: Path) -> Iterator[tuple[str, Path]]:
    """(digest, path) of every blob file under `artifacts/sha256/<2 hex>/<62 hex>`."""
    for directory in _subdirectories(sha256_root):
        if len(directory.name) != 2:
            continue
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if _BLOB_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    yield directory.name + entry.name, Path(entry.path)


def sealed_files(sealed_root: Path) -> Iterator[tuple[str, Path]]:
    """(artifact id, path) of every complete sealed file under `sealed/<2 chars>/<artifact id>`."""
    for directory in _subdirectories(sealed_root):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if (
                    _SEALED_NAME.match(entry.name)
                    and entry.name[:2] == directory.name
                    and entry.is_file(follow_symlinks=False)
                ):
                    yield entry.name, Path(entry.path)


def size_of(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0
