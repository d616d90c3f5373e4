"""The vault pieces licensing adds: a small secret sealed to the tier, and a stream sealed as it is
produced (the marked copy), read back chunk by chunk, with a wrong announced size refused."""

from __future__ import annotations

import os

import pytest

from aperture.core.errors import IntegrityFailure, Unavailable
from aperture.vault.sealing import CHUNK
from tests.licensing.world import World


def test_secrets_need_the_tier_unsealed(world: World) -> None:
    vault = world.services.vault
    keyring, artifact, sealed = vault.seal_secret(b"s" * 32)
    assert b"s" * 32 not in sealed
    with pytest.raises(Unavailable):
        vault.open_secret(keyring, artifact, sealed)
    world.unseal()
    assert vault.open_secret(keyring, artifact, sealed) == b"s" * 32
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(IntegrityFailure):
        vault.open_secret(keyring, artifact, tampered)
    with pytest.raises(IntegrityFailure, match="another keyring"):
        vault.open_secret("0" * 16, artifact, sealed)


@pytest.mark.parametrize("size", [0, 10, CHUNK, CHUNK + 1, 2 * CHUNK])
def test_streams_of_any_size_round_trip(world: World, size: int) -> None:
    world.unseal()
    vault = world.services.vault
    data = os.urandom(size)
    pieces = [memoryview(data[i : i + 1_000_003]) for i in range(0, size, 1_000_003)] or [memoryview(b"")]
    with vault.staging() as staged:
        blob = vault.seal_stream(staged, pieces, size)
    assert b"".join(vault.open_sealed_blob(blob)) == data
    assert data[:64] not in vault.sealed_path(blob.artifact_id).read_bytes() or size == 0


def test_a_stream_shorter_than_announced_leaves_nothing(world: World) -> None:
    vault = world.services.vault
    before = {p for p in vault.sealed_dir.rglob("*")} if vault.sealed_dir.exists() else set()
    with pytest.raises(IntegrityFailure), vault.staging() as staged:
        vault.seal_stream(staged, [b"abc"], 10)
    after = {p for p in vault.sealed_dir.rglob("*") if p.is_file()}
    assert not (after - before)
