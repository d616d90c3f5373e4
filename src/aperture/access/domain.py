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
    # Who issued it: the administrators who requested and approved it, and whoever issued the keys
    # they used (so a chain of keys never hides its first issuer); `system` for the local operator;
    # empty for a key a person issued for themself after signing in with their password.
    issued_by: tuple[str, ...] = ()


class KeyRequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """A key for someone else, asked for by one administrator; a second approves it (and receives
    the key text once). `requested_with` names who issued the requesting administrator's key."""

    id: str
    name: str
    principal: str
    roles: tuple[Role, ...]
    scopes: tuple[str, ...] | None
    expires_at: datetime | None
    requested_by: str
    requested_with: tuple[str, ...]
    requested_at: datetime
    status: KeyRequestStatus = KeyRequestStatus.PENDING
    approved_by: str | None = None
    approved_at: datetime | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class UiSession:
    """A sign-in on the pages. The cookie holds a random session id; the database keeps its hash,
    so signing out (or a password change, or disabling) ends it for every copy of the cookie."""

    principal: str
    epoch: int  # the principal's session epoch at sign-in: a later bump ends the session too
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None

    def live(self, now: datetime, current_epoch: int) -> bool:
        return self.ended_at is None and now < self.expires_at and self.epoch == current_epoch


