"""The instance's signing keys, kept as PEM files with mode 0600 under HOME/keys.

Two keys, each for one job:
- `instance-ed25519.pem` signs tree heads of the transparency log and detached records.
- `artifacts-p256.pem` signs model manifests in the OpenSSF model-signing format, whose
  `model_signing verify key` accepts only NIST elliptic-curve keys, so anyone can check our
  signatures with that tool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from aperture.core.errors import Conflict, IntegrityFailure, NotInitialised

INSTANCE_KEY_FILE = "instance-ed25519.pem"
ARTIFACT_KEY_FILE = "artifacts-p256.pem"


def key_id(public_key_der: bytes) -> str:
    """A short, stable name for a public key: hex SHA-256 of its DER SubjectPublicKeyInfo, 16 chars."""
    return hashlib.sha256(public_key_der).hexdigest()[:16]


def _public_der(key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def verify_ed25519(public_key_pem: str, signature: bytes, message: bytes) -> bool:
    """Offline check of an instance signature: needs only the public key."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise IntegrityFailure(
            "the public key is not an Ed25519 key", hint="use the instance key (instance-ed25519.pub)"
        )
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class InstanceKeys:
    signing_key: ed25519.Ed25519PrivateKey
    artifact_key: ec.EllipticCurvePrivateKey
    artifact_key_path: Path

    @property
    def key_id(self) -> str:
        return key_id(_public_der(self.signing_key.public_key()))

    @property
    def public_key_pem(self) -> str:
        return public_pem(self.signing_key.public_key())

    @property
    def artifact_key_id(self) -> str:
        return key_id(_public_der(self.artifact_key.public_key()))

    @property
    def artifact_public_key_pem(self) -> str:
        return public_pem(self.artifact_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message)


def _write_private(path: Path, pem: bytes) -> None:
    # O_EXCL: never overwrite an existing key; mode 0600 from creation, not chmod afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def generate_instance_keys(keys_dir: Path) -> InstanceKeys:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in (INSTANCE_KEY_FILE, ARTIFACT_KEY_FILE):
        if (keys_dir / name).exists():
            raise Conflict(f"a key already exists at {keys_dir / name}", hint="keys are never overwritten")
    signing = ed25519.Ed25519PrivateKey.generate()
    artifact = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    _write_private(keys_dir / INSTANCE_KEY_FILE, signing.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    _write_private(keys_dir / ARTIFACT_KEY_FILE, artifact.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    (keys_dir / "instance-ed25519.pub").write_text(public_pem(signing.public_key()))
    (keys_dir / "artifacts-p256.pub").write_text(public_pem(artifact.public_key()))
    return InstanceKeys(signing, artifact, keys_dir / ARTIFACT_KEY_FILE)


def load_instance_keys(keys_dir: Path) -> InstanceKeys:
    signing_path, artifact_path = keys_dir / INSTANCE_KEY_FILE, keys_dir / ARTIFACT_KEY_FILE
    if not signing_path.exists() or not artifact_path.exists():
        raise NotInitialised(f"no instance keys in {keys_dir}", hint="run `aperture init` first")
    signing = serialization.load_pem_private_key(signing_path.read_bytes(), password=None)
    artifact = serialization.load_pem_private_key(artifact_path.read_bytes(), password=None)
    if not isinstance(signing, ed25519.Ed25519PrivateKey) or not isinstance(artifact, ec.EllipticCurvePrivateKey):
        raise IntegrityFailure(f"unexpected key types in {keys_dir}", hint="restore the keys from backup")
    return InstanceKeys(signing, artifact, artifact_path)


SESSION_SECRET_FILE = "session-secret"  # noqa: S105 - a file name


def load_or_create_secret(keys_dir: Path, name: str = SESSION_SECRET_FILE) -> bytes:
    """A 32-byte secret kept beside the instance keys (mode 0600), made on first use."""
    path = keys_dir / name
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):  # another process made it first
            _write_private(path, os.urandom(32).hex().encode("ascii"))
    return bytes.fromhex(path.read_text(encoding="ascii").strip())
