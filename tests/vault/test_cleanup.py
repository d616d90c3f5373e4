"""The rules for removing what interrupted writes leave, on a real file system with real locks."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.vault.cleanup import Kept, LeftoverKind, blob_temp_name, sealed_temp_name, sweep, writer_pid

ARTIFACT_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def temp(directory: Path, name: str, *, age_s: float = 0.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"half a file")
    if age_s:
        moment = time.time() - age_s
        os.utime(path, (moment, moment))
    return path


@pytest.fixture
def locked() -> Iterator[list[int]]:
    held: list[int] = []
    yield held
    for fd in held:
        os.close(fd)


def hold_lock(path: Path, held: list[int]) -> None:
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.append(fd)


def test_temporary_names_carry_the_writers_pid() -> None:
    assert writer_pid(blob_temp_name()) == os.getpid()
    assert writer_pid(sealed_temp_name(ARTIFACT_ID)) == os.getpid()
    assert writer_pid("0123456789abcdef.part") is None  # named before pids were recorded
    assert writer_pid("../1-0123456789abcdef.part") is None


def test_a_dead_writers_file_goes_at_once_and_a_live_ones_stays(tmp_path: Path, dead_pid: int) -> None:
    gone = temp(tmp_path, f"{dead_pid}-{'a' * 16}.part")
    ours = temp(tmp_path, blob_temp_name())
    sealed = temp(tmp_path / "0f", f"{ARTIFACT_ID}.{dead_pid}.part")
    found, kept = sweep([gone, ours, sealed], grace_s=600, dry_run=False)
    assert {item.path for item in found} == {gone, sealed} and all(item.removed for item in found)
    assert {item.kind for item in found} == {LeftoverKind.TEMPORARY}
    assert not gone.exists() and not sealed.exists()
    assert kept == [Kept(ours, "being written")] and ours.exists()


def test_a_held_lock_protects_a_file_whatever_its_name_or_age(tmp_path: Path, dead_pid: int, locked: list[int]) -> None:
    """A writer on another host's pid namespace, or whose pid was reused: its lock still counts."""
    foreign = temp(tmp_path, f"{dead_pid}-{'b' * 16}.part")
    stale = temp(tmp_path, blob_temp_name(), age_s=3600)
    for path in (foreign, stale):
        hold_lock(path, locked)
    found, kept = sweep([foreign, stale], grace_s=600, dry_run=False)
    assert found == [] and {k.reason for k in kept} == {"being written (locked)"}
    assert foreign.exists() and stale.exists()


def test_the_grace_period_covers_files_without_a_known_writer(tmp_path: Path) -> None:
    young = temp(tmp_path, "0123456789abcdef.part", age_s=10)
    old = temp(tmp_path, "fedcba9876543210.part", age_s=3600)
    abandoned = temp(tmp_path, blob_temp_name(), age_s=3600)  # our pid, but nobody holds its lock
    found, kept = sweep([young, old, abandoned], grace_s=600, dry_run=False)
    assert {item.path for item in found} == {old, abandoned}
    assert kept == [Kept(young, "newer than the grace period")]


def test_a_dry_run_removes_nothing_and_odd_entries_are_left(tmp_path: Path, dead_pid: int) -> None:
    gone = temp(tmp_path, f"{dead_pid}-{'c' * 16}.part")
    directory = tmp_path / f"{dead_pid}-{'d' * 16}.part"
    directory.mkdir()
    link = tmp_path / f"{dead_pid}-{'e' * 16}.part"
    link.symlink_to(gone)
    found, kept = sweep([gone, directory, link, tmp_path / "vanished.part"], grace_s=0, dry_run=True)
    assert [(item.path, item.removed) for item in found] == [(gone, False)]
    assert {k.path for k in kept} == {directory, link}
    assert gone.exists() and directory.is_dir() and link.is_symlink()
