"""Use cases of access: principals, classification, authorization (Cedar), authentication.

Authorization goes through one function, `AccessService.authorize`, which every area calls from
its service layer: CLI, API and pages share the one check. It decides with the Cedar policies over
an entity store built from the database, audits every decision on an upper-tier asset (allow and
deny), and tells its observers (the canary and anomaly watch) about each decision.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import cedarpy
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection

from aperture.access import store
from aperture.access.domain import (
    INSTANCE_UID,
    KEY_PREFIX,
    OPERATOR,
    RESERVED_PRINCIPALS,
    UNREGISTERED,
    Action,
    ApiKey,
    AssetRef,
    Caller,
    Classification,
    Decision,
    KeyRequest,
    KeyRequestStatus,
    Organisation,
    Principal,
    PrincipalKind,
    Programme,
    Role,
    SecurityLevel,
    State,
    UiSession,
    Vetting,
    after_failed_login,
    cedar_entities,
    check_classification,
    check_clearance,
    check_key_principal,
    check_name,
    check_password_strength,
    check_scopes,
    check_state,
    cleared_for,
    decision_context,
    distinct_hands,
    hash_secret,
    is_locked,
    issuers_of,
    key_matches,
    key_usable,
    parse_key,
    scope_allows,
)
from aperture.access.policy import PolicyEngine
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from aperture.core.ids import new_id

# Told of every decision on an asset: (caller, decision, classification, purpose), where purpose is
# "read" for a use of the asset and "list" for a listing that only shows it exists.
DecisionObserver = Callable[[Caller, Decision, Classification, str], None]


@dataclass(frozen=True)
class AccessSettings:
    """The knobs of authorization and authentication (from Settings, by the composition root)."""

    refresh_s: float = 1.0
    login_max_failures: int = 5
    login_lockout: timedelta = timedelta(minutes=15)
    session_ttl: timedelta = timedelta(hours=8)


@dataclass(frozen=True)
class IssuedKey:
    """The key text is shown once and never stored; only its hash is kept."""

    key: ApiKey
    text: str


class AccessService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        *,
        engine: PolicyEngine | None = None,
        config: AccessSettings | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock
        self.engine = engine or PolicyEngine.shipped()
        self.config = config or AccessSettings()
        self.passwords = PasswordHasher()
        self._dummy: str | None = None
        self._observers: list[DecisionObserver] = []
        self._lock = threading.Lock()
        self._entities: cedarpy.Entities | None = None
        self._known: frozenset[str] = frozenset()
        self._assets: dict[str, Classification] = {}
        self._generation = -1
        self._checked_at = 0.0

    # --- API keys -----------------------------------------------------------------------
    #
    # A key for a person comes from that person (signed in, for themself) or from two
    # administrators (one asks, a second approves); the local operator (the CLI) issues keys too.
    # Every key records who issued it, and every act done with it carries that (`Caller.actor`).

    def issue_key(
        self,
        caller: Caller,
        *,
        name: str,
        principal: str,
        roles: Sequence[Role] | None = None,
        expires_at: datetime | None = None,
        scopes: Sequence[str] | None = None,
    ) -> IssuedKey:
        """A key issued at once: the caller's own (never with more roles or scopes than the caller
        acts with), or any key when the caller is the local operator. A key for someone else over
        the API is `request_key` by one administrator and `approve_key_request` by a second."""
        own = principal.strip() == caller.principal
        self.require_instance(
            caller,
            Action.ISSUE_KEY,
            own=own,
            hint="a key for someone else takes two administrators: one asks (POST /api/v1/key-requests), "
            "a second approves it",
        )
        principal = check_key_principal(principal)
        if own:
            chosen = caller.roles if roles is None else tuple(roles)
            beyond = sorted(role.value for role in chosen if role not in caller.roles)
            if beyond:
                raise InvalidInput(
                    f"your key cannot carry roles you do not act with: {', '.join(beyond)}",
                    hint="give the new key some of your own roles",
                )
            if caller.scopes is not None and "*" not in caller.scopes:
                wanted = ("*",) if scopes is None else check_scopes(scopes)
                if "*" in wanted or not set(wanted) <= set(caller.scopes):
                    raise InvalidInput(
                        "your key cannot do more than the key you act with",
                        hint="limit it to some of these scopes: " + ", ".join(caller.scopes),
                    )
            issued_by = caller.issued_by
        else:  # the local operator
            chosen = (Role.RESEARCHER,) if roles is None else tuple(roles)
            issued_by = (caller.principal,)
        return self._new_key(caller, name, principal, chosen, expires_at, scopes, issued_by, {})

    def request_key(
        self,
        caller: Caller,
        *,
        name: str,
        principal: str,
        roles: Sequence[Role] = (Role.RESEARCHER,),
        expires_at: datetime | None = None,
        scopes: Sequence[str] | None = None,
    ) -> KeyRequest:
        """An administrator asks for a key for someone; a second administrator approves it."""
        principal = check_key_principal(principal)
        self.require_instance(caller, Action.REQUEST_KEY)
        now = self.clock.now()
        key_scopes = None if scopes is None else check_scopes(scopes)
        with self.database.transaction() as connection:
            self._check_key(connection, name, principal, tuple(roles), expires_at, now)
            request = KeyRequest(
                id=new_id(),
                name=name.strip(),
                principal=principal,
                roles=tuple(dict.fromkeys(roles)),
                scopes=key_scopes,
                expires_at=expires_at,
                requested_by=caller.principal,
                requested_with=caller.issued_by,
                requested_at=now,
            )
            store.insert_key_request(connection, request)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="access.key.requested",
                resource=f"key-request:{request.id}",
                details=_key_details(request.name, principal, request.roles, key_scopes, expires_at),
            )
        return request

    def approve_key_request(self, caller: Caller, request_id: str) -> IssuedKey:
        """A second administrator approves a key request and receives the key text once. The
        approver must be a second person: not the requester, and not acting with a key the
        requester issued (nor the requester with one the approver issued)."""
        with self.database.read() as connection:
            request = store.load_key_request(connection, request_id)
        if request is None:
            self.require_instance(caller, Action.APPROVE_KEY, second_person=True)
            raise NotFound(f"no key request {request_id}", hint="GET /api/v1/key-requests lists them")
        second = distinct_hands(request.requested_by, request.requested_with, caller.principal, caller.issued_by)
        message = hint = None  # say why only to one who could approve if they were a second person
        if not second and self.permits(caller, Action.APPROVE_KEY, second_person=True):
            message = (
                "a key request is approved by a second administrator, not its requester "
                "and not with a key its requester issued"
            )
            hint = "ask another administrator, acting with a key of their own, to approve it"
        self.require_instance(caller, Action.APPROVE_KEY, message=message, hint=hint, second_person=second)
        if request.status is not KeyRequestStatus.PENDING:
            raise Conflict(f"the key request is {request.status.value}, not pending", hint="request a new key")
        issued_by = issuers_of((request.requested_by, request.requested_with), (caller.principal, caller.issued_by))
        return self._new_key(
            caller,
            request.name,
            request.principal,
            request.roles,
            request.expires_at,
            request.scopes,
            issued_by,
            {"request_id": request.id},
        )

    def own_keys(self, caller: Caller) -> list[ApiKey]:
        """The caller's own keys (never their secrets)."""
        self.require_instance(caller, Action.VIEW)
        with self.database.read() as connection:
            return [key for key in store.list_keys(connection) if key.principal == caller.principal]

    def key_requests(self, caller: Caller) -> list[KeyRequest]:
        self.require_instance(caller, Action.MANAGE_KEYS)
        with self.database.read() as connection:
            return store.list_key_requests(connection)

    def _check_key(
        self,
        connection: Connection,
        name: str,
        principal: str,
        roles: tuple[Role, ...],
        expires_at: datetime | None,
        now: datetime,
    ) -> None:
        if not name.strip():
            raise InvalidInput("a key needs a name", hint="say what the key is for (--name)")
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("the expiry is in the past", hint="give a future time, or none")
        registered = store.load_principal(connection, principal)
        if registered is not None:
            extra = sorted(role.value for role in roles if role not in registered.roles)
            if extra:
                raise InvalidInput(
                    f"{principal} does not hold the role(s) {', '.join(extra)}",
                    hint=f"give the key only roles {principal} holds, or add the roles to {principal} first",
                )

    def _new_key(
        self,
        caller: Caller,
        name: str,
        principal: str,
        roles: tuple[Role, ...],
        expires_at: datetime | None,
        scopes: Sequence[str] | None,
        issued_by: tuple[str, ...],
        extra: dict[str, Any],
    ) -> IssuedKey:
        now = self.clock.now()
        key_scopes = None if scopes is None else check_scopes(scopes)
        with self.database.transaction() as connection:
            self._check_key(connection, name, principal, roles, expires_at, now)
            request_id = extra.get("request_id")
            while True:
                key_id = secrets.token_hex(4)
                if store.load_key(connection, key_id) is None:
                    break
            if request_id is not None and not store.approve_key_request(
                connection, request_id, caller.principal, now, key_id
            ):
                raise Conflict("the key request was approved meanwhile", hint="reload the requests")
            text = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(key_id, name.strip(), principal, roles, now, expires_at, None, key_scopes, issued_by)
            store.insert_key(connection, key, hash_secret(text))
            self.audit.append(
                connection,
                actor=caller.actor,
                action="access.key.issued",
                resource=f"api-key:{key_id}",
                details={
                    **_key_details(key.name, principal, roles, key_scopes, expires_at),
                    "issued_by": list(issued_by),
                    **extra,
                },
            )
        return IssuedKey(key, text)

    def authenticate(self, key_text: str, *, origin: str | None = None) -> Caller:
        """The caller behind an API key. Every refused key is audited (which key id, why, from
        where; never the secret), so guessing and the use of revoked keys leave a trace."""
        key_id = parse_key(key_text)
        if key_id is None:
            self._key_refused("?", "malformed", origin)
            raise Unauthenticated("the API key is malformed", hint="send `Authorization: Bearer apk_...`")
        with self.database.read() as connection:
            found = store.load_key(connection, key_id)
            registered = None if found is None else store.load_principal(connection, found[0].principal)
        if found is None or not key_matches(key_text, found[1]):
            self._key_refused(key_id, "unknown key" if found is None else "wrong secret", origin)
            raise Unauthenticated(
                "the API key is not known",
                hint="send `Authorization: Bearer apk_...` with a key issued by this instance, or ask for a new one",
            )
        key = found[0]
        if not key_usable(key, self.clock.now()):
            self._key_refused(key_id, "revoked" if key.revoked_at is not None else "expired", origin)
            raise Unauthenticated("the API key is revoked or expired", hint="ask an administrator for a new key")
        if key.principal in RESERVED_PRINCIPALS:  # issued before such keys were refused: never the operator
            self._key_refused(key_id, "reserved principal", origin)
            raise Unauthenticated("the API key is revoked or expired", hint="ask an administrator for a new key")
        roles = key.roles
        if registered is not None:
            if registered.disabled:
                self._key_refused(key_id, "principal disabled", origin)
                raise Unauthenticated(f"{registered.name} is disabled", hint="ask an administrator")
            roles = tuple(role for role in key.roles if role in registered.roles)
        return Caller(
            principal=key.principal,
            roles=roles,
            key_id=key.key_id,
            scopes=key.scopes,
            origin=origin,
            issued_by=key.issued_by,
        )

    def _key_refused(self, key_id: str, why: str, origin: str | None) -> None:
        # Counted per window, not logged one by one: anyone can send wrong keys (docs/audit.md,
        # "Refusals"). Only a key of ours is named, never an id the sender made up.
        known = why not in ("malformed", "unknown key")
        self.audit.count_refusal("access.key.refused", why, origin, subject=f"api-key:{key_id}" if known else "")

    def revoke_key(self, caller: Caller, key_id: str) -> ApiKey:
        self.require_instance(caller, Action.MANAGE_KEYS)
        with self.database.transaction() as connection:
            found = store.load_key(connection, key_id)
            if found is None:
                raise NotFound(f"no API key {key_id}", hint="`aperture keys list` shows the keys")
            store.mark_revoked(connection, key_id, self.clock.now())
            self.audit.append(connection, actor=caller.actor, action="access.key.revoked", resource=f"api-key:{key_id}")
            loaded = store.load_key(connection, key_id)
            assert loaded is not None
            return loaded[0]

    def list_keys(self, caller: Caller) -> list[ApiKey]:
        self.require_instance(caller, Action.MANAGE_KEYS)
        with self.database.read() as connection:
            return store.list_keys(connection)

    def has_any_key(self) -> bool:
        with self.database.read() as connection:
            return store.count_keys(connection) > 0

    # --- states, organisations, programmes, principals ------------------------------------

    def _require_manager(self, caller: Caller) -> None:
        self.require_instance(caller, Action.MANAGE_PRINCIPALS)

    def _changed(
        self, connection: Connection, caller: Caller, action: str, resource: str, details: dict[str, Any]
    ) -> None:
        store.bump_generation(connection)
        self.audit.append(connection, actor=caller.actor, action=action, resource=resource, details=details)
        self._generation = -1  # this process rebuilds at once

    def save_state(self, caller: Caller, state: State) -> State:
        self._require_manager(caller)
        check_state(state)
        with self.database.transaction() as connection:
            store.upsert_state(connection, state)
            self._changed(
                connection,
                caller,
                "access.state.saved",
                f"state:{state.code}",
                {
                    "name": state.name,
                    "kind": state.kind.value,
                    "eu": state.eu,
                    "cyber_assurance": str(state.cyber_assurance),
                    "rule_of_law": state.rule_of_law.value,
                },
            )
        return state

    def save_organisation(self, caller: Caller, organisation: Organisation) -> Organisation:
        self._require_manager(caller)
        check_name(organisation.name, "organisation")
        if not organisation.title.strip():
            raise InvalidInput("an organisation needs a title", hint="pass --title")
        with self.database.transaction() as connection:
            if store.load_state(connection, organisation.state) is None:
                raise NotFound(
                    f"no state {organisation.state}",
                    hint="`aperture access add-state` records a member or partner state",
                )
            store.upsert_organisation(connection, organisation)
            self._changed(
                connection,
                caller,
                "access.organisation.saved",
                f"organisation:{organisation.name}",
                {
                    "kind": organisation.kind.value,
                    "state": organisation.state,
                    "parent": organisation.parent,
                    "foreign_control": organisation.foreign_control,
                },
            )
        return organisation

    def add_programme(self, caller: Caller, name: str, title: str) -> Programme:
        self._require_manager(caller)
        programme = Programme(check_name(name, "programme"), title.strip() or name)
        with self.database.transaction() as connection:
            if store.load_programme(connection, name) is not None:
                raise Conflict(f"the programme {name} exists", hint="choose another name")
            store.insert_programme(connection, programme)
            self._changed(connection, caller, "access.programme.added", f"programme:{name}", {"title": programme.title})
        return programme

    def add_principal(
        self,
        caller: Caller,
        name: str,
        *,
        kind: PrincipalKind = PrincipalKind.PERSON,
        display_name: str = "",
        organisation: str | None = None,
        clearance: SecurityLevel = SecurityLevel.SL1,
        vetting: Vetting = Vetting.NONE,
        roles: Sequence[Role] = (),
        programmes: Sequence[str] = (),
    ) -> Principal:
        self._require_manager(caller)
        check_name(name, "principal")
        if name in (OPERATOR, UNREGISTERED):
            raise InvalidInput(f"{name!r} is reserved", hint="choose another name")
        check_clearance(clearance, vetting)
        principal = Principal(
            name=name,
            kind=kind,
            display_name=display_name.strip() or name,
            organisation=organisation,
            clearance=clearance,
            vetting=vetting,
            roles=tuple(dict.fromkeys(roles)),
            programmes=tuple(dict.fromkeys(programmes)),
            created_at=self.clock.now(),
        )
        with self.database.transaction() as connection:
            if store.load_principal(connection, name) is not None:
                raise Conflict(f"the principal {name} exists", hint="`aperture access update` changes it")
            self._check_references(connection, principal)
            store.insert_principal(connection, principal)
            self._changed(
                connection, caller, "access.principal.added", f"principal:{name}", _principal_details(principal)
            )
        return principal

    def update_principal(
        self,
        caller: Caller,
        name: str,
        *,
        organisation: str | None = None,
        clearance: SecurityLevel | None = None,
        vetting: Vetting | None = None,
        roles: Sequence[Role] | None = None,
        programmes: Sequence[str] | None = None,
        disabled: bool | None = None,
    ) -> Principal:
        self._require_manager(caller)
        with self.database.transaction() as connection:
            current = store.load_principal(connection, name)
            if current is None:
                raise NotFound(f"no principal {name}", hint="`aperture access list` shows the principals")
            changed = replace(
                current,
                organisation=current.organisation if organisation is None else organisation,
                clearance=current.clearance if clearance is None else clearance,
                vetting=current.vetting if vetting is None else vetting,
                roles=current.roles if roles is None else tuple(dict.fromkeys(roles)),
                programmes=current.programmes if programmes is None else tuple(dict.fromkeys(programmes)),
                disabled=current.disabled if disabled is None else disabled,
            )
            check_clearance(changed.clearance, changed.vetting)
            if changed.disabled != current.disabled or changed.roles != current.roles:
                changed = replace(changed, session_epoch=current.session_epoch + 1)
                store.end_sessions_of(connection, name, self.clock.now())
            self._check_references(connection, changed)
            store.update_principal(connection, changed)
            self._changed(
                connection, caller, "access.principal.updated", f"principal:{name}", _principal_details(changed)
            )
        return changed

    def _check_references(self, connection: Connection, principal: Principal) -> None:
        if principal.organisation is not None and not principal.organisation.strip():
            raise InvalidInput(
                "the organisation is empty",
                hint="name a recorded organisation (`aperture access add-organisation` records one), "
                "or leave the field out",
            )
        if principal.organisation and store.load_organisation(connection, principal.organisation) is None:
            raise NotFound(
                f"no organisation {principal.organisation}",
                hint="`aperture access add-organisation` records it first",
            )
        for programme in principal.programmes:
            if store.load_programme(connection, programme) is None:
                raise NotFound(f"no programme {programme}", hint="`aperture access add-programme` creates it first")

    # The use cases of the directory (what adapters call): each takes the caller.

    def principals(self, caller: Caller) -> list[Principal]:
        """Everyone registered, for the security desk (administrators and security officers)."""
        self.require_instance(caller, Action.VIEW_PRINCIPALS)
        return self.list_principals()

    def states(self, caller: Caller) -> list[State]:
        self.require_instance(caller, Action.VIEW)
        return self.list_states()

    def organisations(self, caller: Caller) -> list[Organisation]:
        self.require_instance(caller, Action.VIEW)
        return self.list_organisations()

    def programmes(self, caller: Caller) -> list[Programme]:
        self.require_instance(caller, Action.VIEW)
        return self.list_programmes()

    # Lookups for other use cases, which decide about their own caller first. Not for adapters.

    def get_principal(self, name: str) -> Principal:
        with self.database.read() as connection:
            found = store.load_principal(connection, name)
        if found is None:
            raise NotFound(f"no principal {name}", hint="`aperture access list` shows the principals")
        return found

    def list_principals(self) -> list[Principal]:
        with self.database.read() as connection:
            return store.list_principals(connection)

    def list_states(self) -> list[State]:
        with self.database.read() as connection:
            return store.list_states(connection)

    def list_organisations(self) -> list[Organisation]:
        with self.database.read() as connection:
            return store.list_organisations(connection)

    def list_programmes(self) -> list[Programme]:
        with self.database.read() as connection:
            return store.list_programmes(connection)

    # --- classification -------------------------------------------------------------------

    def classify_in(
        self,
        connection: Connection,
        caller: Caller,
        asset: AssetRef,
        *,
        label: str,
        level: SecurityLevel,
        programme: str | None = None,
        canary: bool = False,
    ) -> Classification:
        """Classify inside the caller's transaction (a registration classifies its new version)."""
        check_classification(level, programme)
        if programme is not None and store.load_programme(connection, programme) is None:
            raise NotFound(f"no programme {programme}", hint="`aperture access add-programme` creates it first")
        classification = Classification(asset, label, level, programme, canary, self.clock.now(), caller.actor)
        store.upsert_classification(connection, classification)
        details: dict[str, Any] = {"level": str(level), "programme": programme}
        if not level.upper_tier and not canary:
            details["label"] = label
        # A canary's classification event looks like any other: nothing in the log gives it away.
        self._changed(connection, caller, "access.asset.classified", asset.audit_resource, details)
        return classification

    def classify(
        self,
        caller: Caller,
        asset: AssetRef,
        *,
        label: str,
        level: SecurityLevel,
        programme: str | None = None,
        canary: bool = False,
    ) -> Classification:
        """Re-classify an existing asset. Needs the classify role and, for an upper-tier asset,
        to be cleared for it both before and after (nobody classifies what they may not see)."""
        self.require_instance(caller, Action.CLASSIFY)
        if self.lookup(asset) is None:
            raise NotFound(f"no classified asset {asset.uid}", hint="`aperture access assets` lists them")
        self.require(caller, Action.VIEW, asset)
        if caller.principal != OPERATOR:
            holder = self.get_principal(caller.principal)
            if not cleared_for(holder, level, programme):
                raise Forbidden(
                    f"you would not be cleared for the asset at {level}",
                    hint="a person cleared for the level and programme must classify it",
                )
        with self.database.transaction() as connection:
            return self.classify_in(
                connection, caller, asset, label=label, level=level, programme=programme, canary=canary
            )

    def classification(self, asset: AssetRef) -> Classification | None:
        with self.database.read() as connection:
            return store.load_classification(connection, asset)

    def classifications(self, caller: Caller, *, canaries_only: bool = False) -> list[Classification]:
        """The classified assets the caller may see, for those who classify (the operator sees all)."""
        self.require_instance(caller, Action.CLASSIFY)
        with self.database.read() as connection:
            found = store.list_classifications(connection, canaries_only=canaries_only)
        return [c for c in found if self.authorize(caller, Action.VIEW, c.asset, purpose="list").allowed]

    # --- authorization --------------------------------------------------------------------

    def observe(self, observer: DecisionObserver) -> None:
        """Be told of every decision (the canary and anomaly watch registers here)."""
        self._observers.append(observer)

    def _entity_store(
        self, *, force: bool = False
    ) -> tuple[cedarpy.Entities, frozenset[str], dict[str, Classification]]:
        """The Cedar entities, rebuilt when the records changed: checked at most every refresh_s
        (at once after a change made by this process, or when `force`d)."""
        now = time.monotonic()
        entities = self._entities
        fresh = self._generation >= 0 and now - self._checked_at < self.config.refresh_s
        if entities is not None and fresh and not force:
            return entities, self._known, self._assets
        with self._lock:
            with self.database.read() as connection:
                current = store.generation(connection)
                if self._entities is None or current != self._generation:
                    principals = store.list_principals(connection)
                    classifications = store.list_classifications(connection)
                    records = cedar_entities(
                        store.list_states(connection),
                        store.list_organisations(connection),
                        store.list_programmes(connection),
                        principals,
                        classifications,
                    )
                    self._entities = PolicyEngine.entities(records)
                    self._known = frozenset(p.name for p in principals) | {OPERATOR}
                    self._assets = {c.asset.uid: c for c in classifications}
                    self._generation = current
            self._checked_at = time.monotonic()
            assert self._entities is not None
            return self._entities, self._known, self._assets

    def lookup(self, asset: AssetRef) -> Classification | None:
        """The asset's classification as the entity store holds it (refreshed once if missing)."""
        _, _, assets = self._entity_store()
        found = assets.get(asset.uid)
        if found is None:
            _, _, assets = self._entity_store(force=True)
            found = assets.get(asset.uid)
        return found

    def decide(
        self,
        caller: Caller,
        action: Action,
        asset: AssetRef | None = None,
        **facts: Any,
    ) -> Decision:
        """The decision alone: Cedar over the entity store, the key's scopes; no audit, no observers.
        `authorize` is what use cases call; this is its core (and what the benchmark measures).
        `facts` are the record's facts the policies look at (see `decision_context`)."""
        entities, known, assets = self._entity_store()
        principal = caller.principal if caller.principal in known else UNREGISTERED
        context = decision_context(caller, **facts)
        if asset is None:
            resource_type, resource, level = "Instance", INSTANCE_UID, None
        else:
            classification = assets.get(asset.uid) or self.lookup(asset)
            if classification is None:
                return Decision(False, caller.principal, action, asset.uid, None, ("unclassified",))
            if classification is not assets.get(asset.uid):
                entities = self._entities or entities
            resource_type, resource, level = "Asset", asset.uid, classification.level
        request = self.engine.request(principal, action, resource_type, resource, context)
        verdict = self.engine.decide(request, entities)
        allowed, reasons = verdict.allowed, verdict.reasons
        if allowed and not scope_allows(caller, action):
            allowed, reasons = False, ("key-scope",)
        return Decision(
            allowed=allowed,
            principal=caller.principal,
            action=action,
            resource=resource,
            level=level,
            reasons=reasons,
            errors=verdict.errors,
            policy_version=self.engine.version,
        )

    def authorize(
        self,
        caller: Caller,
        action: Action,
        asset: AssetRef | None = None,
        *,
        purpose: str = "read",
        **facts: Any,
    ) -> Decision:
        """The one authorization function. Deny by default; a result, never an exception.

        An asset with no classification is denied (nothing is open by omission). Decisions on an
        upper-tier asset, allow and deny, are appended to the audit log under the asset's opaque
        id, except a listing that left the asset out and the instance's own lookups (`_logged`);
        an anonymous caller's denials are counted per window instead (`audit.refusals`).
        Observers (canaries, anomalies) hear of every decision on an asset."""
        decision = self.decide(caller, action, asset, **facts)
        classification = None if asset is None else self.lookup(asset)
        logged = decision.upper_tier and classification is not None and _logged(caller, decision, purpose)
        if logged and _anonymous(caller) and not decision.allowed:
            # Anyone can ask: counted per window, not logged one by one (docs/audit.md, "Refusals").
            self.audit.count_refusal("access.decision", f"{action.value} denied", caller.origin)
        elif logged and classification is not None:
            self._record_decision(caller, decision, classification)
        if classification is not None:
            for observer in self._observers:
                observer(caller, decision, classification, purpose)
        return decision

    def _record_decision(self, caller: Caller, decision: Decision, classification: Classification) -> None:
        self.audit.record(
            actor=caller.actor,
            action="access.decision",
            resource=classification.asset.audit_resource,
            details={
                "action": decision.action.value,
                "allowed": decision.allowed,
                "level": str(classification.level),
                "reasons": list(decision.reasons),
                "policy_version": decision.policy_version,
                "origin": caller.origin,
            },
            upper_tier=classification.level.upper_tier,
        )

    def can_view(self, caller: Caller, asset: AssetRef) -> bool:
        return self.authorize(caller, Action.VIEW, asset).allowed

    def permits(self, caller: Caller, action: Action, asset: AssetRef | None = None, **facts: Any) -> bool:
        """The decision only (no audit, no observers): for a page that shows or hides a control.
        The use case behind the control decides again, through `require` or `require_instance`."""
        return self.decide(caller, action, asset, **facts).allowed

    def require(self, caller: Caller, action: Action, asset: AssetRef, *, what: str = "", **facts: Any) -> Decision:
        """Raise unless allowed. Someone not cleared to see the asset gets the same 404 as for an
        asset that does not exist; someone who may see it but not do this gets a 403 (a 401 when
        they have not signed in), and the refusal is audited."""
        decision = self.authorize(caller, action, asset, **facts)
        if decision.allowed:
            return decision
        if action is Action.VIEW or not self.authorize(caller, Action.VIEW, asset).allowed:
            raise NotFound(f"no {what or 'such asset'}", hint="check the name; ask for clearance if you need it")
        # The caller sees the asset, so recording the refusal tells them nothing new; upper-tier
        # decisions are recorded by `authorize` already, lower-tier refusals here, the same way.
        classification = self.lookup(asset)
        if classification is not None and not decision.upper_tier:
            self._record_decision(caller, decision, classification)
        if not caller.signed_in:
            raise Unauthenticated(
                f"{action.value.replace('_', ' ')} needs you to sign in",
                hint="send `Authorization: Bearer apk_...` with your API key, or sign in on the pages",
            )
        why = ", ".join(decision.reasons) or "no policy permits it"
        raise Forbidden(
            f"you may not {action.value.replace('_', ' ')} this asset ({why})",
            hint=_forbidden_hint(action, decision),
        )

    def require_instance(
        self, caller: Caller, action: Action, *, message: str | None = None, hint: str | None = None, **facts: Any
    ) -> Decision:
        """Raise unless the caller may do an instance-wide action; a refusal is audited. An
        anonymous caller is told to sign in (401); anyone else that they may not (403)."""
        decision = self.decide(caller, action, **facts)
        if not decision.allowed:
            if _anonymous(caller):  # anyone can ask: counted per window, not logged one by one
                self.audit.count_refusal("access.instance.denied", action.value, caller.origin)
            else:
                self.audit.record(
                    actor=caller.actor,
                    action="access.instance.denied",
                    resource="instance",
                    details={"action": action.value, "reasons": list(decision.reasons), "origin": caller.origin},
                )
            if not caller.signed_in:
                raise Unauthenticated(
                    f"{action.value.replace('_', ' ')} needs you to sign in",
                    hint="send `Authorization: Bearer apk_...` with your API key, or sign in on the pages",
                )
            raise Forbidden(
                message or f"you may not {action.value.replace('_', ' ')}",
                hint=hint or "ask an administrator for a key or role that allows it (see `aperture access explain`)",
            )
        return decision

    def explain(self, caller: Caller, principal: str, action: Action, asset: AssetRef | None) -> Decision:
        """Why a principal may or may not do an action on an asset: the deciding policies, and the
        facts they looked at. Uses the principal's recorded roles (what a full key would carry).

        One's own decisions, or anyone's for the security desk. Naming an asset resolves its id to
        its name, level and programme, so the caller must be cleared to see it: for anyone else an
        asset they may not see reads exactly like one that does not exist, and resolving a
        canary's id is a touch of the canary (the view is decided, audited and observed)."""
        self.require_instance(caller, Action.EXPLAIN, own=principal == caller.principal)
        classification = None
        if asset is not None:
            classification = self.lookup(asset)
            if classification is None or not self.authorize(caller, Action.VIEW, asset).allowed:
                raise NotFound(
                    "no classified asset with that id you may see",
                    hint="check the id (KIND:ID, e.g. model_version:...); ask for clearance if you need it",
                )
        with self.database.read() as connection:
            found = store.load_principal(connection, principal)
        roles = found.roles if found else (Role.ADMINISTRATOR,) if principal == OPERATOR else (Role.PUBLIC,)
        subject = Caller(principal=principal, roles=roles, session=True)  # as if signed in
        decision = self.decide(subject, action, asset)
        lines: list[str] = []
        if found is None and principal != OPERATOR:
            lines.append(f"{principal} is not a registered principal: decided as the anonymous public (SL1 only)")
        elif found is not None:
            lines.append(
                f"{principal}: clearance {found.clearance}, vetting {found.vetting.value}, organisation "
                f"{found.organisation or 'none'}, programmes {', '.join(found.programmes) or 'none'}, "
                f"roles {', '.join(r.value for r in found.roles) or 'none'}" + (" (disabled)" if found.disabled else "")
            )
        if classification is not None:
            lines.append(
                f"asset {classification.asset.uid} ({classification.label}): {classification.level}, programme "
                f"{classification.programme or 'none'}"
            )
        if decision.allowed:
            lines.append("allowed by: " + ", ".join(decision.reasons))
        elif decision.reasons:
            lines.append("denied by: " + ", ".join(decision.reasons))
        else:
            lines.append("denied: no policy permits it (deny by default)")
        if (
            action in (Action.DOWNLOAD, Action.EXPORT, Action.COPY_TO_HUB)
            and classification
            and classification.level.upper_tier
        ):
            lines.append("upper-tier weights also need an approved grant (two people); this explanation assumes none")
        lines.extend(f"error: {error}" for error in decision.errors)
        return replace(decision, explanation=tuple(lines))

    # --- passwords, sessions, lock-out ----------------------------------------------------

    def set_password(self, caller: Caller, name: str, password: str) -> None:
        """An administrator sets a password, or a signed-in person changes their own. Every
        session of the person ends (on every copy of its cookie)."""
        if caller.principal == name:
            self.require_instance(caller, Action.CHANGE_PASSWORD, own=True)
        else:
            self._require_manager(caller)
        check_password_strength(password)
        hashed = self.passwords.hash(password)
        with self.database.transaction() as connection:
            if store.load_principal(connection, name) is None:
                raise NotFound(f"no principal {name}", hint="`aperture access list` shows the principals")
            store.set_password_hash(connection, name, hashed)
            store.end_sessions_of(connection, name, self.clock.now())
            self._changed(connection, caller, "access.password.set", f"principal:{name}", {})

    def login(self, name: str, password: str, *, origin: str | None = None) -> tuple[Caller, str]:
        """Check a password and start a session; after too many failures the account locks for a
        while. Every failure reads the same and takes the same time (the password hash is checked
        in every branch: an unknown name, a locked or disabled account, a wrong password), so
        neither the answer nor its timing tells which names exist. Returns the caller and the
        session id to put in the (signed) cookie; only its hash is stored."""
        dummy = self._dummy_hash()
        now = self.clock.now()
        with self.database.transaction() as connection:
            # A failure is counted and audited in this transaction, which must commit: the refusal
            # is raised only after it (raising inside would roll the count and the event back).
            principal = self._check_login(connection, name, password, origin, now, dummy)
            session_id = None
            if principal is not None:
                session_id = secrets.token_urlsafe(32)
                ui_session = UiSession(name, principal.session_epoch, now, now + self.config.session_ttl)
                store.insert_session(connection, hash_secret(session_id), ui_session)
        if principal is None or session_id is None:
            raise Unauthenticated("the name or password is wrong, or the account is locked", hint="try again later")
        return Caller(principal=name, roles=principal.roles, session=True, origin=origin), session_id

    def _dummy_hash(self) -> str:
        """A hash of a random password with the same parameters, checked when there is no real one."""
        if self._dummy is None:
            self._dummy = self.passwords.hash(secrets.token_urlsafe(24))
        return self._dummy

    def _password_matches(self, password_hash: str | None, password: str, dummy: str) -> bool:
        """Runs the argon2 check whether or not there is a hash to check against."""
        usable = password_hash is not None and password_hash.startswith("$argon2")
        matched: bool
        try:
            matched = self.passwords.verify(password_hash if usable and password_hash else dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            matched = False
        return matched and usable

    def _check_login(
        self, connection: Connection, name: str, password: str, origin: str | None, now: datetime, dummy: str
    ) -> Principal | None:
        found = store.load_login(connection, name)
        matched = self._password_matches(None if found is None else found[1], password, dummy)
        if found is None:
            self._login_event(connection, name, origin, "unknown principal")
            return None
        principal, _, state = found
        if is_locked(state, now):
            self._login_event(connection, name, origin, "locked")
            return None
        if not matched or principal.disabled:
            after = after_failed_login(state, now, self.config.login_max_failures, self.config.login_lockout)
            store.save_login_state(connection, name, after)
            why = "locked out" if after.locked_until != state.locked_until else "wrong password"
            self._login_event(connection, name, origin, why)
            return None
        store.save_login_state(connection, name, type(state)(0, None))
        self.audit.append(
            connection,
            actor=name,
            action="access.login.succeeded",
            resource=f"principal:{name}",
            details={"origin": origin},
        )
        return principal

    def _login_event(self, connection: Connection, name: str, origin: str | None, why: str) -> None:
        if why == "locked out":  # a real account just locked: a change of state, logged on its own
            self.audit.append(
                connection,
                actor=name[:200],
                action="access.login.locked_out",
                resource=f"principal:{name[:180]}",
                details={"origin": origin},
            )
            return
        # Counted per window, not logged one by one: anyone can try names, and the name typed is
        # not kept (docs/audit.md, "Refusals").
        self.audit.count_refusal("access.login.failed", why, origin, connection=connection)

    def session_caller(self, session_id: str, *, origin: str | None = None) -> Caller | None:
        """The caller behind a session id from a signed cookie, or None when the session ended:
        signed out, expired, the password changed, the account was disabled or its roles changed."""
        with self.database.read() as connection:
            found = store.load_session(connection, hash_secret(session_id))
            principal = None if found is None else store.load_principal(connection, found.principal)
        if found is None or principal is None or principal.disabled:
            return None
        if not found.live(self.clock.now(), principal.session_epoch):
            return None
        return Caller(principal=principal.name, roles=principal.roles, session=True, origin=origin)

    def logout(self, session_id: str, *, origin: str | None = None) -> None:
        """End a session on the server: every copy of its cookie stops working at once."""
        now = self.clock.now()
        with self.database.transaction() as connection:
            found = store.load_session(connection, hash_secret(session_id))
            if found is None or not store.end_session(connection, hash_secret(session_id), now):
                return
            self.audit.append(
                connection,
                actor=f"{found.principal} (session)",
                action="access.session.ended",
                resource=f"principal:{found.principal}",
                details={"origin": origin, "why": "signed out"},
            )


def _anonymous(caller: Caller) -> bool:
    """A caller with neither key nor session: anyone on the network."""
    return caller.key_id is None and not caller.session and caller.principal == UNREGISTERED


def _logged(caller: Caller, decision: Decision, purpose: str) -> bool:
    """Which decisions on an upper-tier asset the log records: not a listing that left the asset
    out (nothing was shown), and not the instance's own lookups (a page building the public
    registry looks every version up as the operator; logging them logged every page view)."""
    if purpose == "list" and not decision.allowed:
        return False
    internal = caller.principal == OPERATOR and caller.key_id is None and not caller.session
    return not (internal and decision.allowed and decision.action is Action.VIEW)


def _principal_details(principal: Principal) -> dict[str, Any]:
    return {
        "kind": principal.kind.value,
        "organisation": principal.organisation,
        "clearance": str(principal.clearance),
        "vetting": principal.vetting.value,
        "roles": [role.value for role in principal.roles],
        "programmes": list(principal.programmes),
        "disabled": principal.disabled,
    }


def _forbidden_hint(action: Action, decision: Decision) -> str:
    if action in (Action.DOWNLOAD, Action.EXPORT, Action.COPY_TO_HUB) and decision.upper_tier:
        return "upper-tier weights need a grant: request one (POST /api/v1/grants) and have a second person approve it"
    return "see `aperture access explain` for the policies that decided"


def _key_details(
    name: str, principal: str, roles: Sequence[Role], scopes: Sequence[str] | None, expires_at: datetime | None
) -> dict[str, Any]:
    return {
        "name": name,
        "principal": principal,
        "roles": [role.value for role in roles],
        "scopes": None if scopes is None else list(scopes),
        "expires_at": None if expires_at is None else expires_at.isoformat(),
    }
