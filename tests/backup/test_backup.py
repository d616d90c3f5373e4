"""Backup and restore of a whole instance, on real parts: a registered model, log events, the CLI
in this process and in a child process killed midway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.backup.domain import MANIFEST_FILE, parse_manifest
from aperture.bootstrap import Services, build_services
from aperture.core.errors import UnsafeInput

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def database_url() -> Iterator[str | None]:
    """These tests run on SQLite whatever APERTURE_TEST_DATABASE_URL says (test_postgresql.py
    covers PostgreSQL): restoring a PostgreSQL backup needs a database of its own."""
    yield None


def test_backup_then_restore_verifies_on_the_copy(filled: Services, run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    size = filled.audit.tree_size()
    result = invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "keys"), "--json")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["tree_size"] == size and body["database"] == "sqlite"
    manifest = parse_manifest((tmp_path / "b" / MANIFEST_FILE).read_bytes())
    assert manifest.keys_kept_apart and manifest.tree_size == size
    paths = {entry.path for entry in manifest.files}
    assert "aperture.db" in paths and "instance.json" in paths and "raid/attachments/note.txt" in paths
    assert not any(path.startswith("keys/") for path in paths)  # the keys are kept apart
    assert not (tmp_path / "b" / "keys").exists()
    assert (tmp_path / "keys" / "instance-ed25519.pem").stat().st_mode & 0o077 == 0

    result = invoke(  # type: ignore[operator]
        "restore", str(tmp_path / "b"), "--home", str(tmp_path / "new"), "--keys-from", str(tmp_path / "keys")
    )
    assert result.exit_code == 0, result.output
    assert "audit verify: OK" in result.stdout and "models verify m:1: OK" in result.stdout
    assert not list(tmp_path.glob("new.partial-*"))
    restored = build_services(filled.settings.model_copy(update={"home": tmp_path / "new"}))
    try:
        assert restored.audit.verify().ok
        assert restored.registry.verify_version("m", "1").files_checked > 0
        assert restored.keys.key_id == filled.keys.key_id
        assert (tmp_path / "new" / "raid" / "attachments" / "note.txt").read_text() == "an attachment\n"
    finally:
        restored.close()


def test_a_changed_byte_is_refused_naming_the_file(filled: Services, run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    assert invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k")).exit_code == 0  # type: ignore[operator]
    manifest = parse_manifest((tmp_path / "b" / MANIFEST_FILE).read_bytes())
    blob = next(e for e in manifest.files if e.path.startswith("artifacts/"))
    path = tmp_path / "b" / blob.path
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    result = invoke("restore", str(tmp_path / "b"), "--home", str(tmp_path / "new"), "--keys-from", str(tmp_path / "k"))  # type: ignore[operator]
    assert result.exit_code != 0
    assert blob.path in result.output.replace("\n", "") and "changed" in result.output
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob("new.partial-*"))


def test_restore_refuses_a_non_empty_home_wrong_keys_and_an_unlisted_file(
    filled: Services, run: object, tmp_path: Path
) -> None:
    invoke = run  # type: ignore[assignment]
    assert invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k")).exit_code == 0  # type: ignore[operator]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    result = invoke("restore", str(tmp_path / "b"), "--home", str(busy), "--keys-from", str(tmp_path / "k"))  # type: ignore[operator]
    assert result.exit_code != 0 and "not an empty directory" in result.output
    assert [p.name for p in busy.iterdir()] == ["x"]
    other = tmp_path / "other"
    other.mkdir()
    from aperture.vault.keys import generate_instance_keys

    generate_instance_keys(other)
    result = invoke("restore", str(tmp_path / "b"), "--home", str(tmp_path / "n1"), "--keys-from", str(other))  # type: ignore[operator]
    assert result.exit_code != 0 and "not this backup's" in result.output
    (tmp_path / "b" / "extra.bin").write_bytes(b"x")
    result = invoke("restore", str(tmp_path / "b"), "--home", str(tmp_path / "n2"), "--keys-from", str(tmp_path / "k"))  # type: ignore[operator]
    assert result.exit_code != 0 and "extra.bin" in result.output
    assert not (tmp_path / "n1").exists() and not (tmp_path / "n2").exists()


def test_backup_without_keys_says_so_and_refuses_an_existing_destination(run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    result = invoke("backup", str(tmp_path / "b"))  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert "holds no keys" in result.stdout
    result = invoke("backup", str(tmp_path / "b"))  # type: ignore[operator]
    assert result.exit_code != 0 and "already exists" in result.output
    result = invoke("backup", str(tmp_path / "c"), "--keys-to", str(tmp_path / "c" / "keys"))  # type: ignore[operator]
    assert result.exit_code != 0 and "apart" in result.output
    assert not (tmp_path / "c").exists()


def test_a_manifest_naming_a_path_outside_is_refused(filled: Services, run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    assert invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k")).exit_code == 0  # type: ignore[operator]
    path = tmp_path / "b" / MANIFEST_FILE
    body = json.loads(path.read_text())
    body["files"][0]["path"] = "../outside"
    path.chmod(0o600)
    path.write_text(json.dumps(body))
    with pytest.raises(UnsafeInput):
        parse_manifest(path.read_bytes())
    result = invoke("restore", str(tmp_path / "b"), "--home", str(tmp_path / "n"), "--keys-from", str(tmp_path / "k"))  # type: ignore[operator]
    assert result.exit_code != 0 and "../outside" in result.output
    assert not (tmp_path / "n").exists() and not (tmp_path / "outside").exists()


# --- killed midway ---------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from aperture.backup.service import backup_source, create_backup
from aperture.bootstrap import build_services
from aperture.settings import load_settings

midway = Path(sys.argv[2])

class Pause:
    def note(self, message): pass
    def start(self, total_bytes, files): pass
    def advance(self, done):
        if not midway.exists():
            midway.write_text("midway")
            time.sleep(600)

services = build_services(load_settings())
create_backup(backup_source(services), Path(sys.argv[1]), keys_to=Path(sys.argv[3]), progress=Pause())
"""


