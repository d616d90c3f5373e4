"""API keys and roles. Pure rules: no I/O, no clock of its own."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

KEY_PREFIX = "apk"
# `apk_<8 lowercase hex lookup id>_<43 chars of base64url secret>`: 256 bits of secret.
KEY_PATTERN = re.compile(r"^apk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    CHIEF_SCIENTIST = "chief_scientist"
    PROGRAMME_DIRECTOR = "programme_director"
    RELEASE_BOARD_MEMBER = "release_board_member"
    SECURITY_OFFICER = "security_officer"
    KEY_CUSTODIAN = "key_custodian"
    RAID_ANALYST = "raid_analyst"
    MEMBER_DELEGATE = "member_delegate"
    LICENSEE = "licensee"
    API_CUSTOMER = "api_customer"
    RESEARCHER = "researcher"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str  # the 8-hex lookup id inside the key text
    name: str
    principal: str
    roles: tuple[Role, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is acting: the principal behind an authenticated key (or `anonymous`)."""

    principal: str
    roles: tuple[Role, ...]
    key_id: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def actor(self) -> str:
        """How the caller appears in audit events."""
        return f"{self.principal} (key {self.key_id})" if self.key_id else self.principal


ANONYMOUS = Caller(principal="anonymous", roles=(Role.PUBLIC,))
SYSTEM = Caller(principal="system", roles=(Role.ADMINISTRATOR,))


def hash_secret(key_text: str) -> bytes:
    """SHA-256 of the whole key. The secret has 256 bits of entropy, so a slow password hash
    adds nothing against guessing and would cost every request milliseconds."""
    return hashlib.sha256(key_text.encode("ascii")).digest()


def parse_key(key_text: str) -> str | None:
    """The lookup id of a well-formed key, or None."""
    match = KEY_PATTERN.match(key_text.strip())
    return match.group(1) if match else None


def key_matches(key_text: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(key_text.strip()), stored_hash)


def key_usable(key: ApiKey, now: datetime) -> bool:
    if key.revoked_at is not None:
        return False
    return key.expires_at is None or now < key.expires_at
