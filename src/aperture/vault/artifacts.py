"""The content-addressed artifact store: `HOME/artifacts/sha256/<2 hex>/<62 hex>`.

Each file is read once, in large blocks into reused page-aligned buffers: the reading thread
hashes a block while a writer thread writes the same block to a temporary file (hashlib and
os.write release the GIL, so both run on separate cores). Large files are written with O_DIRECT:
the block goes from our buffer to the device without being copied into the page cache, which on
the machines measured (see bench/bench_register.py) halves the time of a 2 GiB registration and
leaves the final fsync almost nothing to do. Where O_DIRECT is refused (tmpfs, some network file
systems) writes are buffered and a flusher thread starts writeback of each 64 MiB as it is
written (`sync_file_range`), so the disk works while the rest is hashed.

Files are stored in parallel, one worker per file. A finished blob is fsynced, renamed to its
address (atomic on one file system) and its directory fsynced; a blob that is already there is
not rewritten. Sources are opened with O_NOFOLLOW and re-checked after reading, so a file that
changes while it is being stored is refused rather than stored under a digest of mixed content.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from aperture.core.errors import IntegrityFailure, InvalidInput, NotFound, UnsafeInput
from aperture.vault.cleanup import blob_temp_name, hold
from aperture.vault.domain import blob_relative_path

Progress = Callable[[int], None]

DEFAULT_BLOCK = 8 * 1024 * 1024
BUFFERS_PER_FILE = 4
BUFFER_BUDGET = 128 * 1024 * 1024  # all workers' buffers together stay under this
MIN_BLOCK = 1024 * 1024
ALIGN = 4096  # O_DIRECT offsets, lengths and buffers: a multiple of the logical block size
WRITEBACK_EVERY = 64 * 1024 * 1024

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_OPEN_SOURCE = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """`sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE)`: start writeback of a range (Linux).

    It returns once the pages are queued for the device, which may block when the queue is full:
    call it from a thread that nothing else waits for. ctypes releases the GIL during the call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure only loses the head start

    return start_writeback


