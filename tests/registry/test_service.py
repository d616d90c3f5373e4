"""Registering, reading, verifying and exporting versions on a real instance (SQLite or PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from aperture.access.domain import ANONYMOUS, SYSTEM, Caller, Role
from aperture.bootstrap import Services, build_services
from aperture.core.errors import (
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    NotInitialised,
    TooLarge,
    Unauthenticated,
    UnsafeInput,
)
from aperture.registry.domain import FileKind, Modality, WeightFormat
from tests.registry.builders import raw_safetensors, write_gguf, write_hf_directory, write_pickle, write_safetensors

MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


def blobs(services: Services) -> set[Path]:
    root = services.settings.artifacts_dir / "sha256"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def temp_files(services: Services) -> list[Path]:
    temp = services.settings.artifacts_dir / ".tmp"
    return list(temp.iterdir()) if temp.exists() else []


def rows(services: Services, table: str) -> int:
    with services.database.read() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


def actions(services: Services) -> list[str]:
    with services.database.read() as connection:
        return [r[0] for r in connection.execute(text("SELECT action FROM audit_events ORDER BY leaf_index"))]


def snapshot(services: Services) -> tuple[object, ...]:
    return (
        frozenset(blobs(services)),
        rows(services, "registry_models"),
        rows(services, "registry_versions"),
        rows(services, "registry_version_files"),
        rows(services, "vault_blobs"),
        rows(services, "vault_blob_refs"),
        len(actions(services)),
    )


def model_signing_verify(services: Services, directory: Path) -> subprocess.CompletedProcess[str]:
    public = services.settings.keys_dir / "artifacts-p256.pub"
    command = [str(MODEL_SIGNING), "verify", "key", "--public_key", str(public), str(directory)]
    command += ["--signature", str(directory / "model.sig")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


# --- registering --------------------------------------------------------------------------


def test_register_a_single_safetensors_file(services: Services, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "tiny.safetensors")
    result = services.registry.register(
        SYSTEM,
        path,
        "tiny",
        "1.0",
        licence="Apache-2.0",
        training_flop="3.2e21",
        modalities=["text"],
        intended_use="tests",
        description="a tiny model",
    )
    version = result.version
    assert result.created and result.new_bytes == path.stat().st_size
    assert version.reference == "tiny:1.0"
    assert version.format is WeightFormat.SAFETENSORS
    assert version.parameter_count == 36 and version.dtypes == ("F16", "F32")
    assert [(f.path, f.kind) for f in version.files] == [("tiny.safetensors", FileKind.WEIGHTS)]
    assert version.facts.training_flop == 3_200_000_000_000_000_000_000
    assert version.facts.modalities == (Modality.TEXT,)
    assert version.signing_key_id == services.keys.artifact_key_id
    assert services.registry.get_version("tiny", "1.0") == version
    assert actions(services)[-3:] == [
        "registry.model.created",
        "access.asset.classified",
        "registry.version.registered",
    ]
    assert temp_files(services) == []


def test_register_a_sharded_hugging_face_directory(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf", sharded=True)
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    result = services.registry.register(SYSTEM, root, "tiny-hf", "0.1", licence="MIT")
    version = result.version
    assert version.architecture == "LlamaForCausalLM" and version.model_type == "llama"
    assert version.parameter_count == 100
    assert version.tensor_count == 3
    kinds = {f.path: f.kind for f in version.files}
    assert kinds["model.safetensors.index.json"] is FileKind.INDEX
    assert kinds["tokenizer.json"] is FileKind.TOKENIZER
    assert kinds["README.md"] is FileKind.DOCUMENTATION
    assert kinds["generation_config.json"] is FileKind.CONFIG
    assert set(result.skipped) == {".git", ".gitattributes"}
    assert version.total_bytes == sum(f.size for f in version.files)


def test_register_a_gguf_file(services: Services, tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    version = services.registry.register(SYSTEM, path, "tiny-gguf", "1").version
    assert version.format is WeightFormat.GGUF
    assert version.architecture == "llama" and version.model_type == "llama"
    assert version.parameter_count == 4 * 32 + 32


def test_identical_files_are_stored_once_across_versions(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf")
    first = services.registry.register(SYSTEM, root, "dedup", "1")
    stored = blobs(services)
    second = services.registry.register(SYSTEM, root, "dedup", "2")
    assert blobs(services) == stored
    assert second.new_bytes == 0 and second.deduplicated_files == len(first.version.files)
    assert second.version.files == first.version.files
    # The manifest also lists each version's own signed facts (naming the version), so it differs.
    assert second.version.manifest_digest != first.version.manifest_digest
    summaries = services.registry.list_models()
    assert [(m.name, m.versions, m.latest_version) for m in summaries] == [("dedup", ("1", "2"), "2")]
    assert [v.version for v in services.registry.get_model("dedup").versions] == ["1", "2"]


def test_lineage_to_a_registered_or_external_base(services: Services, tmp_path: Path) -> None:
    base = services.registry.register(
        SYSTEM, write_gguf(tmp_path / "b.gguf"), "base", "1", base_model="org/upstream", base_licence="Apache-2.0"
    ).version
    assert base.facts.lineage.external and base.facts.lineage.base_licence == "Apache-2.0"
    child = services.registry.register(
        SYSTEM, write_safetensors(tmp_path / "c.safetensors"), "child", "1", base_model="base:1"
    ).version
    assert child.facts.lineage.registered_base == ("base", "1") and not child.facts.lineage.external
    before = snapshot(services)
    with pytest.raises(NotFound, match="base model base:9"):
        services.registry.register(SYSTEM, tmp_path / "c.safetensors", "child", "2", base_model="base:9")
    assert snapshot(services) == before


# --- refusals: each leaves nothing behind -------------------------------------------------


def test_a_path_that_does_not_exist(services: Services, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        services.registry.register(SYSTEM, tmp_path / "nope", "m", "1")
    assert "does not exist" in caught.value.message and caught.value.hint


def test_a_truncated_safetensors_file(services: Services, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-7])
    before = snapshot(services)
    with pytest.raises(InvalidInput, match="truncated") as caught:
        services.registry.register(SYSTEM, path, "m", "1")
    assert "m.safetensors" in caught.value.message and "again" in caught.value.hint
    assert snapshot(services) == before


def test_a_corrupt_gguf_in_a_directory(services: Services, tmp_path: Path) -> None:
    root = tmp_path / "m"
    path = write_gguf(root / "model.gguf")
    data = bytearray(path.read_bytes())
    data[:4] = b"GGML"
    path.write_bytes(bytes(data))
    before = snapshot(services)
    with pytest.raises(InvalidInput, match="magic"):
        services.registry.register(SYSTEM, root, "m", "1")
    assert snapshot(services) == before


def test_a_header_claiming_100_gb(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(raw_safetensors({}, b"", length=100 * 1024**3))
    with pytest.raises(TooLarge, match="limit"):
        services.registry.register(SYSTEM, path, "m", "1")
    header = {"w": {"dtype": "F32", "shape": [25 * 1024**3], "data_offsets": [0, 100 * 1024**3]}}
    path.write_bytes(raw_safetensors(header, b"\0" * 64))
    with pytest.raises(InvalidInput, match="truncated"):
        services.registry.register(SYSTEM, path, "m", "1")
    assert blobs(services) == set()


def test_pickle_files_are_refused_with_the_way_to_convert(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf")
    write_pickle(root / "pytorch_model.bin")
    with pytest.raises(UnsafeInput) as caught:
        services.registry.register(SYSTEM, root, "m", "1")
    assert "pickle" in caught.value.message and "arbitrary code" in caught.value.message
    assert "safetensors" in caught.value.hint
    with pytest.raises(UnsafeInput, match="pickle"):
        services.registry.register(SYSTEM, write_pickle(tmp_path / "model.pt"), "m", "1")
    (root / "pytorch_model.bin").unlink()
    write_pickle(root / "extra" / "weights.dat")  # a pickle under an innocent name
    with pytest.raises(UnsafeInput, match="pickle"):
        services.registry.register(SYSTEM, root, "m", "1")
    assert blobs(services) == set()
    assert rows(services, "registry_versions") == 0


def test_a_symlink_out_of_the_tree_is_refused(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    (root / "notes.txt").symlink_to(secret)
    with pytest.raises(UnsafeInput, match="outside the model directory") as caught:
        services.registry.register(SYSTEM, root, "m", "1")
    assert "cp -L" in caught.value.hint
    assert blobs(services) == set()


def test_a_symlink_inside_the_tree_is_stored_under_its_own_name(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf")
    (root / "LICENSE").write_text("Apache-2.0\n")
    (root / "LICENSE.txt").symlink_to(root / "LICENSE")
    version = services.registry.register(SYSTEM, root, "m", "1").version
    files = {f.path: f.sha256 for f in version.files}
    assert files["LICENSE.txt"] == files["LICENSE"]


def test_special_files_are_refused(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf")
    import os

    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafeInput, match="special file"):
        services.registry.register(SYSTEM, root, "m", "1")


def test_a_duplicate_version_is_a_conflict(services: Services, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors")
    services.registry.register(SYSTEM, path, "m", "1")
    before = snapshot(services)
    with pytest.raises(Conflict) as caught:
        services.registry.register(SYSTEM, write_gguf(tmp_path / "other.gguf"), "m", "1")
    assert "already registered" in caught.value.message and "--version" in caught.value.hint
    assert snapshot(services) == before


def test_a_malformed_licence(services: Services, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="malformed licence") as caught:
        services.registry.register(SYSTEM, write_safetensors(tmp_path / "m.safetensors"), "m", "1", licence="apache 2")
    assert "SPDX" in caught.value.hint
    assert rows(services, "registry_versions") == 0


def test_unauthorized_callers_cannot_register(services: Services, tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors")
    with pytest.raises(Unauthenticated):
        services.registry.register(ANONYMOUS, path, "m", "1")
    with pytest.raises(Forbidden):
        services.registry.register(Caller("rob", (Role.RESEARCHER,), "abcd0001"), path, "m", "1")
    chief = Caller("ada", (Role.CHIEF_SCIENTIST,), "abcd0002")
    assert services.registry.register(chief, path, "m", "1").version.registered_by == "ada (key abcd0002)"


def test_a_failure_after_storing_removes_only_the_blobs_nobody_else_uses(services: Services, tmp_path: Path) -> None:
    shared = write_safetensors(tmp_path / "one" / "model.safetensors")
    services.registry.register(SYSTEM, shared.parent, "kept", "1")
    kept = blobs(services)
    root = tmp_path / "two"
    root.mkdir()
    (root / "model.safetensors").write_bytes(shared.read_bytes())  # already stored
    (root / "README.md").write_text("new content\n")  # stored by the failing registration
    key = services.settings.keys_dir / "artifacts-p256.pem"
    key.rename(key.with_suffix(".moved"))  # a fresh process cannot load the key: signing fails after storing
    fresh = build_services(services.settings)
    before = snapshot(services)
    try:
        with pytest.raises(NotInitialised):
            fresh.registry.register(SYSTEM, root, "failing", "1")
    finally:
        key.with_suffix(".moved").rename(key)
        fresh.close()
    assert snapshot(services) == before
    assert blobs(services) == kept
    assert temp_files(services) == []


# --- verifying and exporting --------------------------------------------------------------


def test_verify_passes_then_names_the_damaged_file(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf", sharded=True)
    version = services.registry.register(SYSTEM, root, "m", "1").version
    report = services.registry.verify_version("m", "1")
    assert report.files_checked == len(version.files) and report.bytes_checked == version.total_bytes
    assert actions(services)[-1] == "registry.version.verified"
    target = next(f for f in version.files if f.path == "model-00002-of-00002.safetensors")
    blob = services.vault.artifacts.blob_path(target.sha256)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "1")
    assert "model-00002-of-00002.safetensors (content changed)" in caught.value.message
    assert caught.value.details["damaged"] == ["model-00002-of-00002.safetensors"]
    assert actions(services)[-1] == "registry.version.verification_failed"
    blob.unlink()
    with pytest.raises(IntegrityFailure, match=r"model-00002-of-00002.safetensors \(missing\)"):
        services.registry.verify_version("m", "1")


def test_verify_detects_an_altered_record_or_signature(services: Services, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1")
    with services.database.transaction() as connection:
        connection.execute(
            text("UPDATE registry_version_files SET sha256 = :d WHERE path = 'README.md'"), {"d": "0" * 64}
        )
    with pytest.raises(IntegrityFailure, match=r"README\.md: signed digest"):
        services.registry.verify_version("m", "1")
    with services.database.transaction() as connection:
        connection.execute(text("UPDATE registry_versions SET signature = :s"), {"s": '{"mediaType": "x"}'})
    with pytest.raises(IntegrityFailure, match="signature is invalid"):
        services.registry.verify_version("m", "1")


def test_verify_unknown_version(services: Services, tmp_path: Path) -> None:
    licensee = Caller("l", (Role.LICENSEE,), "abcd0003")
    with pytest.raises(NotFound):
        services.registry.verify_version("nope", "1")
    with pytest.raises(NotFound):  # an unknown version first reads as unknown, whoever asks
        services.registry.verify_version("nope", "1", caller=licensee)
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "m"), "m", "1")
    with pytest.raises(Forbidden):  # one the caller sees, without a role that answers for integrity
        services.registry.verify_version("m", "1", caller=licensee)


def test_export_is_accepted_by_model_signing_and_a_changed_byte_is_not(services: Services, tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "hf", sharded=True)
    (root / "sub").mkdir()
    write_safetensors(root / "sub" / "extra.safetensors", {"x": np.zeros(3, np.float32)})
    services.registry.register(SYSTEM, root, "m", "1")
    result = services.registry.export_version("m", "1", tmp_path / "export")
    assert (result.directory / "sub" / "extra.safetensors").read_bytes() == (
        root / "sub" / "extra.safetensors"
    ).read_bytes()
    assert result.signature_path == result.directory / "model.sig"
    done = model_signing_verify(services, result.directory)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout
    target = result.directory / "tokenizer.json"
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    target.write_bytes(bytes(data))
    done = model_signing_verify(services, result.directory)
    assert done.returncode != 0
    assert "tokenizer.json" in done.stderr
    assert actions(services)[-1] == "registry.version.exported"


def test_export_refuses_a_non_empty_directory_and_cleans_up_on_damage(services: Services, tmp_path: Path) -> None:
    version = services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1").version
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(Conflict, match="not an empty directory"):
        services.registry.export_version("m", "1", busy)
    weights = next(f for f in version.files if f.kind is FileKind.WEIGHTS)
    blob = services.vault.artifacts.blob_path(weights.sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"\0" * weights.size)
    with pytest.raises(IntegrityFailure, match=r"model\.safetensors"):
        services.registry.export_version("m", "1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
