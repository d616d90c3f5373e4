"""The signature format: our verifier and model_signing agree, and tampering is caught."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.core.errors import IntegrityFailure, InvalidInput
from aperture.vault.domain import (
    blob_relative_path,
    compare_manifest,
    pae,
    root_digest,
    statement_payload,
    verify_bundle,
)
from aperture.vault.signing import sign_manifest

ENTRIES = [("b/weights.safetensors", "ab" * 32), ("a.json", "cd" * 32)]
IGNORED = (".git", ".gitattributes", ".github", ".gitignore", "model.sig")


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_blob_layout_is_two_hex_then_sixty_two() -> None:
    digest = "0f" + "1" * 62
    assert str(blob_relative_path(digest)) == "sha256/0f/" + "1" * 62
    with pytest.raises(InvalidInput):
        blob_relative_path("../../etc/passwd")


def test_our_bundle_verifies_and_lists_the_signed_files(key: ec.EllipticCurvePrivateKey) -> None:
    private = key
    bundle = sign_manifest(private, "tiny:1.0", sorted(ENTRIES), IGNORED)
    signed = verify_bundle(bundle, private.public_key())
    assert dict(signed.files) == dict(ENTRIES)
    assert signed.root_digest == root_digest(ENTRIES)
    assert signed.serialization["method"] == "files"
    assert sorted(signed.serialization["ignore_paths"]) == sorted(IGNORED)
    assert compare_manifest(signed, dict(ENTRIES)) == []
    assert compare_manifest(signed, {"a.json": "cd" * 32, "c": "ee" * 32}) == [
        "c is recorded but not signed",
        "b/weights.safetensors is signed but not recorded",
    ]


def _model_signing_statement(name: str, entries: list[tuple[str, str]], ignored: tuple[str, ...]) -> dict[str, Any]:
    """The statement model_signing's own Payload builds for the same manifest (the oracle)."""
    from google.protobuf import json_format
    from model_signing import manifest
    from model_signing._hashing import hashing
    from model_signing._signing import signing

    items = [
        manifest.FileManifestItem(path=PurePosixPath(p), digest=hashing.Digest("sha256", bytes.fromhex(d)))
        for p, d in entries
    ]
    serialization = manifest._FileSerialization("sha256", False, [Path(p) for p in ignored])
    payload = signing.Payload(manifest.Manifest(name, items, serialization))
    return json.loads(json_format.MessageToJson(payload.statement.pb))  # type: ignore[no-any-return]


def _normalised(statement: dict[str, Any]) -> dict[str, Any]:
    statement["predicate"]["serialization"]["ignore_paths"] = sorted(
        statement["predicate"]["serialization"]["ignore_paths"]
    )
    return statement


def test_our_statement_is_the_one_model_signing_builds() -> None:
    ours = json.loads(statement_payload("tiny:1.0", ENTRIES, IGNORED))
    assert _normalised(ours) == _normalised(_model_signing_statement("tiny:1.0", ENTRIES, IGNORED))
    assert ours["subject"][0]["digest"]["sha256"] == root_digest(ENTRIES)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.lists(
            st.text(
                st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12
            ).filter(lambda p: p not in (".", "..")),
            min_size=1,
            max_size=3,
        ).map("/".join),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        min_size=1,
        max_size=8,
    )
)
def test_statements_agree_with_model_signing_for_any_manifest(files: dict[str, str]) -> None:
    entries = list(files.items())
    ours = json.loads(statement_payload("m", entries, IGNORED))
    assert _normalised(ours) == _normalised(_model_signing_statement("m", entries, IGNORED))


def _tamper(bundle: str, edit: object) -> str:
    document = json.loads(bundle)
    statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    edit(statement)  # type: ignore[operator]
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(document)


def test_tampered_statement_wrong_key_and_garbage_are_integrity_failures(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    private = key
    bundle = sign_manifest(private, "tiny:1.0", sorted(ENTRIES), IGNORED)

    def swap_digest(statement: dict[str, object]) -> None:
        statement["predicate"]["resources"][0]["digest"] = "00" * 32  # type: ignore[index]

    with pytest.raises(IntegrityFailure, match="ECDSA"):
        verify_bundle(_tamper(bundle, swap_digest), private.public_key())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IntegrityFailure, match="another public key"):
        verify_bundle(bundle, other.public_key())
    with pytest.raises(IntegrityFailure, match="malformed"):
        verify_bundle("{}", private.public_key())
    with pytest.raises(IntegrityFailure):
        verify_bundle("not json", private.public_key())


def test_pae_is_dsse_v1() -> None:
    assert pae(b"{}", "t") == b"DSSEv1 1 t 2 {}"


def test_model_signing_accepts_what_we_sign_for_a_directory(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    import hashlib

    private = key
    model = tmp_path / "model"
    (model / "b").mkdir(parents=True)
    files = {"a.json": b"{}", "b/weights.safetensors": b"\x00" * 1000}
    for name, content in files.items():
        (model / name).write_bytes(content)
    entries = sorted((name, hashlib.sha256(content).hexdigest()) for name, content in files.items())
    (model / "model.sig").write_text(sign_manifest(private, "model", entries, IGNORED))
    public = tmp_path / "key.pub"
    public.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cli = Path(sys.executable).parent / "model_signing"
    command = [
        str(cli),
        "verify",
        "key",
        "--public_key",
        str(public),
        str(model),
        "--signature",
        str(model / "model.sig"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (model / "a.json").write_bytes(b"[]")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "a.json" in done.stderr
