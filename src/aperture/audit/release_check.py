"""Check a release end to end from what an instance publishes: no key, no local instance.

`aperture verify-release URL NAME:VERSION [--checkpoint FILE] [--keys FILE] [--weights DIR]`
fetches, from the running instance at URL, only public material, and checks:

1. the instance's public keys (/.well-known/aperture/keys.json; or a copy pinned with --keys);
2. the release decision in the public registry: its Ed25519 signature over its record's digest;
3. the decision's `release.decided` event: it names this version, this decision and this
   digest, its leaf hashes to what is shown, and an inclusion proof leads to a tree head the
   instance key signed;
4. optionally, that this head extends a checkpoint saved earlier (--checkpoint): a log that was
   truncated or rewritten since fails here;
5. the version's `registry.version.registered` event (included likewise) records the manifest
   digest the registry shows;
6. the signed manifest (the OpenSSF model_signing bundle) verifies with the artifact key and its
   digest is that one;
7. optionally, that a local copy of the weights (--weights) hashes to the signed manifest.

Each check is reported; the command exits 7 when any fails.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aperture.audit.domain import (
    Check,
    Checkpoint,
    check_bundle,
    event_leaf_data,
    leaf_hash,
    verify_signed_note,
)
from aperture.core.errors import ApertureError, InvalidInput
from aperture.registry.domain import FACTS_FILE  # an export carries it; a copy of the model files may not
from aperture.release.service import DECISION_CONTEXT
from aperture.vault.domain import SignedManifest, verify_bundle
from aperture.vault.keys import key_id, verify_ed25519

MAX_RESPONSE = 16 * 1024 * 1024  # every document fetched is small; a larger one is not ours
TIMEOUT_S = 30.0
HASH_CHUNK = 1024 * 1024

Fetch = Callable[[str], bytes]


class FetchFailed(Exception):
    """A public document could not be fetched (the message names it and why)."""


def http_fetch(url: str) -> bytes:
    """GET a URL (http or https only), read at most MAX_RESPONSE bytes."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchFailed(f"{url}: only http and https URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (scheme checked)
            data = bytes(response.read(MAX_RESPONSE + 1))
    except urllib.error.HTTPError as error:
        raise FetchFailed(f"{url}: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise FetchFailed(f"{url}: {getattr(error, 'reason', error)}") from None
    if len(data) > MAX_RESPONSE:
        raise FetchFailed(f"{url}: larger than {MAX_RESPONSE} bytes")
    return data


@dataclass(frozen=True, slots=True)
class ReleaseCheck:
    reference: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.reference,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


class _Failed(Exception):
    """Stop: a check failed and the ones after it depend on it."""


class _Checker:
    def __init__(self, base_url: str, fetch: Fetch) -> None:
        self.base = base_url.rstrip("/")
        self.fetch = fetch
        self.checks: list[Check] = []

    def ok(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, True, detail))

    def fail(self, name: str, detail: str) -> _Failed:
        self.checks.append(Check(name, False, detail))
        return _Failed(name)

    def json(self, path: str, name: str) -> Any:
        try:
            return json.loads(self.fetch(self.base + path))
        except FetchFailed as error:
            raise self.fail(name, str(error)) from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self.fail(name, f"{self.base + path} is not JSON") from None

    def event(self, action: str, resource: str, name: str, matches: Callable[[Mapping[str, Any]], bool]) -> Any:
        query = urllib.parse.urlencode({"action": action, "resource": resource, "limit": 500})
        page = self.json(f"/api/v1/audit/events?{query}", name)
        found = [e for e in page.get("events", []) if isinstance(e, Mapping) and matches(e)]
        if not found:
            raise self.fail(name, f"no {action} event for {resource} in the public log")
        return found[0]

    def included(self, event: Mapping[str, Any], pem: str, name: str) -> dict[str, Any]:
        """The event's inclusion bundle, checked: the event as shown hashes to its leaf, the
        path leads to the root, and the instance key signed a head at that root."""
        index = event.get("leaf_index")
        bundle = self.json(f"/api/v1/audit/proofs/inclusion/{int(index or 0)}", name)
        try:
            shown = leaf_hash(event_leaf_data(event)).hex()
        except (ValueError, KeyError, TypeError) as error:
            raise self.fail(name, f"leaf {index}: {error}") from None
        result = check_bundle(bundle, pem)
        failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.ok]
        if failed or bundle.get("leaf_hash") != shown:
            raise self.fail(name, "; ".join(failed) or f"leaf {index}: the proof is for another leaf")
        head = bundle["tree_head"]
        self.ok(name, f"leaf {index} is in the log signed at size {head['tree_size']} ({head['issued_at']})")
        return dict(bundle)


