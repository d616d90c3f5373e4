"""Principals, roles, clearance, classification, API keys and passwords. Pure rules: no I/O, no clock
of its own.

The words are the institution's: member and partner **states**, **organisations**, **people** and
**service accounts** (principals) with a **clearance** (SL1-SL5) and **programmes** (need-to-know);
every **asset** carries a **classification** (a security level and, in the upper tier, a programme).
The Cedar entity store the policies decide on is built here from those records (`cedar_entities`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

from aperture.core.errors import InvalidInput

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
    LICENSING_OFFICER = "licensing_officer"
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
    scopes: tuple[str, ...] | None = None  # None: every action


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is acting: the principal behind an authenticated key or session (or `anonymous`).

    `scopes` limits what a scoped API key may do (None: every action its roles allow); `origin`
    is where the request came from (the client address), kept for alerts and the audit log.
    """

    principal: str
    roles: tuple[Role, ...]
    key_id: str | None = None
    scopes: tuple[str, ...] | None = None
    origin: str | None = None
    session: bool = False

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def actor(self) -> str:
        """How the caller appears in audit events."""
        if self.key_id:
            return f"{self.principal} (key {self.key_id})"
        return f"{self.principal} (session)" if self.session else self.principal


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


# --- security levels and clearance ----------------------------------------------------------


class SecurityLevel(IntEnum):
    """RAND's security levels (SL *n* can likely thwart attackers of operational capacity OC *n*).

    SL1-SL2 are the lower tier (open, shareable research); SL3-SL5 the upper tier.
    """

    SL1 = 1
    SL2 = 2
    SL3 = 3
    SL4 = 4
    SL5 = 5

    @property
    def upper_tier(self) -> bool:
        return self >= UPPER_TIER

    def __str__(self) -> str:
        return self.name


UPPER_TIER = 3


def parse_level(text: str | int) -> SecurityLevel:
    """`SL3`, `sl3` or `3` -> SecurityLevel.SL3."""
    raw = str(text).strip().upper().removeprefix("SL")
    try:
        return SecurityLevel(int(raw))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a security level", hint="give SL1, SL2, SL3, SL4 or SL5 (or 1 to 5)"
        ) from None


class Vetting(StrEnum):
    """How deeply a person was vetted; it caps the clearance they may hold."""

    NONE = "none"
    BASELINE = "baseline"
    SECURITY_CHECK = "security_check"
    ENHANCED = "enhanced"
    STRATEGIC = "strategic"


VETTING_CAP = {
    Vetting.NONE: SecurityLevel.SL1,
    Vetting.BASELINE: SecurityLevel.SL2,
    Vetting.SECURITY_CHECK: SecurityLevel.SL3,
    Vetting.ENHANCED: SecurityLevel.SL4,
    Vetting.STRATEGIC: SecurityLevel.SL5,
}


def check_clearance(clearance: SecurityLevel, vetting: Vetting) -> None:
    cap = VETTING_CAP[vetting]
    if clearance > cap:
        raise InvalidInput(
            f"vetting {vetting.value} supports clearance up to {cap}, not {clearance}",
            hint="record a deeper vetting first, or give a lower clearance",
        )


# --- principals -----------------------------------------------------------------------------

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
STATE_PATTERN = re.compile(r"^[A-Z]{2}$")


def check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{value!r} is not a valid {what} name",
            hint="use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


class StateKind(StrEnum):
    MEMBER = "member"
    PARTNER = "partner"


class RuleOfLaw(StrEnum):
    ADEQUATE = "adequate"
    CONDITIONAL = "conditional"
    INADEQUATE = "inadequate"


@dataclass(frozen=True, slots=True)
class State:
    """A member or partner state. Partner-state organisations reach the upper tier only when the
    state's rule of law is assessed adequate and its cybersecurity assurance covers the level."""

    code: str  # ISO 3166-1 alpha-2
    name: str
    kind: StateKind
    eu: bool
    cyber_assurance: SecurityLevel  # the highest SL its national infrastructure is assessed to protect
    rule_of_law: RuleOfLaw


def check_state(state: State) -> State:
    if not STATE_PATTERN.fullmatch(state.code):
        raise InvalidInput(f"{state.code!r} is not a state code", hint="use the ISO 3166-1 alpha-2 code, e.g. FR")
    if not state.name.strip():
        raise InvalidInput("a state needs a name", hint="pass --name")
    return state


class OrganisationKind(StrEnum):
    ACADEMIC = "academic"
    COMPANY = "company"
    PUBLIC_BODY = "public_body"
    SPIN_OFF = "spin_off"


