"""A registration killed with SIGKILL midway leaves temporary files and unreferenced blobs; start-up
and `aperture models gc` remove them, and never what a live registration is writing.

The registering process is real: a child Python process registers a tiny random Llama (plus a
large extra file, so that one blob is complete and unreferenced when it dies) and reports, once
the first file is stored, that it is midway; the test then kills it with SIGKILL, or lets it go on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from aperture.access.domain import SYSTEM, SecurityLevel
from aperture.bootstrap import Services
from aperture.cli import app
from aperture.cli_support import CliState
from aperture.core.errors import NotFound
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import write_tiny_llama

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from aperture.access.domain import SYSTEM, SecurityLevel
    from aperture.bootstrap import build_services
    from aperture.settings import Settings

    source, name, level, midway, go, after_bytes = sys.argv[1:7]


    class PauseMidway:
        # Once more than `after_bytes` are stored (the first, largest file is complete and the
        # next one is being written), say so and wait for `go` (or for SIGKILL).
        def __init__(self):
            self.done = 0
            self.paused = False

        def note(self, message):
            pass

        def start(self, total_bytes, files):
            pass

        def advance(self, done_bytes):
            self.done += done_bytes
            if not self.paused and self.done > int(after_bytes):
                self.paused = True
                Path(midway).write_text(str(os.getpid()))
                while not Path(go).exists():
                    time.sleep(0.02)


    services = build_services(Settings())
    upper = {"level": SecurityLevel[level], "programme": "frontier"} if level != "SL1" else {}
    services.registry.register(SYSTEM, Path(source), name, "1", progress=PauseMidway(), **upper)
    services.close()
    """
)
EXTRA = 9 * 1024 * 1024  # larger than the tiny Llama's weights: stored first


