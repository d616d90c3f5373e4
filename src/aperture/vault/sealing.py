"""Sealed storage for the upper tier: envelope encryption, streamed, and k-of-n key custody.

Each artifact gets a fresh AES-256-GCM data key. The data key is wrapped (AES-256-GCM) under a
key-encryption key agreed, for that artifact alone, between a fresh X25519 key and the tier's
X25519 public key (ECIES: X25519, HKDF-SHA256). Writing therefore needs only the tier's public
key, and works while the tier is sealed; reading needs the tier's private key, which is never
stored whole: it is split k-of-n among the key custodians with Shamir secret sharing
(pycryptodome's `Crypto.Protocol.SecretSharing.Shamir` over GF(2^128): the 32-byte key is split
as two 16-byte halves with the same share indices). The tier stays sealed after a restart until
k custodians present their shares, as in HashiCorp Vault's unseal.

File layout (one file per artifact under HOME/sealed/):

    header  "APSEAL01" | u16 version | u32 chunk size | artifact id (36 ASCII) |
            ephemeral X25519 public key (32) | wrap nonce (12) | wrapped data key (48) |
            nonce prefix (7)                                             = 149 bytes
    chunks  AES-256-GCM(data key, nonce = prefix | u32 counter | final flag, aad = SHA-256(header))

Every chunk is authenticated before a byte of it is released; the counter stops reordering and
the final flag stops truncation at a chunk boundary. Reads stream chunk by chunk (no whole-file
buffering), so memory stays at a few chunks whatever the artifact's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import struct
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aperture.core.errors import IntegrityFailure, InvalidInput

MAGIC = b"APSEAL01"
FORMAT_VERSION = 1
CHUNK = 4 * 1024 * 1024
TAG = 16
READ_AHEAD = 2  # chunks the kernel is asked to read ahead of the one being decrypted
ID_LENGTH = 36
_FIXED = struct.Struct(f">8sHI{ID_LENGTH}s32s12s48s7s")
HEADER_SIZE = _FIXED.size
WRAP_INFO = b"aperture sealed artifact v1"
SHARE_PATTERN = re.compile(r"^aps1-([0-9a-f]{16})-([0-9]{1,3})-([0-9a-f]{64})$")
MAX_SHARES = 255


# --- the tier key and its custody -------------------------------------------------------------


def generate_tier_key() -> tuple[bytes, bytes]:
    """(private, public) raw 32-byte X25519 keys."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw, public_of(raw)


def public_of(private: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Share:
    keyring_id: str
    index: int
    value: bytes  # 32 bytes: the shares of the key's two 16-byte halves

    @property
    def text(self) -> str:
        return f"aps1-{self.keyring_id}-{self.index}-{self.value.hex()}"


def check_custody(threshold: int, count: int) -> None:
    if not 2 <= threshold <= count <= MAX_SHARES:
        raise InvalidInput(
            f"k-of-n custody needs 2 <= k <= n <= {MAX_SHARES} (got {threshold} of {count})",
            hint="name at least two custodians and a threshold of at least two: nobody unseals alone",
        )


def split_key(private: bytes, keyring_id: str, threshold: int, count: int) -> list[Share]:
    check_custody(threshold, count)
    low = Shamir.split(threshold, count, private[:16])
    high = Shamir.split(threshold, count, private[16:])
    return [Share(keyring_id, index, a + b) for (index, a), (_, b) in zip(low, high, strict=True)]


def combine_shares(shares: list[Share]) -> bytes:
    low = Shamir.combine([(share.index, share.value[:16]) for share in shares])
    high = Shamir.combine([(share.index, share.value[16:]) for share in shares])
    return low + high


def parse_share(text: str) -> Share:
    match = SHARE_PATTERN.match(text.strip())
    if match is None:
        raise InvalidInput(
            "that is not an unseal share", hint="paste the whole share as printed at `aperture seal init`: aps1-..."
        )
    return Share(match.group(1), int(match.group(2)), bytes.fromhex(match.group(3)))


def share_hash(share: Share) -> bytes:
    """What the database keeps of a share: enough to recognise it, nothing to rebuild the key
    (a share is 256 bits of key material; its hash reveals none of them)."""
    return hashlib.sha256(
        b"aperture unseal share v1|%s|%d|" % (share.keyring_id.encode(), share.index) + share.value
    ).digest()


def share_matches(share: Share, stored: bytes) -> bool:
    return hmac.compare_digest(share_hash(share), stored)


# --- sealing and opening artifacts ------------------------------------------------------------


def _kek(shared: bytes, ephemeral_public: bytes, tier_public: bytes, artifact_id: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + tier_public, info=WRAP_INFO + artifact_id)
    return hkdf.derive(shared)


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if final else 0)


