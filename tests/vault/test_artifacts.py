"""The content-addressed store on a real file system."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from aperture.core.errors import IntegrityFailure, InvalidInput, NotFound, UnsafeInput
from aperture.vault.artifacts import ArtifactStore, SourceFile, StoredBlob


def source(path: Path, label: str | None = None) -> SourceFile:
    info = path.stat()
    return SourceFile(path, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, label or path.name)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts", workers=2)


def _roots(tmp_path: Path) -> list[Path]:
    roots = [tmp_path / "disk"]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        roots.append(shm / f"aperture-test-{os.getpid()}-{tmp_path.name}")  # tmpfs: O_DIRECT may be refused
    return roots


@pytest.mark.parametrize("where", [0, 1])
def test_files_are_stored_under_their_sha256_read_only(tmp_path: Path, where: int) -> None:
    roots = _roots(tmp_path)
    if where >= len(roots):
        pytest.skip("no writable /dev/shm")
    store = ArtifactStore(roots[where] / "artifacts", workers=1, block_size=1024 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 17)  # several blocks through the writer, an unaligned tail
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    done: list[int] = []
    try:
        (blob,) = store.store([source(path)], progress=done.append)
        _check_stored(store, blob, data, done)
        copy = tmp_path / "copy.bin"
        store.copy_out(blob.digest, copy)
        assert copy.read_bytes() == data
    finally:
        if where:
            shutil.rmtree(roots[where], ignore_errors=True)


def _check_stored(store: ArtifactStore, blob: StoredBlob, data: bytes, done: list[int]) -> None:
    digest = hashlib.sha256(data).hexdigest()
    assert blob.digest == digest and blob.size == len(data) and blob.created
    stored = store.root / "sha256" / digest[:2] / digest[2:]
    assert stored.read_bytes() == data
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert sum(done) == len(data)
    assert list(store.temp_dir.iterdir()) == []


def test_identical_content_is_stored_once(store: ArtifactStore, tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(b"same bytes" if name != "c" else b"other")
    first = store.store([source(p) for p in paths])
    assert first[0].digest == first[1].digest != first[2].digest
    again = store.store([source(paths[0])])
    assert not again[0].created
    blobs = [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 2
    assert list(store.temp_dir.iterdir()) == []


def test_empty_files_and_many_files_in_parallel(store: ArtifactStore, tmp_path: Path) -> None:
    paths = []
    for index in range(20):
        path = tmp_path / f"f{index}"
        path.write_bytes(os.urandom(index * 1000))
        paths.append(path)
    blobs = store.store([source(p) for p in paths])
    for path, blob in zip(paths, blobs, strict=True):
        assert blob.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert store.hash_blobs([b.digest for b in blobs]) == {b.digest: b.digest for b in blobs}


def test_a_file_replaced_or_changed_after_planning_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_bytes(b"one")
    planned = source(path)
    path.unlink()
    path.write_bytes(b"two!")  # the inode number may be reused: the size and time still differ
    with pytest.raises(InvalidInput):
        store.store([planned])
    planned = source(path)
    with path.open("ab") as handle:
        handle.write(b" more")
    with pytest.raises(InvalidInput, match="changed while"):
        store.store([planned])
    assert list(store.temp_dir.iterdir()) == []
    assert not any(p.is_file() for p in (store.root / "sha256").rglob("*"))


def test_a_missing_source_or_symlink_swap_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_bytes(b"x")
    planned = source(path)
    path.unlink()
    with pytest.raises(NotFound):
        store.store([planned])
    (tmp_path / "elsewhere").write_bytes(b"x")
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeInput):
        store.store([planned])


def test_damaged_and_missing_blobs_are_detected(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_bytes(b"payload" * 1000)
    (blob,) = store.store([source(path)])
    blob_path = store.blob_path(blob.digest)
    blob_path.chmod(0o644)
    with blob_path.open("r+b") as handle:
        handle.seek(10)
        handle.write(b"X")
    assert store.hash_blob(blob.digest) != blob.digest
    with pytest.raises(IntegrityFailure, match="damaged"):
        store.copy_out(blob.digest, tmp_path / "out")
    store.remove([blob.digest])
    assert store.hash_blob(blob.digest) is None
    with pytest.raises(IntegrityFailure, match="missing"):
        store.copy_out(blob.digest, tmp_path / "out2")


def test_copy_out_writes_a_new_file_only(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "w"
    path.write_bytes(b"abc")
    (blob,) = store.store([source(path)])
    store.copy_out(blob.digest, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"abc"
    with pytest.raises(FileExistsError):
        store.copy_out(blob.digest, tmp_path / "copy")


def test_the_store_lock_can_be_taken_repeatedly(store: ArtifactStore) -> None:
    with store.lock():
        pass
    with store.lock():
        pass