@pytest.fixture(scope="session")
def tiny_llama(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(bundled_model_dir, tmp_path_factory.mktemp("tiny-llama"), max_position_embeddings=128)


@dataclass
class Registering:
    """A registration running in a child process, paused midway."""

    process: subprocess.Popen[bytes]
    go: Path

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait() == -signal.SIGKILL

    def finish(self) -> None:
        self.go.write_text("go")
        _, errors = self.process.communicate()
        assert self.process.returncode == 0, errors.decode()


def start_registration(services: Services, source: Path, name: str, level: str, tmp_path: Path) -> Registering:
    midway, go = tmp_path / f"{name}.midway", tmp_path / f"{name}.go"
    env = dict(os.environ)
    env.update(
        {
            "APERTURE_HOME": str(services.settings.home),
            "APERTURE_HASH_WORKERS": "1",  # one file at a time: largest first
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")]
            ),
        }
    )
    if services.settings.database_url:
        env["APERTURE_DATABASE_URL"] = services.settings.database_url
    command = [sys.executable, "-c", CHILD, str(source), name, level, str(midway), str(go), str(EXTRA)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Wait on the child's progress, not on the clock: it says when it is midway, or it exits.
    while not midway.exists():
        if process.poll() is not None:
            raise AssertionError(f"the registration ended before midway: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        time.sleep(0.02)
    return Registering(process, go)


@dataclass
class Store:
    services: Services
    shares: list[str]

    @property
    def settings(self) -> object:
        return self.services.settings

    def temporary(self) -> list[Path]:
        artifacts, sealed = self.services.settings.artifacts_dir / ".tmp", self.services.settings.sealed_dir
        found = list(artifacts.glob("*")) if artifacts.exists() else []
        return found + (sorted(sealed.glob("*/*.part")) if sealed.exists() else [])

    def blobs(self) -> set[str]:
        root = self.services.settings.artifacts_dir / "sha256"
        return {p.parent.name + p.name for p in root.glob("*/*")} if root.exists() else set()

    def sealed_files(self) -> set[str]:
        root = self.services.settings.sealed_dir
        return {p.name for p in root.glob("*/*") if not p.name.endswith(".part")} if root.exists() else set()

    def referenced(self) -> tuple[set[str], set[str]]:
        with self.services.database.read() as connection:
            blobs = set(connection.execute(text("SELECT sha256 FROM vault_blob_refs")).scalars())
            sealed = set(connection.execute(text("SELECT artifact_id FROM vault_sealed_blobs")).scalars())
        return blobs, sealed

    def is_clean(self) -> bool:
        blobs, sealed = self.referenced()
        return not self.temporary() and self.blobs() == blobs and self.sealed_files() == sealed

    def gc(self, *args: str) -> dict[str, object]:
        state = CliState(settings=self.services.settings)
        try:
            result = CliRunner().invoke(app, ["models", "gc", "--json", *args], obj=state)
        finally:
            if state._services is not None:
                state._services.close()
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    def verify_all(self) -> list[str]:
        for name, share in zip(("carol", "dave"), self.shares, strict=True):
            if self.services.vault.seal_status().sealed:
                self.services.vault.present_share(name, share)
        verified = []
        for model in self.services.registry.list_models():
            for version in model.versions:
                self.services.registry.verify_version(model.name, version)
                verified.append(f"{model.name}:{version}")
        return verified


@pytest.fixture
def store(services: Services, tiny_llama: Path, tmp_path: Path) -> Iterator[Store]:
    """Two versions already registered, one per tier, sharing files with what will be killed."""
    services.access.add_programme(SYSTEM, "frontier", "Frontier models")
    with services.database.transaction() as connection:
        _, handed = services.vault.init_seal(connection, ["carol", "dave"], 2, services.clock.now())
    services.registry.register(SYSTEM, tiny_llama, "kept", "1")
    services.registry.register(SYSTEM, tiny_llama, "kept-upper", "1", level=SecurityLevel.SL4, programme="frontier")
    yield Store(services, [share.text for _, share in handed])


def crash_source(tiny_llama: Path, tmp_path: Path) -> Path:
    """The tiny Llama and one large new file (so the kill leaves a complete, unreferenced blob)."""
    source = tmp_path / "crashing"
    shutil.copytree(tiny_llama, source)
    (source / "extra.dat").write_bytes(os.urandom(EXTRA))
    return source


@pytest.mark.parametrize("level", ["SL1", "SL4"])
def test_a_registration_killed_midway_is_cleaned_up_and_nothing_else_is(
    store: Store, tiny_llama: Path, tmp_path: Path, level: str
) -> None:
    before_blobs, before_sealed = store.blobs(), store.sealed_files()
    assert store.is_clean()
    start_registration(store.services, crash_source(tiny_llama, tmp_path), "crashed", level, tmp_path).kill()
    # What the kill left: a half-written temporary file and a complete file nothing references.
    assert store.temporary(), "the kill left no temporary file"
    if level == "SL1":  # largest first: the extra file is stored, the weights (already stored) half-copied
        assert len(store.blobs() - before_blobs) == 1 and store.sealed_files() == before_sealed
    else:  # in path order, each file sealed afresh: the ones before the extra file are complete
        assert store.sealed_files() - before_sealed and store.blobs() == before_blobs
    assert not store.is_clean()
    with pytest.raises(NotFound):
        store.services.registry.get_version("crashed", "1")

    left = store.temporary()
    dry = store.gc("--dry-run")
    assert dry["dry_run"] is True and dry["removed"] == []
    assert {item["kind"] for item in dry["found"]} == {"temporary", "blob" if level == "SL1" else "sealed"}  # type: ignore[union-attr]
    assert store.temporary() == left  # a dry run removes nothing

    done = store.gc()
    assert done["removed"] == done["found"] and len(done["found"]) == len(dry["found"]) >= 2  # type: ignore[arg-type]
    assert store.is_clean()
    assert store.blobs() == before_blobs and store.sealed_files() == before_sealed
    with store.services.database.read() as connection:
        action, details = connection.execute(
            text("SELECT action, details FROM audit_events ORDER BY leaf_index DESC")
        ).first()  # type: ignore[misc]
    assert action == "registry.garbage_collected"
    assert json.loads(details)["temporary"] == 1 and json.loads(details)["bytes"] > 0
    assert sorted(store.verify_all()) == ["kept-upper:1", "kept:1"]
    # The name was never taken: registering it again works.
    again = crash_source(tiny_llama, tmp_path / "again")
    upper = {"level": SecurityLevel.SL4, "programme": "frontier"} if level == "SL4" else {}
    store.services.registry.register(SYSTEM, again, "crashed", "1", **upper)  # type: ignore[arg-type]
    assert "crashed:1" in store.verify_all()
    assert store.gc()["found"] == []


@pytest.mark.parametrize("level", ["SL1", "SL4"])
def test_gc_never_touches_a_live_registration(store: Store, tiny_llama: Path, tmp_path: Path, level: str) -> None:
    before_blobs, before_sealed = store.blobs(), store.sealed_files()
    live = start_registration(store.services, crash_source(tiny_llama, tmp_path), "live", level, tmp_path)
    try:
        writing = store.temporary()
        assert writing
        report = store.gc("--grace", "0")
        assert report["removed"] == [] and report["orphans_skipped"]
        assert store.temporary() == writing
        assert (store.blobs() - before_blobs) or (store.sealed_files() - before_sealed)
    finally:
        live.finish()
    assert store.is_clean()
    assert "live:1" in store.verify_all()


def test_server_start_up_removes_what_a_killed_registration_left(
    store: Store, tiny_llama: Path, tmp_path: Path
) -> None:
    before = store.blobs()
    start_registration(store.services, crash_source(tiny_llama, tmp_path), "crashed", "SL1", tmp_path).kill()
    assert store.temporary()
    with running_server(create_app(store.services)):
        pass
    assert store.temporary() == []  # start-up removes temporary files whose writer is gone
    assert len(store.blobs() - before) == 1  # unreferenced blobs are left for `models gc` (it checks the database)
    assert [item["kind"] for item in store.gc()["removed"]] == ["blob"]  # type: ignore[union-attr]
    assert store.is_clean()


def test_gc_keeps_sealed_files_while_a_version_lacks_its_sealed_record(services: Services, tmp_path: Path) -> None:
    from tests.registry.builders import write_hf_directory

    services.access.add_programme(SYSTEM, "frontier", "Frontier models")
    with services.database.transaction() as connection:
        services.vault.init_seal(connection, ["carol", "dave"], 2, services.clock.now())
    services.registry.register(
        SYSTEM, write_hf_directory(tmp_path / "hf"), "frontier", "1", level=SecurityLevel.SL4, programme="frontier"
    )
    sealed = sorted(p for p in services.settings.sealed_dir.glob("*/*"))
    with services.database.transaction() as connection:  # a record lost (or deleted): its file looks unreferenced
        connection.execute(text("DELETE FROM vault_sealed_blobs WHERE artifact_id = :a"), {"a": sealed[0].name})
    report = services.registry.collect_garbage(SYSTEM)
    assert report.sealed_withheld is not None and "frontier:1 has no sealed record for 1" in report.sealed_withheld
    assert report.found == () and sorted(services.settings.sealed_dir.glob("*/*")) == sealed


def test_gc_is_for_administrators(services: Services) -> None:
    from aperture.access.domain import Caller, Role
    from aperture.core.errors import Forbidden

    with pytest.raises(Forbidden):
        services.registry.collect_garbage(Caller("ada", (Role.CHIEF_SCIENTIST,), "abcd0002"), dry_run=True)