@dataclass(frozen=True, slots=True)
class SealedFile:
    sha256: str  # of the plaintext
    size: int  # plaintext bytes
    sealed_size: int


class Sealer:
    """Encrypts one plaintext of a known size into a sealed file, chunk by chunk.

    The caller cuts the plaintext into `chunk_count(size)` chunks of `chunk` bytes (the last one
    shorter, or empty for an empty file) and seals each into a buffer of its own with
    `seal_into`, so no chunk is copied or allocated on the way (the sealed store reuses buffers
    and encrypts on its writing thread)."""

    def __init__(self, tier_public: bytes, artifact_id: str, chunk: int = CHUNK) -> None:
        identifier = artifact_id.encode("ascii")
        if len(identifier) != ID_LENGTH:
            raise ValueError("artifact ids are 36-character UUID strings")
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(tier_public))
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce = os.urandom(12)
        prefix = os.urandom(7)
        bound = MAGIC + struct.pack(">HI", FORMAT_VERSION, chunk) + identifier + ephemeral_public
        wrapped = AESGCM(_kek(shared, ephemeral_public, tier_public, identifier)).encrypt(wrap_nonce, data_key, bound)
        self.header = _FIXED.pack(
            MAGIC, FORMAT_VERSION, chunk, identifier, ephemeral_public, wrap_nonce, wrapped, prefix
        )
        self._aad = hashlib.sha256(self.header).digest()
        self._aead = AESGCM(data_key)
        self._prefix = prefix
        self.chunk = chunk

    def chunk_count(self, size: int) -> int:
        """How many chunks a plaintext of `size` bytes takes (an empty one still has one)."""
        return max(1, -(-size // self.chunk))

    def seal_into(self, counter: int, final: bool, plain: memoryview, out: memoryview) -> memoryview:
        """Encrypt chunk `counter` into `out` (at least len(plain) + TAG bytes); the sealed bytes."""
        sealed = out[: len(plain) + TAG]
        self._aead.encrypt_into(_nonce(self._prefix, counter, final), plain, self._aad, sealed)
        return sealed

    def seal(self, counter: int, final: bool, plain: bytes) -> bytes:
        """Encrypt one chunk into new bytes (for small plaintexts and tests)."""
        return self._aead.encrypt(_nonce(self._prefix, counter, final), plain, self._aad)


def seal_bytes(tier_public: bytes, artifact_id: str, plain: bytes, chunk: int = CHUNK) -> bytes:
    """A whole sealed file in memory: header and chunks (tests and small payloads)."""
    sealer = Sealer(tier_public, artifact_id, chunk)
    count = sealer.chunk_count(len(plain))
    parts = [sealer.header]
    for counter in range(count):
        parts.append(sealer.seal(counter, counter == count - 1, plain[counter * chunk : (counter + 1) * chunk]))
    return b"".join(parts)


def _tampered(what: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"the sealed artifact is damaged or was tampered with: {what}",
        hint="restore HOME/sealed from backup; nothing of the damaged part was released",
    )


def _open_header(header: bytes, tier_private: bytes, artifact_id: str) -> tuple[AESGCM, bytes, int, bytes]:
    if len(header) != HEADER_SIZE:
        raise _tampered("the header is truncated")
    magic, version, chunk, identifier, ephemeral_public, wrap_nonce, wrapped, prefix = _FIXED.unpack(header)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise _tampered("not a sealed artifact of a known format")
    if identifier != artifact_id.encode("ascii"):
        raise _tampered("the file belongs to another artifact")
    if not 4096 <= chunk <= 64 * 1024 * 1024:
        raise _tampered("the chunk size is out of range")
    private = X25519PrivateKey.from_private_bytes(tier_private)
    tier_public = public_of(tier_private)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        bound = MAGIC + struct.pack(">HI", version, chunk) + identifier + ephemeral_public
        data_key = AESGCM(_kek(shared, ephemeral_public, tier_public, identifier)).decrypt(wrap_nonce, wrapped, bound)
    except (InvalidTag, ValueError):
        raise _tampered("its data key does not unwrap with the tier key") from None
    return AESGCM(data_key), prefix, chunk, hashlib.sha256(header).digest()


class SealedReader:
    """One sealed file opened for reading: header unwrapped, layout checked, chunks decrypted one
    at a time into the caller's buffers, each authenticated before any byte of it is returned."""

    def __init__(self, path: Path, tier_private: bytes, artifact_id: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            header = os.pread(fd, HEADER_SIZE, 0)
            self._aead, self._prefix, self.chunk, self._aad = _open_header(header, tier_private, artifact_id)
            self.full, self.rest = divmod(size - HEADER_SIZE, self.chunk + TAG)
            if self.rest and self.rest < TAG:
                raise _tampered("the last chunk is truncated")
            self.count = self.full + (1 if self.rest else 0)
            if self.count == 0:
                raise _tampered("there is no data")
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self._offset = HEADER_SIZE
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def sealed_length(self, counter: int) -> int:
        return self.chunk + TAG if counter < self.full else self.rest

    def read_into(self, counter: int, sealed: memoryview, plain: memoryview) -> memoryview:
        """Read chunk `counter` (chunks are read in order) into `sealed`, decrypt it into `plain`
        and return the plaintext, or raise IntegrityFailure when it does not authenticate."""
        length = self.sealed_length(counter)
        view = sealed[:length]
        got = 0
        while got < length:
            read = os.preadv(self.fd, [view[got:]], self._offset + got)
            if read == 0:
                raise _tampered("the file changed while it was read")
            got += read
        self._offset += length
        # Ask the kernel to start reading the next chunks now (asynchronously), so the disk works
        # while this one is decrypted, hashed and written: a cold file then reads at disk speed.
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self.fd, self._offset, READ_AHEAD * (self.chunk + TAG), os.POSIX_FADV_WILLNEED)
        out = plain[: length - TAG]
        try:
            self._aead.decrypt_into(_nonce(self._prefix, counter, counter == self.count - 1), view, self._aad, out)
        except InvalidTag:
            raise _tampered(f"chunk {counter} does not authenticate") from None
        return out

    def buffers(self) -> tuple[memoryview, memoryview]:
        """A (sealed, plain) pair of buffers big enough for any chunk of this file."""
        return memoryview(bytearray(self.chunk + TAG)), memoryview(bytearray(self.chunk))


def open_sealed(
    path: Path, tier_private: bytes, artifact_id: str, expected_sha256: str | None = None
) -> Generator[bytes, None, None]:
    """Yield the plaintext chunk by chunk (each a new bytes object the consumer may keep), each
    authenticated before it is released; at the end check the plaintext digest when given.
    Raises IntegrityFailure at the first damaged byte."""
    with SealedReader(path, tier_private, artifact_id) as reader:
        sealed, plain = reader.buffers()
        digest = hashlib.sha256()
        for counter in range(reader.count):
            chunk = reader.read_into(counter, sealed, plain)
            digest.update(chunk)
            yield bytes(chunk)
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise _tampered("the plaintext does not match its recorded digest")


def new_artifact_id() -> str:
    return str(_uuid4())


def _uuid4() -> object:
    import uuid

    return uuid.UUID(bytes=secrets.token_bytes(16), version=4)


def open_sealed_bytes(data: bytes, tier_private: bytes, artifact_id: str) -> bytes:
    """The plaintext of a small sealed payload held in memory (a secret kept in the database)."""
    if len(data) < HEADER_SIZE + TAG:
        raise _tampered("the sealed payload is truncated")
    aead, prefix, chunk, aad = _open_header(data[:HEADER_SIZE], tier_private, artifact_id)
    body = data[HEADER_SIZE:]
    pieces = [body[i : i + chunk + TAG] for i in range(0, len(body), chunk + TAG)]
    out = []
    for counter, piece in enumerate(pieces):
        try:
            out.append(aead.decrypt(_nonce(prefix, counter, counter == len(pieces) - 1), piece, aad))
        except InvalidTag:
            raise _tampered(f"chunk {counter} does not authenticate") from None
    return b"".join(out)