def _keys(document: Any) -> tuple[str, str]:
    """(Ed25519 instance key PEM, EC artifact key PEM) from a keys.json, each checked against its id."""
    keys = {key["name"]: key for key in document["keys"]}
    found = []
    for name in ("instance", "artifacts"):
        pem = str(keys[name]["public_key_pem"])
        der = serialization.load_pem_public_key(pem.encode("ascii")).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if key_id(der) != keys[name]["key_id"]:
            raise ValueError(f"the {name} key does not have the id listed with it")
        found.append(pem)
    return found[0], found[1]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_weights(directory: Path, signed: SignedManifest, *, logged_facts: str | None = None) -> list[str]:
    """Problems with a local copy of the weights against the signed manifest (empty when equal).

    The signed facts file may be absent from a copy of the model files: it then passes when its
    digest in the signed manifest is the one the registration event logged (`logged_facts`)."""
    problems = []
    root = directory.resolve()
    for name, expected in sorted(signed.files.items()):
        if name == FACTS_FILE and not (root / FACTS_FILE).exists():
            if logged_facts != expected:
                problems.append(
                    f"{name}: missing, and the signed manifest's digest of it is not the one the log "
                    "recorded at registration (check an export of the version, which carries the file)"
                )
            continue
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(f"{name}: not a path inside the model directory")
            continue
        path = root.joinpath(*relative.parts)
        if not path.is_file() or path.is_symlink():
            problems.append(f"{name}: missing")
        elif _hash_file(path) != expected:
            problems.append(f"{name}: the file's SHA-256 differs from the signed one")
    return problems


def verify_release(
    base_url: str,
    reference: str,
    *,
    keys: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    weights: Path | None = None,
    fetch: Fetch = http_fetch,
) -> ReleaseCheck:
    """Run every check (stopping at the first whose failure the rest depend on)."""
    checker = _Checker(base_url, fetch)
    name, _, number = reference.partition(":")
    if not name or not number:
        raise InvalidInput(f"{reference!r} is not a model reference", hint="write NAME:VERSION")
    with contextlib.suppress(_Failed):  # the failed check is recorded; the rest depend on it
        _run(checker, reference, name, number, keys, checkpoint, weights)
    return ReleaseCheck(reference, tuple(checker.checks))