_start_writeback = _load_sync_file_range()


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file to store, as planned: where to read it and what it looked like when planned."""

    path: Path
    size: int
    device: int
    inode: int
    mtime_ns: int
    label: str  # how to name it in messages (its path inside the model)

    @classmethod
    def planned(cls, path: Path, info: os.stat_result, label: str) -> SourceFile:
        """The file as `info` (its stat) saw it, so a change before it is stored is noticed."""
        return cls(path, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, label)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    digest: str
    size: int
    created: bool  # False when the blob was already in the store


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_new_file(path: Path, mode: int, *, direct: bool) -> tuple[int, bool]:
    """Create `path` (never overwriting), with O_DIRECT when asked and the file system allows it."""
    if direct and _O_DIRECT:
        try:
            return os.open(path, _OPEN_TEMP | _O_DIRECT, mode), True
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
    return os.open(path, _OPEN_TEMP, mode), False


def _stop_direct(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_O_DIRECT)


def open_source(source: SourceFile) -> int:
    """Open a planned source for reading, refusing a symlink or a file replaced since planning."""
    try:
        fd = os.open(source.path, _OPEN_SOURCE)
    except FileNotFoundError:
        raise NotFound(f"{source.label} disappeared before it could be stored", hint="retry") from None
    except OSError as error:
        if error.errno == errno.ELOOP:  # the path became a symlink after it was planned
            raise UnsafeInput(f"{source.label} became a symbolic link", hint="retry on a stable copy") from None
        raise InvalidInput(f"cannot read {source.label}: {error.strerror}", hint="check permissions") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (source.device, source.inode):
        os.close(fd)
        raise UnsafeInput(f"{source.label} was replaced while it was being registered", hint="retry")
    return fd


def check_unchanged(fd: int, source: SourceFile, read: int) -> None:
    """Refuse a source that changed while it was read (its digest would be of mixed content)."""
    info = os.fstat(fd)
    if read != source.size or info.st_size != source.size or info.st_mtime_ns != source.mtime_ns:
        raise InvalidInput(
            f"{source.label} changed while it was being registered",
            hint="wait until whatever writes the file has finished, then register again",
        )


class Writer:
    """Writes blocks in order; drops O_DIRECT for an unaligned tail (or if the kernel refuses it)."""

    def __init__(self, fd: int, direct: bool) -> None:
        self.fd = fd
        self.direct = direct
        self.offset = 0

    def write(self, view: memoryview) -> None:
        if self.direct and (len(view) % ALIGN or self.offset % ALIGN):
            _stop_direct(self.fd)
            self.direct = False
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as error:
                if not self.direct or error.errno != errno.EINVAL:
                    raise
                _stop_direct(self.fd)  # stricter alignment than ALIGN: write buffered instead
                self.direct = False
                continue
            view = view[written:]
            self.offset += written


class WriteBehind:
    """Writes blocks to a file in order on a thread of its own, so the caller can hash (or
    encrypt) the next block meanwhile; hashlib, AES-GCM and os.write release the GIL, so the
    stages run on separate cores. Buffered writes get their writeback started by a second
    thread every WRITEBACK_EVERY bytes (`sync_file_range` blocks while the device queue is full),
    which leaves the final fsync little to do.

    `prepare(index, view)` (optional) runs on the writing thread and returns what to write in
    place of the block (the sealed store encrypts there). `released(index)` is called once block
    `index` is written, so its buffer can be reused; after a failure it is called with -1 once, to
    wake a caller waiting for a free buffer, and blocks still queued are released unwritten."""

    def __init__(
        self,
        writer: Writer,
        released: Callable[[int], None],
        prepare: Callable[[int, memoryview], memoryview] | None = None,
    ) -> None:
        self.writer = writer
        self._released = released
        self._prepare = prepare
        self._filled: queue.SimpleQueue[tuple[int, memoryview] | None] = queue.SimpleQueue()
        self._flushes: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self.failure: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._write_blocks, name="aperture-blob-writer", daemon=True),
            threading.Thread(target=self._flush, name="aperture-blob-flusher", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def put(self, index: int, view: memoryview) -> None:
        self._filled.put((index, view))

    def join(self) -> None:
        """Wait until every queued block is written (or, after a failure, released)."""
        self._filled.put(None)
        for thread in self._threads:
            thread.join()

    def check(self) -> None:
        """Raise the writing thread's failure, if any (after `join`)."""
        if self.failure:
            raise self.failure[0]

    def _write_blocks(self) -> None:
        flushed = 0
        writer = self.writer
        try:
            while (item := self._filled.get()) is not None:
                index, view = item
                if not self.failure:
                    writer.write(view if self._prepare is None else self._prepare(index, view))
                    if not writer.direct and writer.offset - flushed >= WRITEBACK_EVERY:
                        self._flushes.put((flushed, writer.offset - flushed))
                        flushed = writer.offset
                self._released(index)
        except BaseException as error:  # surfaced by check(), and to the caller through released(-1)
            self.failure.append(error)
            self._released(-1)
            while (item := self._filled.get()) is not None:  # drain, so join() returns
                self._released(item[0])
        finally:
            self._flushes.put(None)

    def _flush(self) -> None:
        while (item := self._flushes.get()) is not None:
            if _start_writeback is not None and not self.failure:
                _start_writeback(self.writer.fd, *item)


