"""Signing a version's manifest in the OpenSSF model-signing format, from digests already computed.

model_signing's own `sign` re-hashes every file; here the statement is built from the digests the
artifact store computed while copying (see `vault.domain.statement_payload`) and signed with the
instance's elliptic-curve key over the DSSE pre-authentication encoding, as its key signer does.

Why not call model_signing's Manifest and signer: importing any part of model_signing imports all
of it (sigstore, requests, protobuf): 0.4-0.7 s of CPU and 20 MiB per registration, which on two
cores competes with hashing (measured in bench/bench_register.py), and its signer API takes a PEM
path and private classes. The format is small and documented; tests check the statement against
`model_signing.signing.Payload` and every export against the real `model_signing verify key`.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from aperture.vault.domain import bundle_json, ecdsa_hash, pae, public_key_hint, statement_payload


def sign_manifest(
    private_key: ec.EllipticCurvePrivateKey,
    model_name: str,
    entries: Sequence[tuple[str, str]],
    ignore_paths: Sequence[str],
) -> str:
    """Sign (path, sha256) entries with an EC private key (P-256/384/521); returns the bundle JSON."""
    payload = statement_payload(model_name, entries, ignore_paths)
    public_key = private_key.public_key()
    signature = private_key.sign(pae(payload), ec.ECDSA(ecdsa_hash(public_key)))
    return bundle_json(payload, signature, public_key_hint(public_key))
