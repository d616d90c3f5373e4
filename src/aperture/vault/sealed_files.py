"""Streaming a file into and out of the sealed format, with the stages overlapped.

Sealing: the calling thread reads each plaintext chunk into a reused buffer and hashes it, while
the write-behind thread (artifacts.WriteBehind) encrypts the chunk into its own buffer and writes
it. Unsealing: a thread reads and decrypts (authenticating) each chunk, the calling thread hashes
it, and the write-behind thread writes the plaintext. SHA-256, AES-GCM and os.write release the
GIL, so on two cores hashing runs beside encryption and writing; SHA-256 is the slowest stage.
Memory is a handful of chunk buffers (about 20 MiB at 4 MiB chunks) whatever the file's size.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import threading

from aperture.core.errors import IntegrityFailure
from aperture.vault.artifacts import ALIGN, Progress, SourceFile, WriteBehind, Writer, check_unchanged
from aperture.vault.sealing import TAG, SealedReader, Sealer

BUFFERS = 4  # plaintext chunks in flight: one being read, one hashed, the others queued to write


def _buffers(count: int, size: int) -> list[memoryview]:
    # Anonymous mappings: page-aligned and returned to the system when dropped.
    return [memoryview(mmap.mmap(-1, size)) for _ in range(count)]


def _read_exactly(fd: int, view: memoryview) -> int:
    got = 0
    while got < len(view):
        read = os.readv(fd, [view[got:]])
        if read == 0:
            break
        got += read
    return got


def seal_file(
    sealer: Sealer, source_fd: int, out_fd: int, source: SourceFile, progress: Progress | None, *, direct: bool = False
) -> str:
    """Write `sealer.header` and the sealed chunks of `source` to `out_fd` (opened with O_DIRECT
    when `direct`); the plaintext's SHA-256 (hex). Refuses a source that changed while it was read."""
    chunk = sealer.chunk
    count = sealer.chunk_count(source.size)
    digest = hashlib.sha256()
    if count == 1:  # configs, tokenizers: no threads for one chunk
        writer = Writer(out_fd, direct=False)
        writer.write(memoryview(sealer.header))
        whole = memoryview(bytearray(source.size))
        plain = whole[: _read_exactly(source_fd, whole)]
        check_unchanged(source_fd, source, len(plain) + len(os.read(source_fd, 1)))
        digest.update(plain)
        writer.write(sealer.seal_into(0, True, plain, memoryview(bytearray(len(plain) + TAG))))
        if progress is not None:
            progress(len(plain))
        return digest.hexdigest()
    plains = _buffers(min(BUFFERS, count), chunk)
    # The sealed stream (a 149-byte header, then chunks of chunk + 16 bytes) is laid out in a
    # page-aligned staging buffer and written in whole pages, so O_DIRECT can take it: the device
    # reads our buffer, no copy goes through the page cache and no dirty-page throttling stalls
    # the writer. What is left of a page moves to the front for the next chunk (< 4 KiB).
    (stage,) = _buffers(1, chunk + TAG + 2 * ALIGN)
    stage[: len(sealer.header)] = sealer.header
    fill = len(sealer.header)
    written = 0  # chunks the write-behind thread has sealed, in order
    writer = Writer(out_fd, direct)

    def encrypt(_: int, plain: memoryview) -> memoryview:
        nonlocal written, fill
        counter, written = written, written + 1
        sealed = sealer.seal_into(counter, counter == count - 1, plain, stage[fill:])
        fill += len(sealed)
        return stage[: fill - fill % ALIGN]

    def written_out(index: int) -> None:
        nonlocal fill
        if index >= 0:  # the pages just written are done: keep only the partial one
            rest = fill % ALIGN
            stage[:rest] = stage[fill - rest : fill]
            fill = rest
        free.put(index)

    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(plains)):
        free.put(index)
    behind = WriteBehind(writer, written_out, encrypt)
    total = 0
    try:
        for counter in range(count):
            index = free.get()
            if index < 0:
                break
            view = plains[index][: min(chunk, source.size - counter * chunk)]
            length = _read_exactly(source_fd, view)
            total += length
            if length != len(view):
                break
            behind.put(index, view)
            digest.update(view)
            if progress is not None:
                progress(length)
        else:
            total += len(os.read(source_fd, 1))  # anything past the planned size is a change too
    finally:
        behind.join()
    behind.check()
    check_unchanged(source_fd, source, total)
    writer.write(stage[:fill])  # the last partial page (the writer drops O_DIRECT for it)
    return digest.hexdigest()


def unseal_to(reader: SealedReader, out_fd: int, progress: Progress | None, *, direct: bool = False) -> str:
    """Write the plaintext of `reader` to `out_fd` (opened with O_DIRECT when `direct`: whole
    chunks are whole pages), every chunk authenticated before it is written; the plaintext's
    SHA-256 (hex). Raises IntegrityFailure at the first bad chunk.

    Three stages: a thread reads and decrypts each chunk into a free buffer, the calling thread
    hashes it (the slowest stage, alone on its core), the write-behind thread writes it. A
    buffer is free again once it is both hashed and written."""
    plains = _buffers(min(BUFFERS, reader.count), reader.chunk)
    sealed = memoryview(mmap.mmap(-1, reader.chunk + TAG))
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(plains)):
        free.put(index)
    opened: queue.SimpleQueue[tuple[int, memoryview] | BaseException | None] = queue.SimpleQueue()
    users = [0] * len(plains)  # stages still using each buffer
    lock = threading.Lock()
    stop = threading.Event()

    def release(index: int) -> None:
        if index < 0:  # the writer failed: wake the decrypting thread
            free.put(-1)
            return
        with lock:
            users[index] -= 1
            unused = users[index] == 0
        if unused:
            free.put(index)

    def decrypt() -> None:
        try:
            for counter in range(reader.count):
                index = free.get()
                if index < 0 or stop.is_set():
                    break
                with lock:
                    users[index] = 2  # the hash and the write
                opened.put((index, reader.read_into(counter, sealed, plains[index])))
        except BaseException as error:  # raised on the calling thread
            opened.put(error)
            return
        opened.put(None)

    behind = WriteBehind(Writer(out_fd, direct), release)
    decrypting = threading.Thread(target=decrypt, name="aperture-unseal", daemon=True)
    decrypting.start()
    digest = hashlib.sha256()
    try:
        while (item := opened.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            index, plain = item
            behind.put(index, plain)
            digest.update(plain)
            release(index)
            if progress is not None:
                progress(len(plain))
    finally:
        stop.set()
        free.put(-1)  # in case the decrypting thread waits for a buffer
        decrypting.join()
        behind.join()
    behind.check()
    return digest.hexdigest()


def unseal_digest(reader: SealedReader, progress: Progress | None) -> str:
    """Decrypt every chunk (authenticating it) and hash the plaintext; nothing is written."""
    sealed, plain = reader.buffers()
    digest = hashlib.sha256()
    for counter in range(reader.count):
        view = reader.read_into(counter, sealed, plain)
        digest.update(view)
        if progress is not None:
            progress(len(view))
    return digest.hexdigest()


def require_digest(actual: str, expected: str, artifact_id: str) -> None:
    if actual != expected:
        raise IntegrityFailure(
            f"the sealed artifact {artifact_id} does not match its recorded digest",
            hint="restore HOME/sealed from backup; the sealed file was replaced",
        )
