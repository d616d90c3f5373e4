"""Use cases of authentication: issuing, checking and revoking API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from aperture.access import store
from aperture.access.domain import (
    KEY_PREFIX,
    ApiKey,
    Caller,
    Role,
    hash_secret,
    key_matches,
    key_usable,
    parse_key,
)
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated


@dataclass(frozen=True)
class IssuedKey:
    """The key text is shown once and never stored; only its hash is kept."""

    key: ApiKey
    text: str


class AccessService:
    def __init__(self, database: Database, audit: AuditLog, clock: Clock) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock

    def issue_key(
        self,
        caller: Caller,
        *,
        name: str,
        principal: str,
        roles: tuple[Role, ...],
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        if not caller.has(Role.ADMINISTRATOR):
            raise Forbidden("only an administrator may issue API keys", hint="ask an administrator")
        if not name.strip() or not principal.strip():
            raise InvalidInput("a key needs a name and a principal", hint="pass --name and --principal")
        now = self.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("the expiry is in the past", hint="give a future time, or none")
        with self.database.transaction() as connection:
            while True:
                key_id = secrets.token_hex(4)
                if store.load_key(connection, key_id) is None:
                    break
            text = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(key_id, name, principal, roles, now, expires_at, None)
            store.insert_key(connection, key, hash_secret(text))
            self.audit.append(
                connection,
                actor=caller.actor,
                action="access.key.issued",
                resource=f"api-key:{key_id}",
                details={"name": name, "principal": principal, "roles": [r.value for r in roles]},
            )
        return IssuedKey(key, text)

    def authenticate(self, key_text: str) -> Caller:
        key_id = parse_key(key_text)
        if key_id is None:
            raise Unauthenticated("the API key is malformed", hint="send `Authorization: Bearer apk_...`")
        with self.database.read() as connection:
            found = store.load_key(connection, key_id)
        if found is None or not key_matches(key_text, found[1]):
            raise Unauthenticated(
                "the API key is not known",
                hint="send `Authorization: Bearer apk_...` with a key issued by this instance, or ask for a new one",
            )
        key = found[0]
        if not key_usable(key, self.clock.now()):
            raise Unauthenticated("the API key is revoked or expired", hint="ask an administrator for a new key")
        return Caller(principal=key.principal, roles=key.roles, key_id=key.key_id)

    def revoke_key(self, caller: Caller, key_id: str) -> ApiKey:
        if not caller.has(Role.ADMINISTRATOR):
            raise Forbidden("only an administrator may revoke API keys", hint="ask an administrator")
        with self.database.transaction() as connection:
            found = store.load_key(connection, key_id)
            if found is None:
                raise NotFound(f"no API key {key_id}", hint="`aperture keys list` shows the keys")
            store.mark_revoked(connection, key_id, self.clock.now())
            self.audit.append(connection, actor=caller.actor, action="access.key.revoked", resource=f"api-key:{key_id}")
            loaded = store.load_key(connection, key_id)
            assert loaded is not None
            return loaded[0]

    def list_keys(self) -> list[ApiKey]:
        with self.database.read() as connection:
            return store.list_keys(connection)

    def has_any_key(self) -> bool:
        with self.database.read() as connection:
            return store.count_keys(connection) > 0