@dataclass(frozen=True, slots=True)
class Organisation:
    name: str
    title: str
    kind: OrganisationKind
    state: str  # state code
    parent: str | None = None  # parent company or body (for screening)
    foreign_control: str | None = None  # state code of a controlling party outside the members, if any


class PrincipalKind(StrEnum):
    PERSON = "person"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """A person or a service account."""

    name: str
    kind: PrincipalKind
    display_name: str
    organisation: str | None
    clearance: SecurityLevel
    vetting: Vetting
    roles: tuple[Role, ...]
    programmes: tuple[str, ...]
    created_at: datetime
    disabled: bool = False
    session_epoch: int = 0  # bumped on password change, lock-out or disabling: old sessions end


@dataclass(frozen=True, slots=True)
class Programme:
    name: str
    title: str


# --- classification -------------------------------------------------------------------------


class AssetKind(StrEnum):
    MODEL_VERSION = "model_version"
    ARTIFACT = "artifact"
    DATASET = "dataset"
    EVALUATION = "evaluation"
    INCIDENT = "incident"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class AssetRef:
    kind: AssetKind
    id: str

    @property
    def uid(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @property
    def audit_resource(self) -> str:
        """How the asset is named in the public log: its opaque id, never its name."""
        return f"asset:{self.uid}"


@dataclass(frozen=True, slots=True)
class Classification:
    asset: AssetRef
    label: str  # how people call it (a model version's NAME:VERSION); never put in the public log
    level: SecurityLevel
    programme: str | None
    canary: bool
    classified_at: datetime
    classified_by: str


def check_classification(level: SecurityLevel, programme: str | None) -> None:
    """Upper-tier assets need to know who needs to know: they must name their programme."""
    if level.upper_tier and not programme:
        raise InvalidInput(
            f"an {level} asset must name its programme (need-to-know)",
            hint="pass --programme NAME (`aperture access add-programme` creates one)",
        )


# --- authorization --------------------------------------------------------------------------


class Action(StrEnum):
    VIEW = "view"
    DOWNLOAD = "download"
    EXPORT = "export"  # bulk export of a whole model
    COPY_TO_HUB = "copy_to_hub"
    REQUEST_GRANT = "request_grant"
    APPROVE_GRANT = "approve_grant"
    CLASSIFY = "classify"
    MANAGE_PRINCIPALS = "manage_principals"
    VIEW_SECURITY = "view_security"  # alerts, grants, the seal
    UNSEAL = "unseal"
    SEAL = "seal"
    # --- audit
    VIEW_AUDIT_INTERNAL = "view_audit_internal"  # the private view of the log: withheld fields, provable


WEIGHT_ACTIONS = (Action.DOWNLOAD, Action.EXPORT, Action.COPY_TO_HUB)
INSTANCE_ACTIONS = (Action.MANAGE_PRINCIPALS, Action.VIEW_SECURITY, Action.UNSEAL, Action.SEAL, Action.CLASSIFY)
INSTANCE_UID = "instance"
OPERATOR = "system"  # the local operator (the CLI): sees every asset's metadata, holds no weights


@dataclass(frozen=True, slots=True)
class Decision:
    """One authorization decision with every reason: the policies that decided, or why none did."""

    allowed: bool
    principal: str
    action: Action
    resource: str  # the Cedar uid of the asset, or `instance`
    level: SecurityLevel | None  # None for instance actions
    reasons: tuple[str, ...]  # ids of the policies that determined the decision
    errors: tuple[str, ...] = ()
    policy_version: str = ""
    explanation: tuple[str, ...] = field(default_factory=tuple)

    @property
    def upper_tier(self) -> bool:
        return self.level is not None and self.level.upper_tier


def _entity(kind: str, uid: str) -> dict[str, str]:
    return {"type": f"Aperture::{kind}", "id": uid}


def principal_entity(
    principal: Principal, states: Mapping[str, State], organisations: Mapping[str, Organisation]
) -> dict[str, Any]:
    """A principal as a Cedar entity. Partner and foreign-control facts are flattened onto it so
    that a missing organisation reads as "no upper tier" instead of an evaluation error (an erring
    `forbid` would be skipped, which must never open anything)."""
    organisation = organisations.get(principal.organisation or "")
    state = states.get(organisation.state) if organisation else None
    attrs: dict[str, Any] = {
        "kind": principal.kind.value,
        "clearance": 0 if principal.disabled else int(principal.clearance),
        "affiliated": state is not None,
        "partner": state is None or state.kind is StateKind.PARTNER,
        "rule_of_law": state.rule_of_law.value if state else "unassessed",
        "cyber_assurance": int(state.cyber_assurance) if state else 0,
        "foreign_control": bool(organisation and organisation.foreign_control),
    }
    parents = [_entity("Programme", programme) for programme in principal.programmes]
    return {"uid": _entity("Person", principal.name), "attrs": attrs, "parents": parents}


def operator_entity(programmes: Iterable[str]) -> dict[str, Any]:
    attrs = {
        "kind": "operator",
        "clearance": int(SecurityLevel.SL5),
        "affiliated": True,
        "partner": False,
        "rule_of_law": RuleOfLaw.ADEQUATE.value,
        "cyber_assurance": int(SecurityLevel.SL5),
        "foreign_control": False,
    }
    parents = [_entity("Programme", name) for name in programmes]
    return {"uid": _entity("Person", OPERATOR), "attrs": attrs, "parents": parents}


UNREGISTERED = "anonymous"


def anonymous_entity() -> dict[str, Any]:
    """The public, and any key holder whose principal is not registered: SL1 only."""
    attrs = {
        "kind": "public",
        "clearance": int(SecurityLevel.SL1),
        "affiliated": False,
        "partner": True,
        "rule_of_law": "unassessed",
        "cyber_assurance": 0,
        "foreign_control": False,
    }
    return {"uid": _entity("Person", UNREGISTERED), "attrs": attrs, "parents": []}


def asset_entity(classification: Classification) -> dict[str, Any]:
    attrs: dict[str, Any] = {"kind": classification.asset.kind.value, "level": int(classification.level)}
    if classification.programme:
        attrs["programme"] = {"__entity": _entity("Programme", classification.programme)}
    return {"uid": _entity("Asset", classification.asset.uid), "attrs": attrs, "parents": []}


def cedar_entities(
    states: Sequence[State],
    organisations: Sequence[Organisation],
    programmes: Sequence[Programme],
    principals: Sequence[Principal],
    classifications: Sequence[Classification],
) -> list[dict[str, Any]]:
    """The whole entity store the policies decide on, built from the database's records."""
    by_code = {state.code: state for state in states}
    by_name = {organisation.name: organisation for organisation in organisations}
    entities: list[dict[str, Any]] = [
        {"uid": _entity("Programme", programme.name), "attrs": {}, "parents": []} for programme in programmes
    ]
    entities.append({"uid": _entity("Instance", INSTANCE_UID), "attrs": {}, "parents": []})
    entities.append(operator_entity(programme.name for programme in programmes))
    entities.append(anonymous_entity())
    entities.extend(principal_entity(principal, by_code, by_name) for principal in principals)
    entities.extend(asset_entity(classification) for classification in classifications)
    return entities


def decision_context(
    caller: Caller,
    *,
    grant: bool = False,
    security_officer_approved: bool = False,
    requester: str | None = None,
) -> dict[str, Any]:
    """What the request carries besides the entities: the caller's roles (from the key or session,
    so a key restricted to fewer roles acts with fewer), grant facts, the grant's requester."""
    context: dict[str, Any] = {
        "roles": [role.value for role in caller.roles],
        "grant": grant,
        "security_officer_approved": security_officer_approved,
    }
    if requester is not None:
        context["requester"] = {"__entity": _entity("Person", requester)}
    return context


def scope_allows(caller: Caller, action: Action) -> bool:
    """A scoped key may do only the actions it names (`*` for all)."""
    return caller.scopes is None or "*" in caller.scopes or action.value in caller.scopes


KEY_SCOPES = ("*", *(action.value for action in Action))


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(KEY_SCOPES))
    if unknown:
        raise InvalidInput(f"unknown key scope(s): {', '.join(unknown)}", hint="scopes: " + ", ".join(KEY_SCOPES))
    return tuple(dict.fromkeys(scopes)) or ("*",)


# --- passwords and lock-out -----------------------------------------------------------------

MIN_PASSWORD = 12


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"a password needs at least {MIN_PASSWORD} characters", hint="use a passphrase of several words"
        )


@dataclass(frozen=True, slots=True)
class LoginState:
    failed: int
    locked_until: datetime | None


def after_failed_login(state: LoginState, now: datetime, max_failures: int, lockout: timedelta) -> LoginState:
    failed = state.failed + 1
    if failed >= max_failures:
        return LoginState(0, now + lockout)
    return LoginState(failed, state.locked_until)


def is_locked(state: LoginState, now: datetime) -> bool:
    return state.locked_until is not None and now < state.locked_until


def cleared_for(principal: Principal, level: SecurityLevel, programme: str | None) -> bool:
    """Whether a principal's own record covers a level and programme (used before a
    classification exists, e.g. to refuse classifying an asset out of one's own reach)."""
    if principal.disabled or principal.clearance < level:
        return False
    return not level.upper_tier or (programme is not None and programme in principal.programmes)
