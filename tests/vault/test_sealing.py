"""The sealed file format and key custody, byte by byte: every way of damaging a sealed file is
caught before a byte of the damaged part is released, and shares rebuild only the right key."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.core.errors import IntegrityFailure, InvalidInput
from aperture.vault.artifacts import SourceFile, open_new_file
from aperture.vault.sealed_files import seal_file, unseal_digest, unseal_to
from aperture.vault.sealing import (
    HEADER_SIZE,
    TAG,
    SealedReader,
    Sealer,
    Share,
    combine_shares,
    generate_tier_key,
    open_sealed,
    parse_share,
    public_of,
    seal_bytes,
    share_hash,
    share_matches,
    split_key,
)

ARTIFACT = "0b6c52b5-5b9b-4c55-9a87-2f0f3b1f2a10"
OTHER_ARTIFACT = "7d1e0c1a-3f57-4a55-8c61-9b1e1f6a0c22"
CHUNK = 4096  # the smallest chunk the format allows: many chunks from a few kilobytes


@pytest.fixture(scope="module")
def tier() -> tuple[bytes, bytes]:
    return generate_tier_key()


def _sealed(tmp_path: Path, tier: tuple[bytes, bytes], plain: bytes, name: str = "sealed") -> Path:
    path = tmp_path / name
    path.write_bytes(seal_bytes(tier[1], ARTIFACT, plain, CHUNK))
    return path


def _read(path: Path, private: bytes, artifact: str = ARTIFACT, expected: str | None = None) -> bytes:
    return b"".join(open_sealed(path, private, artifact, expected))


def _released_before_failure(path: Path, private: bytes) -> bytes:
    """What a reader got before the format refused the file."""
    released = bytearray()
    with pytest.raises(IntegrityFailure):
        for chunk in open_sealed(path, private, ARTIFACT):
            released += chunk
    return bytes(released)


def _chunk_offset(counter: int) -> int:
    return HEADER_SIZE + counter * (CHUNK + TAG)


PLAIN = os.urandom(3 * CHUNK + 100)  # three full chunks and a short final one


def test_round_trip_keeps_every_byte_and_writes_no_plaintext(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    assert len(raw) == HEADER_SIZE + len(PLAIN) + 4 * TAG
    assert PLAIN[:64] not in raw and PLAIN[-64:] not in raw
    assert _read(path, tier[0], expected=hashlib.sha256(PLAIN).hexdigest()) == PLAIN


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK])
def test_sizes_at_chunk_boundaries_round_trip(tmp_path: Path, tier: tuple[bytes, bytes], size: int) -> None:
    plain = os.urandom(size)
    assert _read(_sealed(tmp_path, tier, plain), tier[0]) == plain


def test_a_flipped_bit_in_a_chunk_stops_the_read_at_that_chunk(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = bytearray(path.read_bytes())
    raw[_chunk_offset(2) + 10] ^= 0x01
    path.write_bytes(raw)
    with pytest.raises(IntegrityFailure, match="chunk 2 does not authenticate"):
        _read(path, tier[0])
    # Chunks 0 and 1 were authenticated and released; nothing of chunk 2 was.
    assert _released_before_failure(path, tier[0]) == PLAIN[: 2 * CHUNK]


def test_a_tampered_tag_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x80
    path.write_bytes(raw)
    with pytest.raises(IntegrityFailure, match="chunk 3 does not authenticate"):
        _read(path, tier[0])


def test_a_file_cut_at_a_chunk_boundary_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    """Without the final flag, dropping the last chunks would leave a shorter, valid-looking file."""
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    path.write_bytes(raw[: _chunk_offset(2)])
    with pytest.raises(IntegrityFailure, match="chunk 1 does not authenticate"):
        _read(path, tier[0])


def test_a_file_cut_inside_a_chunk_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    path.write_bytes(raw[: _chunk_offset(3) + 5])  # fewer bytes than a tag
    with pytest.raises(IntegrityFailure, match="the last chunk is truncated"):
        _read(path, tier[0])
    path.write_bytes(raw[: _chunk_offset(2) + 100])
    with pytest.raises(IntegrityFailure, match="does not authenticate"):
        _read(path, tier[0])


def test_a_file_cut_to_its_header_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    path.write_bytes(raw[:HEADER_SIZE])
    with pytest.raises(IntegrityFailure, match="there is no data"):
        _read(path, tier[0])
    path.write_bytes(raw[: HEADER_SIZE - 1])
    with pytest.raises(IntegrityFailure, match="header is truncated"):
        _read(path, tier[0])


def test_reordered_chunks_are_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    first, second = raw[_chunk_offset(0) : _chunk_offset(1)], raw[_chunk_offset(1) : _chunk_offset(2)]
    path.write_bytes(raw[:HEADER_SIZE] + second + first + raw[_chunk_offset(2) :])
    with pytest.raises(IntegrityFailure, match="chunk 0 does not authenticate"):
        _read(path, tier[0])


def test_an_appended_chunk_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    """A chunk copied onto the end turns the real final chunk into a middle one: its flag is wrong."""
    path = _sealed(tmp_path, tier, PLAIN[: 2 * CHUNK])
    raw = path.read_bytes()
    path.write_bytes(raw + raw[_chunk_offset(0) : _chunk_offset(1)])
    with pytest.raises(IntegrityFailure, match="chunk 1 does not authenticate"):
        _read(path, tier[0])


def test_a_chunk_from_another_sealed_file_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    """Each file has its own data key and nonce prefix: chunks do not move between files."""
    one = _sealed(tmp_path, tier, PLAIN, "one").read_bytes()
    two = _sealed(tmp_path, tier, PLAIN, "two").read_bytes()
    path = tmp_path / "mixed"
    path.write_bytes(one[: _chunk_offset(1)] + two[_chunk_offset(1) : _chunk_offset(2)] + one[_chunk_offset(2) :])
    with pytest.raises(IntegrityFailure, match="chunk 1 does not authenticate"):
        _read(path, tier[0])


def test_a_changed_header_is_caught(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    raw = path.read_bytes()
    prefix_at = HEADER_SIZE - 7  # the nonce prefix, the header's last field: bound through the AAD
    changed = bytearray(raw)
    changed[prefix_at] ^= 0x01
    path.write_bytes(changed)
    with pytest.raises(IntegrityFailure, match="chunk 0 does not authenticate"):
        _read(path, tier[0])
    changed = bytearray(raw)
    changed[HEADER_SIZE - 7 - 48] ^= 0x01  # the wrapped data key
    path.write_bytes(changed)
    with pytest.raises(IntegrityFailure, match="does not unwrap"):
        _read(path, tier[0])
    changed = bytearray(raw)
    changed[0:8] = b"NOTSEAL!"
    path.write_bytes(changed)
    with pytest.raises(IntegrityFailure, match="known format"):
        _read(path, tier[0])
    changed = bytearray(raw)
    changed[10:14] = struct.pack(">I", 1 << 30)  # a chunk size out of range
    path.write_bytes(changed)
    with pytest.raises(IntegrityFailure, match="chunk size"):
        _read(path, tier[0])


def test_a_file_of_another_artifact_is_refused(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    with pytest.raises(IntegrityFailure, match="belongs to another artifact"):
        _read(path, tier[0], OTHER_ARTIFACT)


def test_the_wrong_tier_key_opens_nothing(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    path = _sealed(tmp_path, tier, PLAIN)
    other_private, _ = generate_tier_key()
    assert _released_before_failure(path, other_private) == b""
    with pytest.raises(IntegrityFailure, match="does not unwrap with the tier key"):
        _read(path, other_private)


def test_a_validly_sealed_replacement_fails_the_recorded_digest(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    """Writing needs only the public key, so anyone can seal other content under the same id:
    the plaintext digest (recorded and signed at registration) is what binds the content."""
    path = _sealed(tmp_path, tier, b"other weights")
    with pytest.raises(IntegrityFailure, match="does not match its recorded digest"):
        _read(path, tier[0], expected=hashlib.sha256(PLAIN).hexdigest())


@pytest.mark.parametrize("direct", [False, True])
def test_streaming_pipelines_match_the_in_memory_format(
    tmp_path: Path, tier: tuple[bytes, bytes], direct: bool
) -> None:
    """seal_file (threads, reused buffers, page-aligned O_DIRECT writes where the file system
    takes them) writes a file open_sealed reads; unseal_to and unseal_digest give the same bytes
    and digest; and a tampered chunk stops unseal_to."""
    plain = os.urandom(9 * CHUNK + 7)  # more chunks than the pipeline has buffers
    source_path = tmp_path / "weights.bin"
    source_path.write_bytes(plain)
    info = source_path.stat()
    source = SourceFile(source_path, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, "weights.bin")
    sealed_path = tmp_path / "sealed"
    progress: list[int] = []
    out_fd, direct = open_new_file(sealed_path, 0o600, direct=direct)
    try:
        with open(source_path, "rb") as src:
            sealer = Sealer(tier[1], ARTIFACT, CHUNK)
            digest = seal_file(sealer, src.fileno(), out_fd, source, progress.append, direct=direct)
    finally:
        os.close(out_fd)
    assert digest == hashlib.sha256(plain).hexdigest() and sum(progress) == len(plain)
    assert sealed_path.stat().st_size == HEADER_SIZE + len(plain) + 10 * TAG
    assert _read(sealed_path, tier[0], expected=digest) == plain
    with SealedReader(sealed_path, tier[0], ARTIFACT) as reader:
        assert reader.count == 10
        assert unseal_digest(reader, None) == digest
    out_fd, direct = open_new_file(tmp_path / "out", 0o600, direct=direct)
    try:
        with SealedReader(sealed_path, tier[0], ARTIFACT) as reader:
            assert unseal_to(reader, out_fd, None, direct=direct) == digest
    finally:
        os.close(out_fd)
    assert (tmp_path / "out").read_bytes() == plain
    raw = bytearray(sealed_path.read_bytes())
    raw[_chunk_offset(7)] ^= 0x01
    sealed_path.write_bytes(raw)
    with (
        SealedReader(sealed_path, tier[0], ARTIFACT) as reader,
        open(tmp_path / "damaged", "wb") as out,
        pytest.raises(IntegrityFailure, match="chunk 7"),
    ):
        unseal_to(reader, out.fileno(), None)
    assert (tmp_path / "damaged").stat().st_size <= 7 * CHUNK  # nothing of chunk 7 was written


def test_a_source_that_grows_while_it_is_sealed_is_refused(tmp_path: Path, tier: tuple[bytes, bytes]) -> None:
    source_path = tmp_path / "weights.bin"
    source_path.write_bytes(os.urandom(3 * CHUNK))
    info = source_path.stat()
    planned = SourceFile(source_path, info.st_size, info.st_dev, info.st_ino, info.st_mtime_ns, "weights.bin")
    with open(source_path, "ab") as grow:
        grow.write(b"more")
    with (
        open(source_path, "rb") as src,
        open(tmp_path / "sealed", "wb") as out,
        pytest.raises(InvalidInput, match="changed while it was being registered"),
    ):
        seal_file(Sealer(tier[1], ARTIFACT, CHUNK), src.fileno(), out.fileno(), planned, None)


# --- custody ------------------------------------------------------------------------------------


def test_any_k_shares_rebuild_the_key_and_fewer_do_not(tier: tuple[bytes, bytes]) -> None:
    private, public = tier
    shares = split_key(private, "00112233aabbccdd", 3, 5)
    assert {share.index for share in shares} == {1, 2, 3, 4, 5}
    for chosen in ([0, 1, 2], [4, 2, 0], [1, 3, 4]):
        assert combine_shares([shares[i] for i in chosen]) == private
    assert public_of(combine_shares(shares[:2])) != public  # two of a 3-of-5 split: a wrong key


def test_custody_needs_two_to_unseal() -> None:
    private, _ = generate_tier_key()
    for threshold, count in ((1, 3), (3, 2), (0, 0), (2, 256)):
        with pytest.raises(InvalidInput, match="k-of-n custody"):
            split_key(private, "00112233aabbccdd", threshold, count)


def test_share_text_round_trips_and_bad_text_is_refused(tier: tuple[bytes, bytes]) -> None:
    share = split_key(tier[0], "00112233aabbccdd", 2, 3)[1]
    assert parse_share(share.text) == share
    assert parse_share(f"  {share.text}\n") == share
    for bad in ("", "aps1-", share.text[:-1], share.text.replace("aps1", "aps2"), share.text + "00"):
        with pytest.raises(InvalidInput, match="not an unseal share"):
            parse_share(bad)


def test_a_share_hash_recognises_only_its_own_share(tier: tuple[bytes, bytes]) -> None:
    one, two = split_key(tier[0], "00112233aabbccdd", 2, 2)
    assert share_matches(one, share_hash(one))
    assert not share_matches(two, share_hash(one))
    forged = Share(one.keyring_id, one.index, bytes(32))
    assert not share_matches(forged, share_hash(one))
    moved = Share("ffffffffffffffff", one.index, one.value)
    assert not share_matches(moved, share_hash(one))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sealing") / "sealed"


@settings(max_examples=40, deadline=None)
@given(plain=st.binary(max_size=3 * CHUNK + 50), flip=st.integers(min_value=0))
def test_any_single_changed_byte_is_caught(tier: tuple[bytes, bytes], scratch: Path, plain: bytes, flip: int) -> None:
    sealed = bytearray(seal_bytes(tier[1], ARTIFACT, plain, CHUNK))
    sealed[flip % len(sealed)] ^= 0xFF
    scratch.write_bytes(sealed)
    with pytest.raises(IntegrityFailure):
        _read(scratch, tier[0])