def _run(
    checker: _Checker,
    reference: str,
    name: str,
    number: str,
    keys: Mapping[str, Any] | None,
    checkpoint: str | None,
    weights: Path | None,
) -> None:
    # 1. The keys.
    document = keys if keys is not None else checker.json("/.well-known/aperture/keys.json", "public keys")
    try:
        instance_pem, artifact_pem = _keys(document)
    except (KeyError, TypeError, ValueError) as error:
        raise checker.fail("public keys", f"not a usable keys.json: {error}") from None
    checker.ok(
        "public keys", "pinned (--keys)" if keys is not None else f"{checker.base}/.well-known/aperture/keys.json"
    )

    # 2. The decision in the public registry, and its signature.
    registry = checker.json("/api/v1/registry", "public registry entry")
    entry = next((e for e in registry if isinstance(e, Mapping) and e.get("model") == reference), None)
    if entry is None:
        raise checker.fail("public registry entry", f"{reference} is not in the public registry (or is redacted)")
    decision = entry.get("decision") or {}
    if not decision.get("signature") or not decision.get("record_sha256"):
        raise checker.fail("public registry entry", f"{reference} has no signed release decision")
    checker.ok("public registry entry", f"decision {decision.get('proposal')}: tier {decision.get('tier')}")
    try:
        record_digest = bytes.fromhex(str(decision["record_sha256"]))
        signature = base64.b64decode(str(decision["signature"]), validate=True)
        signed = verify_ed25519(instance_pem, signature, DECISION_CONTEXT + record_digest)
    except (ValueError, binascii.Error, ApertureError) as error:
        raise checker.fail("decision signature", f"unreadable: {error}") from None
    if not signed:
        raise checker.fail("decision signature", "does not verify with the instance key")
    checker.ok("decision signature", f"Ed25519 over the record's SHA-256 {decision['record_sha256'][:16]}...")

    # 3. The decision's event, included under a signed head.
    resource = f"model:{reference}"

    def is_this_decision(event: Mapping[str, Any]) -> bool:
        details = event.get("details") or {}
        return bool(
            details.get("proposal") == decision.get("proposal")
            and details.get("record_sha256") == decision.get("record_sha256")
            and details.get("tier") == decision.get("tier")
        )

    decided = checker.event("release.decided", resource, "decision in the log", is_this_decision)
    checker.ok("decision in the log", f"leaf {decided['leaf_index']} records this decision, digest and tier")
    bundle = checker.included(decided, instance_pem, "decision included under a signed tree head")

    # 4. The log still extends a checkpoint kept outside it.
    if checkpoint is not None:
        _check_checkpoint(checker, checkpoint, instance_pem, bundle["tree_head"])

    # 5. The registration records the manifest digest the registry shows.
    digest = entry.get("manifest_digest")
    registered = checker.event(
        "registry.version.registered",
        resource,
        "registration in the log",
        lambda event: (event.get("details") or {}).get("manifest_digest") == digest,
    )
    checker.ok("registration in the log", f"leaf {registered['leaf_index']} records manifest {str(digest)[:16]}...")
    checker.included(registered, instance_pem, "registration included under a signed tree head")

    # 6. The signed manifest.
    path = f"/api/v1/models/{urllib.parse.quote(name)}/versions/{urllib.parse.quote(number)}/signature"
    try:
        raw = checker.fetch(checker.base + path)
        artifact_key = serialization.load_pem_public_key(artifact_pem.encode("ascii"))
        if not isinstance(artifact_key, ec.EllipticCurvePublicKey):
            raise ValueError("the artifact key is not an elliptic-curve key")
        manifest = verify_bundle(raw, artifact_key)
    except (FetchFailed, ValueError, ApertureError) as error:
        raise checker.fail("signed manifest", str(getattr(error, "message", error))) from None
    if manifest.root_digest != digest:
        raise checker.fail("signed manifest", f"signs {manifest.root_digest[:16]}..., the registry shows {digest}")
    checker.ok("signed manifest", f"model_signing bundle for {len(manifest.files)} files, digest {digest[:16]}...")

    # 7. The weights.
    if weights is not None:
        logged_facts = (registered.get("details") or {}).get("facts_digest")
        problems = check_weights(
            weights, manifest, logged_facts=logged_facts if isinstance(logged_facts, str) else None
        )
        if problems:
            raise checker.fail("weights", "; ".join(problems[:10]))
        facts_note = ""
        if FACTS_FILE in manifest.files and not (weights / FACTS_FILE).exists():
            facts_note = f" ({FACTS_FILE} by its digest in the registration logged at leaf {registered['leaf_index']})"
        checker.ok("weights", f"{len(manifest.files)} files in {weights} match the signed manifest{facts_note}")


def _check_checkpoint(checker: _Checker, note: str, pem: str, head: Mapping[str, Any]) -> None:
    name = "consistent with your checkpoint"
    try:
        saved: Checkpoint = verify_signed_note(note, pem)
    except ValueError as error:
        raise checker.fail(name, f"the checkpoint given is not signed by this instance's key: {error}") from None
    size = int(head["tree_size"])
    first, second = sorted((saved.tree_size, size))
    proof = checker.json(f"/api/v1/audit/proofs/consistency?first={first}&second={second}", name)
    result = check_bundle(proof, pem)
    roots = {first: proof.get("first_root"), second: proof.get("second_root")}
    # Your checkpoint vouches for the root at its own size: the server need not still hold that head.
    yours = "first head" if first == saved.tree_size else "second head"
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.ok and not c.name.startswith(yours)]
    if failed or roots.get(saved.tree_size) != saved.root_hash.hex():
        detail = "; ".join(failed) or "the log's root at your checkpoint's size is not the one it signed then"
        raise checker.fail(name, f"{detail}: the log was rewritten or truncated since")
    checker.ok(name, f"the log at size {size} extends your checkpoint at size {saved.tree_size}")