class _Copier:
    """Reads a source once, hashing each block while a writer thread writes it to a destination."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        # Anonymous mappings are page-aligned, as O_DIRECT needs.
        self.buffers = [mmap.mmap(-1, block_size) for _ in range(BUFFERS_PER_FILE)]
        self.views = [memoryview(buffer) for buffer in self.buffers]

    def copy(
        self,
        source_fd: int,
        destination_fd: int | None,
        progress: Progress | None,
        *,
        direct: bool = False,
        size_hint: int = -1,
    ) -> tuple[str, int]:
        """Hash `source_fd` to its end, writing it to `destination_fd` when given: (hex digest, bytes)."""
        hasher = hashlib.sha256()
        if destination_fd is None:
            return self._hash_only(source_fd, hasher, progress)
        writer = Writer(destination_fd, direct)
        if 0 <= size_hint < self.block_size:
            return self._copy_small(source_fd, writer, hasher, progress)
        free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(self.buffers)):
            free.put(index)
        behind = WriteBehind(writer, free.put)
        total = 0
        try:
            while True:
                index = free.get()
                if index < 0 or behind.failure:
                    break
                length = os.readv(source_fd, [self.views[index]])
                if length == 0:
                    free.put(index)
                    break
                behind.put(index, self.views[index][:length])
                hasher.update(self.views[index][:length])
                total += length
                if progress is not None:
                    progress(length)
        finally:
            behind.join()
        behind.check()
        return hasher.hexdigest(), total

    def _copy_small(
        self, source_fd: int, writer: Writer, hasher: hashlib._Hash, progress: Progress | None
    ) -> tuple[str, int]:
        """Configs, tokenizers, READMEs: no threads for a file that fits one block."""
        view, total = self.views[0], 0
        while length := os.readv(source_fd, [view]):
            hasher.update(view[:length])
            writer.write(view[:length])
            total += length
            if progress is not None:
                progress(length)
        return hasher.hexdigest(), total

    def _hash_only(self, source_fd: int, hasher: hashlib._Hash, progress: Progress | None) -> tuple[str, int]:
        view, total = self.views[0], 0
        while length := os.readv(source_fd, [view]):
            hasher.update(view[:length])
            total += length
            if progress is not None:
                progress(length)
        return hasher.hexdigest(), total


class ArtifactStore:
    """Blobs named by their SHA-256 under `root`; temporary files live in `root/.tmp`."""

    def __init__(self, root: Path, *, workers: int = 1, block_size: int = DEFAULT_BLOCK) -> None:
        self.root = root
        self.workers = max(1, workers)
        self.block_size = block_size

    @property
    def temp_dir(self) -> Path:
        return self.root / ".tmp"

    def blob_path(self, digest: str) -> Path:
        return self.root / blob_relative_path(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _block_for(self, workers: int) -> int:
        budget = BUFFER_BUDGET // (BUFFERS_PER_FILE * max(1, workers))
        block = max(MIN_BLOCK, min(self.block_size, budget))
        return block - block % ALIGN

    def _parallel(self, count: int) -> int:
        return max(1, min(self.workers, count))

    # --- storing --------------------------------------------------------------------------

    def store(
        self,
        sources: Sequence[SourceFile],
        *,
        progress: Progress | None = None,
        stored: list[StoredBlob] | None = None,
    ) -> list[StoredBlob]:
        """Store every source (in parallel), returning blobs in the order of `sources`.

        `stored` (when given) receives each blob as soon as it is in the store, so a caller can
        discard what a failed call wrote. On the first failure the remaining files are skipped.
        """
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        workers = self._parallel(len(sources))
        block = self._block_for(workers)
        local = threading.local()
        cancelled = threading.Event()
        results: dict[int, StoredBlob] = {}

        def run(position: int, source: SourceFile) -> None:
            if cancelled.is_set():
                return
            copier = getattr(local, "copier", None)
            if copier is None:
                copier = local.copier = _Copier(block)
            blob = self._store_one(source, copier, progress)
            results[position] = blob
            if stored is not None:
                stored.append(blob)

        # Largest first: the long files start early and the small ones fill the gaps.
        order = sorted(range(len(sources)), key=lambda i: -sources[i].size)
        if workers == 1:
            for position in order:
                run(position, sources[position])
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aperture-store") as pool:
                futures: list[Future[None]] = [pool.submit(run, i, sources[i]) for i in order]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                if any(f.exception() is not None for f in done):
                    cancelled.set()
                wait(futures)
                for future in futures:
                    if (error := future.exception()) is not None:
                        raise error
        return [results[i] for i in range(len(sources))]

    def _store_one(self, source: SourceFile, copier: _Copier, progress: Progress | None) -> StoredBlob:
        source_fd = open_source(source)
        temp = self.temp_dir / blob_temp_name()
        temp_fd = -1
        try:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(source_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            temp_fd, direct = open_new_file(temp, 0o600, direct=source.size >= copier.block_size)
            hold(temp_fd)  # tells a clean-up that a live writer has it (see vault.cleanup)
            digest, read = copier.copy(source_fd, temp_fd, progress, direct=direct, size_hint=source.size)
            check_unchanged(source_fd, source, read)
            final = self.blob_path(digest)
            if final.is_file() and final.stat().st_size == read:
                return StoredBlob(digest, read, created=False)  # deduplicated: no fsync, no rename
            os.fchmod(temp_fd, 0o444)
            os.fsync(temp_fd)
            os.close(temp_fd)
            temp_fd = -1
            parent_existed = final.parent.is_dir()
            final.parent.mkdir(parents=True, exist_ok=True)
            temp.replace(final)
            fsync_directory(final.parent)
            if not parent_existed:
                fsync_directory(final.parent.parent)
            return StoredBlob(digest, read, created=True)
        finally:
            os.close(source_fd)
            if temp_fd >= 0:
                os.close(temp_fd)
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    # --- reading back ---------------------------------------------------------------------

    def hash_blob(self, digest: str, progress: Progress | None = None) -> str | None:
        """Re-hash a stored blob; None when it is missing."""
        path = self.blob_path(digest)
        try:
            fd = os.open(path, _OPEN_SOURCE)
        except FileNotFoundError:
            return None
        try:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            actual, _ = _Copier(self._block_for(1)).copy(fd, None, progress)
            return actual
        finally:
            os.close(fd)

    def hash_blobs(self, digests: Sequence[str], progress: Progress | None = None) -> dict[str, str | None]:
        """Re-hash several blobs in parallel: digest -> actual digest (None when missing)."""
        unique = list(dict.fromkeys(digests))
        workers = self._parallel(len(unique))
        if workers == 1:
            return {digest: self.hash_blob(digest, progress) for digest in unique}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aperture-verify") as pool:
            actual = list(pool.map(lambda d: self.hash_blob(d, progress), unique))
        return dict(zip(unique, actual, strict=True))

    def copy_out(self, digest: str, destination: Path, progress: Progress | None = None) -> None:
        """Write a blob to `destination` (a new file), checking its digest on the way."""
        try:
            source_fd = os.open(self.blob_path(digest), _OPEN_SOURCE)
        except FileNotFoundError:
            raise IntegrityFailure(
                f"the stored blob {digest} is missing", hint="restore HOME/artifacts from backup"
            ) from None
        try:
            size = os.fstat(source_fd).st_size
            copier = _Copier(self._block_for(self.workers))
            destination_fd, direct = open_new_file(destination, 0o644, direct=size >= copier.block_size)
            try:
                actual, _ = copier.copy(source_fd, destination_fd, progress, direct=direct, size_hint=size)
                os.fsync(destination_fd)
            finally:
                os.close(destination_fd)
        finally:
            os.close(source_fd)
        if actual != digest:
            raise IntegrityFailure(
                f"the stored blob {digest} is damaged (it now hashes to {actual})",
                hint="restore HOME/artifacts from backup, or re-register the version from a trusted copy",
            )

    # --- removing -------------------------------------------------------------------------

    def remove(self, digests: Sequence[str]) -> None:
        """Delete blobs (callers decide that nothing references them, under `lock()`)."""
        parents: set[Path] = set()
        for digest in digests:
            path = self.blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                parents.add(path.parent)
        for parent in parents:
            fsync_directory(parent)

    @contextlib.contextmanager
    def staging_lock(self) -> Iterator[None]:
        """Held (shared) by every store operation from its first file to its commit, so that a
        garbage collection, which takes it exclusively, never sees a blob stored but not yet
        referenced as garbage."""
        fd = self._open_lock(".staging.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def no_staging(self) -> Iterator[bool]:
        """The staging lock exclusively if nobody stages now: yields False (holding nothing) when
        a store operation is in progress."""
        fd = self._open_lock(".staging.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _open_lock(self, name: str) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return os.open(self.root / name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock between processes sharing this store (taken to add or drop references)."""
        fd = self._open_lock(".lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