ACTOR_LIMIT = 200  # the audit log's limit on an event's actor


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is acting: the principal behind an authenticated key or session (or `anonymous`).

    `scopes` limits what a scoped API key may do (None: every action its roles allow); `origin`
    is where the request came from (the client address), kept for alerts and the audit log;
    `issued_by` names who issued the key (see `ApiKey.issued_by`): it is part of the actor of every
    event done with the key, and the two-person rules refuse an approval from a key the requester
    issued.
    """

    principal: str
    roles: tuple[Role, ...]
    key_id: str | None = None
    scopes: tuple[str, ...] | None = None
    origin: str | None = None
    session: bool = False
    issued_by: tuple[str, ...] = ()

    def has(self, role: Role) -> bool:
        """Whether the caller holds a role (for display; decisions go through the access service)."""
        return role in self.roles

    @property
    def signed_in(self) -> bool:
        """Authenticated by a key or a password session (the local operator counts as signed in)."""
        return self.key_id is not None or self.session or self.principal == OPERATOR

    @property
    def actor(self) -> str:
        """How the caller appears in audit events: the principal, the key and who issued it."""
        if not self.key_id:
            return f"{self.principal} (session)" if self.session else self.principal
        return actor_text(self.principal, self.key_id, self.issued_by)


def actor_text(principal: str, key_id: str, issued_by: Sequence[str]) -> str:
    """`alice (key ab12cd34, issued by bob+carol)`, shortened to the audit log's limit."""
    base = f"{principal[:150]} (key {key_id}"
    if not issued_by:
        return base + ")"
    names = list(issued_by)
    while names:
        left = len(issued_by) - len(names)
        text = f"{base}, issued by {'+'.join(names)}" + (f" +{left} more" if left else "") + ")"
        if len(text) <= ACTOR_LIMIT:
            return text
        names.pop()
    return f"{base}, issued by {len(issued_by)} people)"[:ACTOR_LIMIT]


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
    """What a caller may ask to do. `VIEW` on an asset is seeing that it exists and reading what it
    says; `VIEW` on the instance is reading its shared directory (states, organisations,
    programmes, the seal's state, the evaluation suites), open to every signed-in caller."""

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
    # --- release
    ADOPT_RELEASE_POLICY = "adopt_release_policy"  # instance: put a release policy in force
    PROPOSE_RELEASE = "propose_release"  # a version: propose a tier to the board
    VIEW_RELEASE = "view_release"  # a version: its proposals, rationale, votes, the policy's reasoning, the due list
    VOTE_RELEASE = "vote_release"  # a version: vote on its release, or declare a conflict of interest
    CHALLENGE_RELEASE = "challenge_release"  # a version: challenge an opening during its cooling-off period
    CARRY_OUT_RELEASE = "carry_out_release"  # a version: open its weights after the cooling-off period
    WITHDRAW_RELEASE = "withdraw_release"  # a version: withdraw a proposal (context: proposer)
    REPORT_INCIDENT = "report_incident"  # a version: record an incident, so its decision is re-assessed
    # --- licensing
    APPLY_LICENCE = "apply_licence"  # a version: apply for a licence to it
    VIEW_LICENCE_APPLICATION = "view_licence_application"  # a version: read an application (context: own_organisation)
    ANSWER_LICENCE_REQUEST = "answer_licence_request"  # a version: answer an officer's request (own_organisation)
    SCREEN_LICENCE_APPLICATION = "screen_licence_application"  # a version: screen and decide an application
    DRAFT_LICENCE = "draft_licence"  # a version: draft a licence's terms from an approved application
    VIEW_LICENCE = "view_licence"  # a version: read a licence, its receivables and copies (own_organisation)
    MANAGE_LICENCE = "manage_licence"  # a version: activate, suspend, reinstate, revoke a licence
    ISSUE_LICENSED_COPY = "issue_licensed_copy"  # a version: make a licensee's marked copy
    DOWNLOAD_LICENSED_COPY = "download_licensed_copy"  # a version: fetch it (own_organisation, licence_in_force)
    DIFFUSE_LICENSED = "diffuse_licensed"  # a version: move a licensed model on at the end of its programme
    VIEW_RECEIVABLES = "view_receivables"  # instance: every licence's receivables
    TRACE_LEAKS = "trace_leaks"  # instance: trace a suspect model, the reverse question, trace reports
    # --- gateway
    MANAGE_GATEWAY = "manage_gateway"  # instance: gateway keys, limits, the backends' list
    CONFIGURE_GATEWAY_MODEL = "configure_gateway_model"  # a version: bind, grant, price, safety policy
    VIEW_GATEWAY_USAGE = "view_gateway_usage"  # instance: usage reports (context: own_organisation)
    VIEW_GATEWAY_ALERTS = "view_gateway_alerts"  # instance: the gateway's alerts, and picking them up
    # --- registry
    SIGN_FACTS = "sign_facts"  # sign the facts of a version registered before facts were signed
    COLLECT_GARBAGE = "collect_garbage"  # remove what interrupted writes left in the stores
    # --- raid
    RAID_DESK = "raid_desk"  # the desk's view (AMBER items, the queue, clocks) and its own reports
    RAID_COMMUNITY = "raid_community"  # the TLP:GREEN community
    RAID_REPORT = "raid_report"  # a partner reports as its organisation
    RAID_INTAKE = "raid_intake"  # automatic intake of the platform's alerts, STIX bundle import
    RAID_TRIAGE = "raid_triage"  # assess, assign, decline, merge, mark duplicate
    RAID_INVESTIGATE = "raid_investigate"  # investigate, mitigate, resolve
    RAID_CLOSE = "raid_close"  # close and reopen
    RAID_ROUTE = "raid_route"  # routing, obligations, drafts, forwarding, reminders
    RAID_SHARE = "raid_share"  # TLP labels and recipients
    RAID_DISCLOSE = "raid_disclose"  # advisories, embargoes, telling affected parties, publication
    RAID_PUBLISH_EARLY = "raid_publish_early"  # the recorded decision to publish before the embargo ends
    RAID_MANAGE = "raid_manage"  # the routing table, contacts, the outbox
    # --- access (policies in access.cedar)
    ISSUE_KEY = "issue_key"  # one's own key, or the local operator's
    REQUEST_KEY = "request_key"  # an administrator asks for a key for someone else
    APPROVE_KEY = "approve_key"  # a second administrator approves that request
    MANAGE_KEYS = "manage_keys"  # list and revoke keys
    VIEW_PRINCIPALS = "view_principals"
    CHANGE_PASSWORD = "change_password"  # noqa: S105 - an action: changing one's own password
    EXPLAIN = "explain"
    # --- security (policies in security.cedar and grants.cedar)
    REVOKE_GRANT = "revoke_grant"
    ACKNOWLEDGE_ALERT = "acknowledge_alert"
    # --- registry (policies in registry.cedar)
    REGISTER_MODEL = "register_model"
    VERIFY = "verify"  # re-hash every stored file of a version
    # --- risk (policies in risk.cedar)
    ASSESS = "assess"  # run suites on a version, import evidence, attach findings, read item results
    # --- audit (policies in audit.cedar)
    SIGN_TREE_HEAD = "sign_tree_head"
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
    facts: Mapping[str, bool | int | str] | None = None,
    own: bool = False,
    involved: bool = False,
    second_person: bool = False,
    as_officer: bool = False,
) -> dict[str, Any]:
    """What the request carries besides the entities: the caller's roles (from the key or session,
    so a key restricted to fewer roles acts with fewer), whether it is signed in, and the facts of
    the record acted on: grant facts, the grant's requester, whether the record is the caller's own
    (their key, their password, their explanation), whether the caller is party to it (a grant
    they requested or approved), and whether an approval comes from a second person
    (`distinct_hands`) and is meant to count as the security officer's. Every fact is present,
    false unless the service says otherwise. `facts` carries the facts of an area's record that its
    policies need (`own_organisation`: the application or licence is the caller's organisation's;
    `proposer`: the caller proposed it); a fact never replaces the roles or the grant facts."""
    reserved = (
        "roles",
        "authenticated",
        "grant",
        "security_officer_approved",
        "requester",
        "own",
        "involved",
        "second_person",
        "as_officer",
    )
    context: dict[str, Any] = {name: value for name, value in (facts or {}).items() if name not in reserved}
    context |= {
        "roles": [role.value for role in caller.roles],
        "authenticated": caller.signed_in,
        "grant": grant,
        "security_officer_approved": security_officer_approved,
        "own": own,
        "involved": involved,
        "second_person": second_person,
        "as_officer": as_officer,
    }
    if requester is not None:
        context["requester"] = {"__entity": _entity("Person", requester)}
    return context


def distinct_hands(first: str, first_issuers: Sequence[str], second: str, second_issuers: Sequence[str]) -> bool:
    """Whether two acts (a request and its approval) come from two people: different principals,
    and neither issued the key the other acted with. An administrator who issued a key for
    someone holds that key's text once; acts done with it are not a second person's."""
    return first != second and first not in second_issuers and second not in first_issuers


RESERVED_PRINCIPALS = (OPERATOR, UNREGISTERED)


def check_key_principal(principal: str) -> str:
    """A key acts for a principal; never for the local operator or the anonymous public (a key for
    `system` would carry the operator's clearance)."""
    name = principal.strip()
    if not name:
        raise InvalidInput("a key needs a principal", hint="pass the person or service account it acts for")
    if name in RESERVED_PRINCIPALS:
        raise InvalidInput(f"{name!r} is reserved: no key acts for it", hint="issue the key to a named principal")
    return name


def issuers_of(*hands: tuple[str, Sequence[str]]) -> tuple[str, ...]:
    """Everyone behind a key: each issuing person and whoever issued the keys they acted with."""
    names: list[str] = []
    for principal, issued_by in hands:
        names.extend([principal, *issued_by])
    return tuple(dict.fromkeys(names))


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
