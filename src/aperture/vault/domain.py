"""Content addresses and the OpenSSF model-signing signature format. Pure: no I/O, no clock.

A version's files are signed as model_signing v1.0 does it: an in-toto Statement v1 whose
predicate (`https://model_signing/signature/v1.0`) lists every file with its SHA-256 and the
serialization parameters (`files`, `sha256`, no symlinks, the ignored paths), whose one subject
carries a SHA-256 over the file digests in path order, wrapped in a DSSE envelope inside a
Sigstore bundle v0.3 with a public-key hint instead of a certificate (the format of
`model_signing sign key`). Building and checking it needs only `cryptography`; the tests hold it
to model_signing itself (its Payload for the statement, its `verify key` CLI for the bundle).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aperture.core.errors import IntegrityFailure, InvalidInput

DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")
HASH_ALGORITHM = "sha256"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
SIGNATURE_FILE = "model.sig"


def check_digest(digest: str) -> str:
    if not DIGEST_PATTERN.fullmatch(digest):
        raise InvalidInput(f"{digest!r} is not a SHA-256 hex digest", hint="give 64 lowercase hex characters")
    return digest


def blob_relative_path(digest: str) -> PurePosixPath:
    """`sha256/<first 2 hex>/<remaining 62 hex>`: 256 fan-out directories keep listings short."""
    check_digest(digest)
    return PurePosixPath(HASH_ALGORITHM, digest[:2], digest[2:])


def root_digest(entries: Sequence[tuple[str, str]]) -> str:
    """model_signing's subject digest: SHA-256 over the raw file digests, sorted by path."""
    hasher = hashlib.sha256()
    for _path, digest in sorted(entries):
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def public_key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """model_signing's key hint: hex SHA-256 of the PEM SubjectPublicKeyInfo."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def statement_payload(model_name: str, entries: Sequence[tuple[str, str]], ignore_paths: Sequence[str]) -> bytes:
    """The in-toto Statement model_signing v1.0 signs, for file-level SHA-256 digests.

    Resources are sorted by path and the subject digest is SHA-256 over their raw digests in that
    order, exactly as `model_signing.signing.Payload` builds it; `serialization` records what its
    `verify` must re-apply (file method, sha256, no symlinks, the ignored paths).
    """
    ordered = sorted(entries)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {HASH_ALGORITHM: root_digest(ordered)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": HASH_ALGORITHM,
                "allow_symlinks": False,
                "ignore_paths": sorted(ignore_paths),
            },
            "resources": [{"name": path, "algorithm": HASH_ALGORITHM, "digest": digest} for path, digest in ordered],
        },
    }
    return json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")


def bundle_json(payload: bytes, signature: bytes, key_hint: str) -> str:
    """A Sigstore bundle v0.3 holding the DSSE envelope, as model_signing's key signer writes it."""
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, indent=2)


def ecdsa_hash(public_key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[public_key.curve.key_size]


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """What a valid signature vouches for."""

    model_name: str
    root_digest: str
    files: Mapping[str, str]  # path -> sha256
    serialization: Mapping[str, Any]
    key_hint: str


def _fail(message: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"the signature is invalid: {message}",
        hint="the stored signature bundle was altered or made with another key; re-register from a trusted source",
    )


def verify_bundle(bundle_json: str | bytes, public_key: ec.EllipticCurvePublicKey) -> SignedManifest:
    """Check a model_signing bundle signed with an elliptic-curve key and return its manifest.

    Fails with IntegrityFailure on any deviation: media type, key hint, signature, statement and
    predicate types, serialization, digest shapes, the subject digest.
    """
    raw = bundle_json.encode() if isinstance(bundle_json, str) else bundle_json
    if len(raw) > MAX_BUNDLE_BYTES:
        raise _fail("the bundle is too large")
    try:
        bundle = json.loads(raw)
        if bundle["mediaType"] != BUNDLE_MEDIA_TYPE:
            raise _fail(f"unexpected media type {bundle['mediaType']!r}")
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        payload_type = envelope["payloadType"]
        signatures = envelope["signatures"]
        if len(signatures) != 1:
            raise _fail(f"expected one signature, found {len(signatures)}")
        signature = base64.b64decode(signatures[0]["sig"], validate=True)
    except IntegrityFailure:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise _fail(f"malformed bundle ({error.__class__.__name__}: {error})") from None
    if payload_type != PAYLOAD_TYPE:
        raise _fail(f"unexpected payload type {payload_type!r}")
    expected_hint = public_key_hint(public_key)
    if hint != expected_hint:
        raise _fail("it names another public key than the instance's artifact key")
    try:
        public_key.verify(signature, pae(payload, payload_type), ec.ECDSA(ecdsa_hash(public_key)))
    except InvalidSignature:
        raise _fail("the ECDSA signature does not match the signed statement") from None
    return _statement_manifest(payload, hint)


def _statement_manifest(payload: bytes, hint: str) -> SignedManifest:
    try:
        statement = json.loads(payload)
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise _fail("not a model_signing v1.0 statement")
        (subject,) = statement["subject"]
        predicate = statement["predicate"]
        serialization_args = dict(predicate["serialization"])
        files: dict[str, str] = {}
        for resource in predicate["resources"]:
            name, algorithm, digest = resource["name"], resource["algorithm"], resource["digest"]
            if algorithm != HASH_ALGORITHM or not DIGEST_PATTERN.fullmatch(digest) or name in files:
                raise _fail(f"bad resource entry {name!r}")
            files[name] = digest
        subject_digest = subject["digest"][HASH_ALGORITHM]
        model_name = str(subject["name"])
    except IntegrityFailure:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise _fail(f"malformed statement ({error.__class__.__name__}: {error})") from None
    if serialization_args.get("method") != "files" or serialization_args.get("hash_type") != HASH_ALGORITHM:
        raise _fail(f"unexpected serialization {serialization_args}")
    computed = root_digest(list(files.items()))
    if computed != subject_digest:
        raise _fail("the subject digest does not match the listed files")
    return SignedManifest(model_name, subject_digest, files, serialization_args, hint)


def compare_manifest(signed: SignedManifest, recorded: Mapping[str, str]) -> list[str]:
    """Differences between what was signed and what the registry records (empty when equal)."""
    problems: list[str] = []
    for path in sorted(set(recorded) - set(signed.files)):
        problems.append(f"{path} is recorded but not signed")
    for path in sorted(set(signed.files) - set(recorded)):
        problems.append(f"{path} is signed but not recorded")
    for path in sorted(set(signed.files) & set(recorded)):
        if signed.files[path] != recorded[path]:
            problems.append(f"{path}: signed digest {signed.files[path]} differs from recorded {recorded[path]}")
    return problems
