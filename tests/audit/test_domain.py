"""The Merkle tree, proofs, checkpoints and log verification, against published RFC 6962 vectors
and hypothesis properties."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.audit import domain
from aperture.audit.domain import (
    EMPTY_ROOT,
    AuditEvent,
    LogVerifier,
    ProblemKind,
    SignedTreeHead,
    TreeAccumulator,
    check_bundle,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_data,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
    verify_signed_note,
)
from aperture.core.canonical import canonical_json
from tests.audit import vectors as v

LEAF_HASHES = [leaf_hash(leaf) for leaf in v.LEAVES]


def mth(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 2.1 taken literally (recursive split at the largest power of two below n)."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# --- published vectors ----------------------------------------------------------------------


def test_rfc6962_hasher_vectors() -> None:
    assert EMPTY_ROOT == v.SHA256_EMPTY
    assert leaf_hash(b"") == v.EMPTY_LEAF_HASH
    assert leaf_hash(b"L123456") == v.LEAF_L123456_HASH
    assert node_hash(b"N123", b"N456") == v.NODE_N123_N456_HASH
    assert root_hash([]) == v.SHA256_EMPTY


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert root_hash(LEAF_HASHES[:size]) == v.ROOTS[size - 1]
    assert mth(LEAF_HASHES[:size]) == v.ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), v.INCLUSION_PROOFS)
def test_published_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_proof(LEAF_HASHES, index, size) == path
    root = v.ROOTS[size - 1]
    leaf = LEAF_HASHES[index]
    assert verify_inclusion(leaf, index, size, path, root)
    for description, probe in _corrupt_inclusion(index, size, path, root, leaf):
        assert not verify_inclusion(*probe), description


@pytest.mark.parametrize(("first", "second", "path"), v.CONSISTENCY_PROOFS)
def test_published_consistency_proofs(first: int, second: int, path: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES, first, second) == path
    root1, root2 = v.ROOTS[first - 1], v.ROOTS[second - 1]
    assert verify_consistency(first, second, root1, root2, path)
    if path:
        for description, probe in _corrupt_consistency(first, second, root1, root2, path):
            assert not verify_consistency(*probe), description


def _ranges(nodes: list[v.Node], rehash: tuple[int, int] | None) -> list[tuple[int, int]]:
    ranges = [(index << level, (index + 1) << level) for level, index in nodes]
    if rehash is not None:
        begin, end = rehash
        merged = (min(r[0] for r in ranges[begin:end]), max(r[1] for r in ranges[begin:end]))
        ranges[begin:end] = [merged]
    return ranges


@pytest.mark.parametrize(("size", "index", "nodes", "rehash"), v.INCLUSION_NODES)
def test_published_inclusion_proof_shapes(
    size: int, index: int, nodes: list[v.Node], rehash: tuple[int, int] | None
) -> None:
    assert inclusion_ranges(index, size) == _ranges(nodes, rehash)


@pytest.mark.parametrize(("first", "second", "nodes", "rehash"), v.CONSISTENCY_NODES)
def test_published_consistency_proof_shapes(
    first: int, second: int, nodes: list[v.Node], rehash: tuple[int, int] | None
) -> None:
    assert consistency_ranges(first, second) == _ranges(nodes, rehash)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_empty_proofs_do_not_verify_wrong_leaves_or_roots(index: int, size: int) -> None:
    assert not verify_inclusion(v.SOME_HASH, index, size, [], b"")
    assert not verify_inclusion(b"", index, size, [], v.SHA256_EMPTY)
    assert not verify_inclusion(v.SOME_HASH, index, size, [], v.SHA256_EMPTY)


def test_single_entry_tree() -> None:
    hashed = leaf_hash(b"data")
    assert verify_inclusion(hashed, 0, 1, [], hashed)
    assert not verify_inclusion(hashed, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], hashed)
    assert not verify_inclusion(b"", 0, 1, [], b"")


@pytest.mark.parametrize(
    ("first", "second", "root1", "root2", "proof", "ok"),
    [
        (0, 0, b"don't care 1", b"don't care 2", [], False),
        (1, 1, b"don't care 1", b"don't care 2", [], False),
        (0, 0, b"don't care 1", b"don't care 1", [], True),
        (0, 1, b"don't care 1", b"don't care 2", [], True),
        (1, 1, b"don't care 2", b"don't care 2", [], True),
        (1, 0, b"don't care 1", b"don't care 2", [], False),
        (2, 1, b"don't care 1", b"don't care 2", [], False),
        (1, 2, b"don't care 1", b"don't care 2", [], False),
        (0, 0, v.SHA256_EMPTY, b"don't care 2", [], False),
        (1, 1, v.SHA256_EMPTY, b"don't care 2", [], False),
        (0, 0, v.SHA256_EMPTY, v.SHA256_EMPTY, [v.SHA256_EMPTY], False),
        (0, 1, v.SHA256_EMPTY, v.SHA256_EMPTY, [v.SHA256_EMPTY], False),
        (1, 1, v.SHA256_EMPTY, v.SHA256_EMPTY, [v.SHA256_EMPTY], False),
    ],
)
def test_consistency_edge_cases(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    assert verify_consistency(first, second, root1, root2, proof) is ok


def _flip(proof: list[bytes], position: int, mask: int) -> list[bytes]:
    changed = list(proof)
    changed[position] = bytes([changed[position][0] ^ mask]) + changed[position][1:]
    return changed


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    """The probes of transparency-dev's corruptInclusionProof."""
    probes = [
        ("index - 1", (leaf, index - 1, size, proof, root)),
        ("index + 1", (leaf, index + 1, size, proof, root)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("size * 2", (leaf, index, size * 2, proof, root)),
        ("size / 2", (leaf, index, size // 2, proof, root)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty root", (leaf, index, size, proof, v.SHA256_EMPTY)),
        ("random root", (leaf, index, size, proof, v.SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
    ]
    probes += [(f"modified proof[{i}]", (leaf, index, size, _flip(proof, i, 8), root)) for i in range(len(proof))]
    if proof:
        probes.append(("removed component", (leaf, index, size, proof[:-1], root)))
    if len(proof) > 1:
        probes.append(("inserted component", (leaf, index, size, [proof[0], v.SOME_HASH, *proof[1:]], root)))
    return probes


def _corrupt_consistency(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    """The probes of transparency-dev's corruptConsistencyProof."""
    probes = [
        ("first - 1", (first - 1, second, root1, root2, proof)),
        ("first + 1", (first + 1, second, root1, root2, proof)),
        ("first ^ 2", (first ^ 2, second, root1, root2, proof)),
        ("second * 2", (first, second * 2, root1, root2, proof)),
        ("second / 2", (first, second // 2, root1, root2, proof)),
        ("wrong root1", (first, second, b"WrongRoot", root2, proof)),
        ("wrong root2", (first, second, root1, b"WrongRoot", proof)),
        ("swapped roots", (first, second, root2, root1, proof)),
        ("empty proof", (first, second, root1, root2, [])),
        ("trailing garbage", (first, second, root1, root2, [*proof, b""])),
        ("trailing root1", (first, second, root1, root2, [*proof, root1])),
        ("trailing root2", (first, second, root1, root2, [*proof, root2])),
        ("preceding garbage", (first, second, root1, root2, [b"", *proof])),
        ("preceding root1", (first, second, root1, root2, [root1, *proof])),
        ("preceding root2", (first, second, root1, root2, [root2, *proof])),
        ("preceding proof[0]", (first, second, root1, root2, [proof[0], *proof])),
        ("truncated proof", (first, second, root1, root2, proof[:-1])),
    ]
    probes += [(f"modified proof[{i}]", (first, second, root1, root2, _flip(proof, i, 16))) for i in range(len(proof))]
    return probes


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=600))
def test_accumulated_root_equals_the_rfc_definition(size: int) -> None:
    hashes = leaves(size)
    assert root_hash(hashes) == mth(hashes)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_inclusion_proof_verifies_and_tampering_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=400), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    hashes = leaves(size)
    root = mth(hashes)
    proof = inclusion_proof(hashes, index, size)
    assert verify_inclusion(hashes[index], index, size, proof, root)
    for description, probe in _corrupt_inclusion(index, size, proof, root, hashes[index]):
        assert not verify_inclusion(*probe), description
    if proof:
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="position")
        byte, bit = divmod(data.draw(st.integers(min_value=0, max_value=255), label="bit"), 8)
        element = bytearray(proof[position])
        element[byte] ^= 1 << bit
        tampered = [*proof[:position], bytes(element), *proof[position + 1 :]]
        assert not verify_inclusion(hashes[index], index, size, tampered, root)
    other = data.draw(st.integers(min_value=0, max_value=size - 1), label="other leaf")
    if hashes[other] != hashes[index]:
        assert not verify_inclusion(hashes[other], index, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_consistency_proof_verifies_and_tampering_fails(data: st.DataObject) -> None:
    second = data.draw(st.integers(min_value=1, max_value=400), label="second")
    first = data.draw(st.integers(min_value=1, max_value=second), label="first")
    hashes = leaves(second)
    root1, root2 = mth(hashes[:first]), mth(hashes)
    proof = consistency_proof(hashes, first, second)
    assert verify_consistency(first, second, root1, root2, proof)
    if proof:
        for description, probe in _corrupt_consistency(first, second, root1, root2, proof):
            assert not verify_consistency(*probe), description
        # A tree that differs in one leaf of the old part is not consistent with the old root.
        changed = data.draw(st.integers(min_value=0, max_value=first - 1), label="changed leaf")
        forged = list(hashes)
        forged[changed] = leaf_hash(b"forged")
        forged_proof = consistency_proof(forged, first, second)
        assert not verify_consistency(first, second, root1, mth(forged), forged_proof)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=2000))
def test_perfect_subtrees_cover_a_range_exactly(start: int, length: int) -> None:
    nodes = domain.perfect_subtrees(start, start + length)
    position = start
    for level, index in nodes:
        assert index << level == position
        position += 1 << level
    assert position == start + length


def test_accumulator_reports_each_stride_node_once_with_its_hash() -> None:
    hashes = leaves(3 * 256 + 7)
    seen: list[tuple[int, int, bytes]] = []
    accumulator = TreeAccumulator(on_stride_node=lambda level, index, value: seen.append((level, index, value)))
    for hashed in hashes:
        accumulator.add(hashed)
    expected = [
        (level, size // (1 << level) - 1)
        for size in range(1, len(hashes) + 1)
        for level in range(domain.STRIDE, 12, domain.STRIDE)
        if size % (1 << level) == 0
    ]
    assert [(level, index) for level, index, _ in seen] == expected
    assert [value for level, index, value in seen] == [
        mth(hashes[index << level : (index + 1) << level]) for level, index in expected
    ]


# --- the leaf encoding ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(
    event_id=st.text(),
    occurred_at=st.text(),
    actor=st.text(),
    action=st.text(),
    resource=st.text(),
    details=st.dictionaries(st.text(), json_values, max_size=5),
)
def test_leaf_data_is_the_canonical_json_of_the_event(
    event_id: str, occurred_at: str, actor: str, action: str, resource: str, details: dict[str, Any]
) -> None:
    event = AuditEvent(0, event_id, occurred_at, actor, action, resource, details, schema_version=1)
    expected = canonical_json(
        {
            "v": 1,
            "id": event_id,
            "at": occurred_at,
            "actor": actor,
            "action": action,
            "resource": resource,
            "details": details,
        }
    )
    assert leaf_data(event) == expected
    assert json.loads(leaf_data(event))["details"] == details


# --- checkpoints ----------------------------------------------------------------------------


def _keypair() -> tuple[ed25519.Ed25519PrivateKey, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem.decode()


def _head(key: ed25519.Ed25519PrivateKey, pem: str, size: int, root: bytes) -> SignedTreeHead:
    origin = "aperture/0123456789abcdef"
    issued = "2026-01-02T03:04:05.000006Z"
    text = domain.checkpoint_text(origin, size, root, issued)
    return domain.build_signed_tree_head(
        origin=origin,
        tree_size=size,
        root=root,
        issued_at=issued,
        key_id="0123456789abcdef",
        public_key_pem=pem,
        signature=key.sign(text.encode()),
    )


def test_signed_note_is_a_c2sp_checkpoint_and_verifies() -> None:
    key, pem = _keypair()
    head = _head(key, pem, 8, v.ROOTS[7])
    lines = head.signed_note.split("\n")
    assert lines[0] == "aperture/0123456789abcdef"
    assert lines[1] == "8"
    assert lines[2] == base64.b64encode(v.ROOTS[7]).decode()
    assert lines[3] == "issued 2026-01-02T03:04:05.000006Z"
    assert lines[4] == ""
    assert lines[5].startswith("\u2014 aperture/0123456789abcdef ")
    checkpoint = verify_signed_note(head.signed_note, pem)
    assert (checkpoint.tree_size, checkpoint.root_hash, checkpoint.issued_at) == (8, v.ROOTS[7], head.issued_at)
    # The key ID follows the signed-note rule for Ed25519.
    raw = domain.ed25519_raw_public_key(pem)
    expected_id = hashlib.sha256(b"aperture/0123456789abcdef\n\x01" + raw).digest()[:4]
    assert head.key_hash == expected_id


def test_tampered_or_foreign_checkpoints_are_refused() -> None:
    key, pem = _keypair()
    head = _head(key, pem, 8, v.ROOTS[7])
    with pytest.raises(ValueError, match="does not verify"):
        verify_signed_note(head.signed_note.replace("\n8\n", "\n9\n"), pem)
    _, other_pem = _keypair()
    with pytest.raises(ValueError, match="no signature by this public key"):
        verify_signed_note(head.signed_note, other_pem)
    with pytest.raises(ValueError, match="blank line"):
        verify_signed_note("aperture/x\n8\n", pem)
    # Signatures by other keys (witnesses) are ignored, ours still verifies.
    witness = head.signed_note + "\u2014 witness.example/w1 AAAAAAAA\n"
    assert verify_signed_note(witness, pem).tree_size == 8


# --- proof bundles --------------------------------------------------------------------------


def _events(n: int) -> list[AuditEvent]:
    """Version 1 events (every field in clear in the leaf), for the tree and bundle tests."""
    return [
        AuditEvent(
            i, f"id-{i}", f"2026-01-01T00:00:{i % 60:02d}.000000Z", "alice", "test.did", f"thing:{i}", {"n": i}, 1
        )
        for i in range(n)
    ]


def _record(event: AuditEvent) -> domain.EventRecord:
    return domain.EventRecord(
        event.leaf_index,
        event.event_id,
        event.occurred_at,
        event.action,
        event.actor,
        event.resource,
        event.details,
        event.schema_version,
        domain.event_leaf_hash(event),
    )


def _json(event: AuditEvent) -> dict[str, Any]:
    """A version 1 event as the operator sees it (every field in clear)."""
    return domain.event_json(_record(event), domain.FAIL_CLOSED, domain.disclose_all)


def test_bundles_check_offline_and_tampering_is_named() -> None:
    key, pem = _keypair()
    events = _events(13)
    hashes = [domain.event_leaf_hash(e) for e in events]
    head = _head(key, pem, 13, root_hash(hashes))
    proof = domain.InclusionProof(
        _json(events[6]), hashes[6], 13, head.root_hash, tuple(inclusion_proof(hashes, 6)), head
    )
    bundle = json.loads(json.dumps(proof.to_json()))
    assert check_bundle(bundle, pem).ok

    edited = json.loads(json.dumps(bundle))
    edited["event"]["details"]["n"] = 7
    result = check_bundle(edited, pem)
    assert not result.ok
    assert [c.name for c in result.checks if not c.ok] == ["event hashes to the leaf"]

    wrong_path = json.loads(json.dumps(bundle))
    wrong_path["proof"][0] = "00" * 32
    assert [c.name for c in check_bundle(wrong_path, pem).checks if not c.ok] == ["inclusion proof"]

    unsigned = dict(bundle, tree_head=None)
    assert [c.name for c in check_bundle(unsigned, pem).checks if not c.ok] == ["tree head signed"]

    old_head = _head(key, pem, 5, root_hash(hashes[:5]))
    consistency = domain.ConsistencyProof(
        5, 13, old_head.root_hash, head.root_hash, tuple(consistency_proof(hashes, 5, 13)), old_head, head
    )
    assert check_bundle(json.loads(json.dumps(consistency.to_json())), pem).ok
    lying = dict(consistency.to_json(), second_root=root_hash(hashes[:12]).hex())
    assert not check_bundle(lying, pem).ok
    assert not check_bundle({"type": "something else"}, pem).ok
    assert not check_bundle(dict(bundle, proof=["zz"]), pem).ok


# --- verifying the whole log ----------------------------------------------------------------


def _records(events: list[AuditEvent]) -> list[domain.LeafRecord]:
    return [
        (
            e.leaf_index,
            e.event_id,
            e.occurred_at,
            e.actor,
            e.action,
            e.resource,
            domain.details_text(e.details),
            domain.event_leaf_hash(e),
            e.schema_version,
            None,
            None,
        )
        for e in events
    ]


def _verify(records: list[domain.LeafRecord], heads: list[SignedTreeHead], pem: str) -> domain.VerificationReport:
    verifier = LogVerifier(heads, pem, {})
    verifier.add_rows(records)
    return verifier.finish()


def test_log_verifier_finds_edits_deletions_and_swaps() -> None:
    key, pem = _keypair()
    events = _events(40)
    records = _records(events)
    hashes = [r[7] for r in records]
    heads = [_head(key, pem, 20, root_hash(hashes[:20])), _head(key, pem, 40, root_hash(hashes))]
    clean = _verify(records, heads, pem)
    assert clean.ok and clean.heads_checked == 2 and clean.tree_size == 40 and clean.warnings == ()

    edited = list(records)
    edited[25] = (*edited[25][:6], '{"n":999}', *edited[25][7:])
    report = _verify(edited, heads, pem)
    assert {(p.kind, p.where) for p in report.problems} >= {(ProblemKind.LEAF, "leaf 25")}
    assert any(p.kind is ProblemKind.ROOT and "20-39" in p.message for p in report.problems)

    deleted = records[:10] + records[11:]
    report = _verify(deleted, heads, pem)
    assert report.problems[0].kind is ProblemKind.GAP and report.problems[0].where == "leaf 10"
    assert any(p.kind is ProblemKind.TRUNCATED for p in report.problems)

    swapped = list(records)
    swapped[3], swapped[4] = (3, *records[4][1:]), (4, *records[3][1:])  # rows trade places, hashes too
    report = _verify(swapped, heads, pem)
    assert [p.kind for p in report.problems] == [ProblemKind.ROOT, ProblemKind.ROOT]
    assert "0-19" in report.problems[0].message

    forged_head = SignedTreeHead(**{**_as_dict(heads[0]), "signature": bytes(64)})
    report = _verify(records, [forged_head, heads[1]], pem)
    assert [p.kind for p in report.problems] == [ProblemKind.SIGNATURE]


def _as_dict(head: SignedTreeHead) -> dict[str, Any]:
    return {name: getattr(head, name) for name in SignedTreeHead.__slots__}


# --- version 2 leaves: withheld fields as salted commitments ------------------------------


@settings(max_examples=100, deadline=None)
@given(
    actor=st.text(min_size=1),
    resource=st.text(min_size=1),
    details=st.dictionaries(st.text(), json_values, max_size=5),
    upper_tier=st.booleans(),
    public=st.sets(st.text(), max_size=3),
)
def test_a_sealed_event_is_its_public_view_and_its_private_half_opens_every_commitment(
    actor: str, resource: str, details: dict[str, Any], upper_tier: bool, public: set[str]
) -> None:
    classes = domain.EventFields(
        actor=domain.Visibility.INTERNAL,
        resource=domain.Visibility.UPPER_TIER,
        details=dict.fromkeys(public, domain.Visibility.PUBLIC),
    )
    details = {key: value for key, value in details.items() if not domain.is_marker(value)}
    sealed = domain.seal_event(
        classes,
        upper_tier=upper_tier,
        event_id="0190b7c2-8d3e-7000-8000-000000000001",
        occurred_at="2026-01-01T00:00:00.000000Z",
        actor=actor,
        action="test.sealed",
        resource=resource,
        details=details,
        asset="model_version:x" if upper_tier else None,
        salts=bytes(range(256)) * 4,
    )
    secrets, asset = domain.parse_private(sealed.private)
    record = domain.EventRecord(
        0,
        "0190b7c2-8d3e-7000-8000-000000000001",
        "2026-01-01T00:00:00.000000Z",
        "test.sealed",
        json.loads(sealed.actor),
        json.loads(sealed.resource),
        json.loads(sealed.details),
        2,
        leaf_hash(sealed.leaf),
        json.loads(sealed.commitments) if sealed.commitments else {},
        secrets,
        asset,
    )
    public_view = domain.event_json(record, classes)
    assert domain.event_leaf_data(public_view) == sealed.leaf  # the public view is the leaf
    assert (public_view["resource"] == resource) is not upper_tier
    assert {k for k, v in public_view["details"].items() if not domain.is_marker(v)} == public & set(details)
    private_view = domain.event_json(record, classes, domain.disclose_all)
    assert domain.check_disclosed(private_view) == []
    assert domain.full_event(record) == AuditEvent(
        0, record.event_id, record.occurred_at, actor, "test.sealed", resource, details
    )
    verifier = LogVerifier([], "", {})
    verifier.add_rows(
        [
            (
                0,
                record.event_id,
                record.occurred_at,
                sealed.actor,
                "test.sealed",
                sealed.resource,
                sealed.details,
                leaf_hash(sealed.leaf),
                2,
                sealed.commitments,
                sealed.private,
            )
        ]
    )
    report = verifier.finish()
    assert [p.kind for p in report.problems] == [ProblemKind.NO_HEAD]  # no head signed in this test
    assert report.private_checked == len(secrets)


def test_withheld_values_with_tabs_and_newlines_round_trip() -> None:
    tricky = {"a\tb": "line\none\ttab", "c": ["\n", {"\t": "x"}]}
    sealed = domain.seal_event(
        domain.FAIL_CLOSED,
        upper_tier=False,
        event_id="e",
        occurred_at="t",
        actor="a\nb",
        action="x",
        resource="r\tr",
        details=tricky,
        asset=None,
        salts=bytes(128),
    )
    secrets, _ = domain.parse_private(sealed.private)
    assert secrets["internal"][1] == {
        "actor": "a\nb",
        "details.a\tb": "line\none\ttab",
        "details.c": ["\n", {"\t": "x"}],
        "resource": "r\tr",
    }