def _child_env(services: Services) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "APERTURE_HOME": str(services.settings.home),
            "PYTHONPATH": os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]),
        }
    )
    if services.settings.database_url:
        env["APERTURE_DATABASE_URL"] = services.settings.database_url
    return env


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_backup_killed_midway_loses_nothing(filled: Services, run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    home = filled.settings.home
    before = _tree(home / "artifacts" / "sha256"), filled.audit.tree_size()
    destination, keys, midway = tmp_path / "b", tmp_path / "k", tmp_path / "midway"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(destination), str(midway), str(keys)],
        env=_child_env(filled),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not midway.exists():
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    partials = list(tmp_path.glob("b.partial-*"))
    assert len(partials) == 1 and not (partials[0] / MANIFEST_FILE).exists()
    assert not destination.exists() and not keys.exists()
    assert (_tree(home / "artifacts" / "sha256"), filled.audit.tree_size()) == before
    result = invoke("restore", str(partials[0]), "--home", str(tmp_path / "n"), "--keys-from", str(home / "keys"))  # type: ignore[operator]
    assert result.exit_code != 0 and "incomplete" in result.output

    result = invoke("backup", str(destination), "--keys-to", str(keys))  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert "interrupted" in result.output and not list(tmp_path.glob("b.partial-*"))
    result = invoke("restore", str(destination), "--home", str(tmp_path / "n"), "--keys-from", str(keys))  # type: ignore[operator]
    assert result.exit_code == 0, result.output


def test_the_cli_killed_once_its_partial_directory_appears(filled: Services, run: object, tmp_path: Path) -> None:
    """The real command in a child process, killed with SIGKILL as soon as it starts writing."""
    invoke = run  # type: ignore[assignment]
    attachments = filled.settings.home / "raid" / "attachments"
    for index in range(4):  # enough bytes that the copy takes a while
        (attachments / f"big-{index}.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    destination = tmp_path / "b"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("aperture")), "backup", str(destination)],
        env=_child_env(filled),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not list(tmp_path.glob("b.partial-*")) and process.poll() is None:
            time.sleep(0.001)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    if process.returncode != -signal.SIGKILL:  # pragma: no cover - finished before the kill landed
        pytest.skip("the backup finished before it could be killed")
    assert not destination.exists()
    assert all(not (p / MANIFEST_FILE).exists() for p in tmp_path.glob("b.partial-*"))
    result = invoke("backup", str(destination))  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert (destination / MANIFEST_FILE).exists() and not list(tmp_path.glob("b.partial-*"))
    shutil.rmtree(destination)


def test_a_backup_taken_while_the_instance_writes_is_consistent(filled: Services, run: object, tmp_path: Path) -> None:
    """Keys issued (rows and log events) all through the backup: the restored log verifies and
    holds exactly the events the snapshot saw."""
    import threading

    from aperture.access.domain import SYSTEM, Role

    invoke = run  # type: ignore[assignment]
    stop = threading.Event()
    issued: list[int] = []

    def write() -> None:
        while not stop.is_set():
            filled.access.issue_key(SYSTEM, name=f"k{len(issued)}", principal="admin", roles=(Role.ADMINISTRATOR,))
            issued.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(issued) < 3:
            time.sleep(0.01)
        result = invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k"))  # type: ignore[operator]
    finally:
        stop.set()
        writer.join()
    assert result.exit_code == 0, result.output
    manifest = parse_manifest((tmp_path / "b" / MANIFEST_FILE).read_bytes())
    assert manifest.tree_size < filled.audit.tree_size()  # the writer went on after the snapshot
    result = invoke("restore", str(tmp_path / "b"), "--home", str(tmp_path / "n"), "--keys-from", str(tmp_path / "k"))  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert f"audit verify: OK ({manifest.tree_size} events" in result.stdout
