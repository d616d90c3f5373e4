"""The transparency log's data and rules: events as RFC 6962 / RFC 9162 Merkle leaves, proofs,
signed checkpoints and whole-log verification. Pure: no I/O, no clock, no database.

Everything a third party needs to check our log offline lives here and depends only on the
standard library, `cryptography` (Ed25519) and `aperture.core.canonical`:
`verify_inclusion`, `verify_consistency`, `verify_signed_note`, `check_bundle`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from aperture.core.canonical import canonical_json

LEGACY_EVENT_SCHEMA_VERSION = 1  # every field in clear in the leaf (events written before withholding)
EVENT_SCHEMA_VERSION = 2  # public fields in clear, withheld ones as salted commitments
TREE_HEAD_SCHEMA_VERSION = 1
HASH_SIZE = 32
SALT_SIZE = 16
# Stored subtree hashes exist for every level that is a multiple of STRIDE: a proof then reads
# one 16-wide tile per 4 levels (about 75 hashes at a million leaves) instead of every leaf,
# for about n/15 stored rows. (Height-8 tiles, as in tlog, hash ~255 nodes per 8 levels.)
STRIDE = 4
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 2.1: MTH({}) = SHA-256()
INCLUSION_BUNDLE = "aperture.audit.inclusion/v1"
CONSISTENCY_BUNDLE = "aperture.audit.consistency/v1"
ISSUED_PREFIX = "issued "
NOTE_ED25519 = b"\x01"  # the signed-note signature type byte for Ed25519


# --- events and leaves ----------------------------------------------------------------------


class Visibility(StrEnum):
    """Who may read one field of an event (docs/audit.md, "What the public log shows")."""

    PUBLIC = "public"  # shown to everyone
    INTERNAL = "internal"  # withheld from the public: people, addresses, internal facts
    UPPER_TIER = "upper-tier"  # shown, unless the event concerns an upper-tier asset


WITHHELD = "withheld"  # the key of a withheld field's marker in the public view


@dataclass(frozen=True, slots=True)
class EventFields:
    """The classification of one action's fields (the table is `aperture.audit.fields`).

    A detail the table does not name is internal, and so is everything of an action it does not
    know (`FAIL_CLOSED`): the public sees only what was declared public."""

    actor: Visibility = Visibility.INTERNAL
    resource: Visibility = Visibility.INTERNAL
    details: Mapping[str, Visibility] = field(default_factory=dict)

    def of(self, path: str) -> Visibility:
        """The visibility of a field by its path: `actor`, `resource` or `details.<key>`."""
        if path == "actor":
            return self.actor
        if path == "resource":
            return self.resource
        return self.details.get(path.removeprefix("details."), Visibility.INTERNAL)


FAIL_CLOSED = EventFields()


def withheld_label(visibility: Visibility, upper_tier: bool) -> str | None:
    """See _LABELS (the same, as a function)."""
    return _LABELS[visibility, upper_tier]


def _withheld_label(visibility: Visibility, upper_tier: bool) -> str | None:
    """Why the public view withholds a field of this visibility ("internal", "upper-tier"), or
    None when it shows it."""
    if visibility is Visibility.PUBLIC:
        return None
    if visibility is Visibility.UPPER_TIER:
        return Visibility.UPPER_TIER.value if upper_tier else None
    return Visibility.INTERNAL.value


# (visibility, upper_tier) -> why the public view withholds a field ("internal", "upper-tier"),
# or None when it shows it.
_LABELS: dict[tuple[Visibility, bool], str | None] = {
    (visibility, upper): _withheld_label(visibility, upper) for visibility in Visibility for upper in (False, True)
}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One state change: who did what to which resource, when, with details, every field in
    clear. This is the operator's view; the public sees `event_json(record, ...)`."""

    leaf_index: int
    event_id: str
    occurred_at: str  # canonical UTC text, see aperture.core.clock.isoformat
    actor: str
    action: str
    resource: str
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = EVENT_SCHEMA_VERSION


def leaf_data_from_fields(
    schema_version: int,
    event_id: str,
    occurred_at: str,
    actor: str,
    action: str,
    resource: str,
    details_json: str,
) -> bytes:
    """The exact bytes of a version 1 Merkle leaf, from an event's fields and its canonical
    details text (every field in clear).

    This is the canonical JSON (sorted keys, no whitespace, UTF-8) of the leaf object, written
    out so the hot paths (append, verify) splice the stored canonical details text instead of
    re-encoding it. `json.encoder.encode_basestring` is the very function `json.dumps(...,
    ensure_ascii=False)` uses for strings; tests/audit/test_domain.py proves the bytes equal
    `canonical_json` of the same object. LogVerifier.add_rows inlines the same expression.
    """
    enc = encode_basestring
    return (
        f'{{"action":{enc(action)},"actor":{enc(actor)},"at":{enc(occurred_at)},"details":{details_json},'
        f'"id":{enc(event_id)},"resource":{enc(resource)},"v":{int(schema_version)}}}'
    ).encode()


def leaf_data_from_members(
    event_id: str,
    occurred_at: str,
    actor_json: str,
    action: str,
    resource_json: str,
    details_json: str,
    commitments_json: str | None = None,
) -> bytes:
    """The exact bytes of a version 2 leaf from its members as canonical JSON text: `actor` and
    `resource` are a JSON string or a withheld marker, `details` the public details object, and
    `withheld` (only when something is) the commitments object, {label: hex}."""
    enc = encode_basestring
    tail = "" if commitments_json is None else f',"withheld":{commitments_json}'
    return (
        f'{{"action":{enc(action)},"actor":{actor_json},"at":{enc(occurred_at)},"details":{details_json},'
        f'"id":{enc(event_id)},"resource":{resource_json},"v":2{tail}}}'
    ).encode()


def _flat_value(value: Any) -> str | None:
    """JSON text of a str, int, bool or None exactly as json.dumps writes it; None otherwise."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return None


def value_text(value: Any) -> str:
    """The canonical JSON text of one value."""
    flat = _flat_value(value)
    return flat if flat is not None else canonical_json(value).decode("utf-8")


def details_text(details: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event's details, as stored and as spliced into the leaf.

    Most events carry a flat object of strings and integers; writing that directly is several
    times faster than json.dumps and gives the same bytes (tests compare the two). Anything
    else goes through canonical_json.
    """
    if not details:
        return "{}"
    if not all(type(key) is str for key in details):
        return canonical_json(dict(details)).decode("utf-8")
    parts = []
    for key in sorted(details):
        value = _flat_value(details[key])
        if value is None:
            return canonical_json(dict(details)).decode("utf-8")
        parts.append(f"{encode_basestring(key)}:{value}")
    return "{" + ",".join(parts) + "}"


def commitment(salt: bytes, fields: Mapping[str, Any]) -> str:
    """What the leaf holds for the fields withheld under one label: hex SHA-256(salt || canonical
    JSON of {path: value}), the paths being `actor`, `resource` and `details.<key>`.

    The 16-byte random salt, kept only in the private half, makes the commitment hiding (a name,
    an address or a model name cannot be guessed and checked against it) and binding (SHA-256)."""
    return hashlib.sha256(salt + canonical_json(dict(fields))).hexdigest()


def is_marker(value: Any) -> bool:
    """Whether a member of a public event is a withheld-field marker rather than a value."""
    return isinstance(value, dict) and len(value) == 1 and WITHHELD in value


_MARKERS = {label: f'{{"withheld":"{label}"}}' for label in (Visibility.INTERNAL.value, Visibility.UPPER_TIER.value)}

# The private half as stored: the asset as a JSON string (or `null`), then one line per label,
# `<label> TAB <salt, hex> TAB <the group's canonical JSON, {path: value}>`. JSON text never
# holds a raw tab or newline, so the lines split without parsing, and `audit verify` opens a
# commitment by hashing the stored text as it is (no decode, no re-encode).
PRIVATE_FORMAT = "asset-json (LF label TAB salt-hex TAB group-json)*"


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """A new event as it is stored: the leaf's members as canonical JSON text, the leaf itself,
    and the private half (the withheld values with their salts, and the asset it concerns)."""

    actor: str
    resource: str
    details: str
    commitments: str | None  # {label: hex}; None if nothing is withheld
    leaf: bytes
    private: str | None  # see PRIVATE_FORMAT; None if nothing is withheld
    clear_details: int  # characters of the details as canonical JSON, every field in clear


def seal_event(
    classes: EventFields,
    *,
    upper_tier: bool,
    event_id: str,
    occurred_at: str,
    actor: str,
    action: str,
    resource: str,
    details: Mapping[str, Any],
    asset: str | None,
    salts: bytes,
) -> SealedEvent:
    """Split a new event into its public leaf (v2) and its private half.

    Each field the public may not see becomes `{"withheld": label}` in the leaf; the fields
    withheld under one label are committed to together (`commitment`), in the leaf's `withheld`
    object; their values and the salt go to the private half. `salts` holds at least
    2 * SALT_SIZE random bytes (one salt per label). Raises TypeError or ValueError for details
    that are not canonical JSON (floats, non-string keys) or that imitate a withheld marker.
    """
    # The hot path of every append: locals only, withheld_label and value_text inlined.
    enc, labels, markers = encode_basestring, _LABELS, _MARKERS
    groups: dict[str, list[str]] = {}  # label -> '"path":value' in sorted path order
    actor_json = enc(actor)
    label = labels[classes.actor, upper_tier]
    if label is not None:
        groups[label] = [f'"actor":{actor_json}']
        actor_json = markers[label]
    parts = []
    clear = 1 + len(details)  # braces and commas
    visibility = classes.details.get
    for key in sorted(details):
        value = details[key]
        kind = type(value)
        if kind is str:
            text = enc(value)
        elif kind is int:
            text = int.__repr__(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif is_marker(value):
            raise ValueError(f"details[{key!r}] imitates a withheld-field marker")
        else:
            text = canonical_json(value).decode("utf-8")
        key_text = enc(key)  # a key that is not a string raises TypeError here
        clear += len(key_text) + 1 + len(text)
        label = labels[visibility(key, Visibility.INTERNAL), upper_tier]
        if label is None:
            parts.append(f"{key_text}:{text}")
        else:
            groups.setdefault(label, []).append(f'"details.{key_text[1:]}:{text}')
            parts.append(f"{key_text}:{markers[label]}")
    details_json = "{" + ",".join(parts) + "}"
    resource_json = enc(resource)
    label = labels[classes.resource, upper_tier]
    if label is not None:
        groups.setdefault(label, []).append(f'"resource":{resource_json}')
        resource_json = markers[label]
    commitments = private = None
    if groups:
        sha256, members, lines = hashlib.sha256, [], [enc(asset) if asset is not None else "null"]
        for position, label in enumerate(sorted(groups)):  # "internal" < "upper-tier"
            salt = salts[position * SALT_SIZE : (position + 1) * SALT_SIZE]
            group = "{" + ",".join(groups[label]) + "}"
            members.append(f'"{label}":"{sha256(salt + group.encode()).hexdigest()}"')
            lines.append(f"{label}\t{salt.hex()}\t{group}")
        commitments = "{" + ",".join(members) + "}"
        private = "\n".join(lines)
    leaf = leaf_data_from_members(event_id, occurred_at, actor_json, action, resource_json, details_json, commitments)
    return SealedEvent(actor_json, resource_json, details_json, commitments, leaf, private, clear)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event: the members its leaf holds, and the private half of what it withholds.

    Version 2: `actor` and `resource` are a string or a withheld marker, `details` the public
    details with markers, `commitments` {label: hex} (all public, in the leaf); `secrets` maps
    each label to (salt, {path: value}) and `asset` names the upper-tier asset the event
    concerns (both private). Version 1: every field in clear."""

    leaf_index: int
    event_id: str
    occurred_at: str
    action: str
    actor: Any
    resource: Any
    details: dict[str, Any]
    schema_version: int
    leaf_hash: bytes  # as stored
    commitments: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)
    asset: str | None = None

    def member(self, path: str) -> Any:
        if path == "actor":
            return self.actor
        if path == "resource":
            return self.resource
        return self.details.get(path.removeprefix("details."))


def parse_private(text: str | None) -> tuple[dict[str, tuple[bytes, dict[str, Any]]], str | None]:
    """The private half as stored (PRIVATE_FORMAT): ({label: (salt, {path: value})}, asset uid)."""
    if not text:
        return {}, None
    first, *lines = text.split("\n")
    asset = json.loads(first)
    groups: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for line in lines:
        label, salt, group = line.split("\t", 2)
        groups[label] = (bytes.fromhex(salt), json.loads(group))
    return groups, asset if isinstance(asset, str) else None


def withheld_paths(record: EventRecord, classes: EventFields) -> dict[str, str]:
    """{path: label} of every field the public view of this event withholds.

    Version 2 says it in the leaf (its markers). A version 1 leaf holds every field in clear, so
    its public view withholds by today's classification, failing closed: an upper-tier field is
    withheld whatever the asset, because a version 1 event does not say which tier it concerns.
    """
    paths: dict[str, str] = {}
    if record.schema_version >= EVENT_SCHEMA_VERSION:
        for path in ("actor", "resource"):
            value = record.member(path)
            if is_marker(value):
                paths[path] = str(value[WITHHELD])
        for key, value in record.details.items():
            if is_marker(value):
                paths[f"details.{key}"] = str(value[WITHHELD])
        return paths
    for path in ("actor", "resource", *(f"details.{key}" for key in record.details)):
        label = withheld_label(classes.of(path), upper_tier=True)
        if label is not None:
            paths[path] = label
    return paths


def full_event(record: EventRecord) -> AuditEvent:
    """Every field in clear (the operator's view). A withheld value whose private half was erased
    stays its marker (as text, for actor and resource)."""
    clear: dict[str, Any] = {}
    for _, fields in record.secrets.values():
        clear.update(fields)

    def value(path: str, member: Any) -> Any:
        return clear[path] if is_marker(member) and path in clear else member

    actor, resource = value("actor", record.actor), value("resource", record.resource)
    return AuditEvent(
        leaf_index=record.leaf_index,
        event_id=record.event_id,
        occurred_at=record.occurred_at,
        actor=actor if isinstance(actor, str) else json.dumps(actor, sort_keys=True),
        action=record.action,
        resource=resource if isinstance(resource, str) else json.dumps(resource, sort_keys=True),
        details={key: value(f"details.{key}", member) for key, member in record.details.items()},
        schema_version=record.schema_version,
    )


# May the reader see the fields withheld under this label ("internal" or "upper-tier") of this event?
Discloser = Callable[[EventRecord, str], bool]


def disclose_all(record: EventRecord, label: str) -> bool:
    """The operator's view: everything."""
    return True


def disclose_none(record: EventRecord, label: str) -> bool:
    """The public view: nothing withheld."""
    return False


def event_json(record: EventRecord, classes: EventFields, disclose: Discloser = disclose_none) -> dict[str, Any]:
    """An event as one reader may see it (the API's, the pages' and the proof bundles' shape).

    The public view (`disclose_none`) of a version 2 event is exactly the leaf's content, so it
    hashes to the leaf. A private view adds `disclosed`: {label: {"salt", "fields": {path:
    value}}} for each label the reader may see, which `check_disclosed` proves against the
    commitment. A version 1 event is shown in clear when the reader may see all of it;
    otherwise its withheld fields are markers without a commitment (a v1 leaf has none), so only
    its leaf hash can be proved, not its content.
    """
    body: dict[str, Any] = {
        "leaf_index": record.leaf_index,
        "event_id": record.event_id,
        "occurred_at": record.occurred_at,
        "action": record.action,
        "schema_version": record.schema_version,
        "leaf_hash": record.leaf_hash.hex(),
    }
    if record.schema_version >= EVENT_SCHEMA_VERSION:
        body.update(actor=record.actor, resource=record.resource, details=dict(record.details))
        if record.commitments:
            body[WITHHELD] = dict(record.commitments)
        disclosed = {
            label: {"salt": salt.hex(), "fields": dict(fields)}
            for label, (salt, fields) in sorted(record.secrets.items())
            if disclose(record, label)
        }
        if disclosed:
            body["disclosed"] = disclosed
        return body
    hidden = {path: label for path, label in withheld_paths(record, classes).items() if not disclose(record, label)}

    def shown(path: str, value: Any) -> Any:
        return {WITHHELD: hidden[path]} if path in hidden else value

    body.update(
        actor=shown("actor", record.actor),
        resource=shown("resource", record.resource),
        details={key: shown(f"details.{key}", value) for key, value in record.details.items()},
    )
    return body


def event_leaf_data(event: Mapping[str, Any]) -> bytes:
    """The leaf bytes an event as `event_json` shows it commits to (either view).

    Raises ValueError when the leaf cannot be rebuilt from what is shown: a version 1 event with
    withheld fields, or an unknown schema version."""
    version = event["schema_version"]
    details = event["details"]
    if not isinstance(details, Mapping):
        raise ValueError("the event's details are not an object")
    if version == LEGACY_EVENT_SCHEMA_VERSION:
        members = [event["actor"], event["resource"], *details.values()]
        if any(is_marker(value) for value in members):
            raise ValueError(
                "a version 1 event shown with withheld fields: its leaf holds them in clear, so only "
                "its leaf hash can be proved from this view, not what it says"
            )
        return leaf_data_from_fields(
            1,
            str(event["event_id"]),
            str(event["occurred_at"]),
            str(event["actor"]),
            str(event["action"]),
            str(event["resource"]),
            details_text(details),
        )
    if version == EVENT_SCHEMA_VERSION:
        leaf = {
            "action": event["action"],
            "actor": event["actor"],
            "at": event["occurred_at"],
            "details": dict(details),
            "id": event["event_id"],
            "resource": event["resource"],
            "v": EVENT_SCHEMA_VERSION,
        }
        if WITHHELD in event:
            leaf[WITHHELD] = event[WITHHELD]
        return canonical_json(leaf)
    raise ValueError(f"unknown event schema version {version!r}")


def _marked(event: Mapping[str, Any]) -> dict[str, str]:
    """{path: label} of the markers an event (as shown) holds."""
    paths: dict[str, Any] = {path: event.get(path) for path in ("actor", "resource")}
    details = event.get("details")
    if isinstance(details, Mapping):
        paths.update({f"details.{key}": value for key, value in details.items()})
    return {path: str(value[WITHHELD]) for path, value in paths.items() if is_marker(value)}


def check_disclosed(event: Mapping[str, Any]) -> list[str]:
    """Problems with an event's disclosed fields: for each label, the fields and salt must hash
    to the commitment the leaf holds, and be exactly the fields withheld under that label.
    Empty when every disclosure is proved."""
    problems: list[str] = []
    disclosed = event.get("disclosed") or {}
    commitments = event.get(WITHHELD) or {}
    if not isinstance(disclosed, Mapping) or not isinstance(commitments, Mapping):
        return ["`disclosed` or `withheld` is not an object"]
    marked = _marked(event)
    for label, item in disclosed.items():
        digest = commitments.get(label)
        if not isinstance(digest, str):
            problems.append(f"{label}: the leaf holds no commitment for it")
            continue
        try:
            salt = bytes.fromhex(item["salt"])
            fields = item["fields"]
            if len(salt) != SALT_SIZE or not isinstance(fields, Mapping):
                raise ValueError("bad disclosure")
            matches = commitment(salt, fields) == digest
        except (KeyError, TypeError, ValueError):
            problems.append(f"{label}: the disclosure is not fields with a {SALT_SIZE}-byte hex salt")
            continue
        if not matches:
            problems.append(f"{label}: the fields and salt do not hash to the leaf's commitment")
        elif set(fields) != {path for path, marked_as in marked.items() if marked_as == label}:
            problems.append(f"{label}: the fields disclosed are not the fields the leaf withholds under it")
    return problems


def shown_text(value: Any) -> str:
    """A member of an event as a line of text: the value, or `[withheld: label]`."""
    if is_marker(value):
        return f"[withheld: {value[WITHHELD]}]"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def shown_member(event: Mapping[str, Any], path: str) -> str:
    """A member of an event in a view (`event_json`) as text: the disclosed value when the view
    discloses it, else the member itself (a value, or `[withheld: label]`)."""
    for group in (event.get("disclosed") or {}).values():
        if path in group["fields"]:
            return shown_text(group["fields"][path])
    if path in ("actor", "resource"):
        return shown_text(event.get(path))
    return shown_text((event.get("details") or {}).get(path.removeprefix("details.")))


def leaf_data(event: AuditEvent) -> bytes:
    """The exact bytes of a version 1 leaf: canonical JSON of every field but the index.

    The leaf index is the event's position in the tree, so it is not repeated inside the leaf;
    moving a row changes which leaf sits where and is caught by the tree. (A version 2 leaf also
    needs the salts of its withheld fields: see `seal_event`.)
    """
    return leaf_data_from_fields(
        event.schema_version,
        event.event_id,
        event.occurred_at,
        event.actor,
        event.action,
        event.resource,
        details_text(event.details),
    )


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 section 2.1: MTH({d0}) = SHA-256(0x00 || d0)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 section 2.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_leaf_hash(event: AuditEvent) -> bytes:
    """The leaf hash of a version 1 event."""
    return leaf_hash(leaf_data(event))


# --- tree shape -----------------------------------------------------------------------------


def largest_power_of_two_below(n: int) -> int:
    """k in RFC 6962 2.1: the largest power of two smaller than n (n > 1)."""
    if n < 2:
        raise ValueError("n must be at least 2")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The aligned perfect subtrees covering leaves [start, end), left to right, as
    (level, node_index): the subtree (l, i) holds leaves [i * 2**l, (i + 1) * 2**l)."""
    if not 0 <= start <= end:
        raise ValueError(f"bad range [{start}, {end})")
    nodes: list[tuple[int, int]] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree node from the hashes of its perfect subtrees (left to right, shrinking):
    RFC 6962 splits at the largest power of two, so the node is a right fold of them."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree from its 2**k hashes one level down (or more levels down)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError("a perfect subtree needs a power-of-two number of hashes")
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) as leaf ranges, nearest the leaf first: the proof is the
    MTH of each range."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    # Walk from the root down to the leaf, then reverse: PATH lists the deepest sibling first.
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true) as leaf ranges."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = largest_power_of_two_below(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


class TreeAccumulator:
    """The right edge of a growing tree (a compact range from leaf 0): add leaves one at a time,
    read the root at any size in O(log n). Remembers nothing else, so it streams a million leaves.

    `on_stride_node(level, index, hash)` is called for each completed subtree whose level is a
    positive multiple of STRIDE, so callers can compare or store those nodes as they appear.
    """

    __slots__ = ("_hashes", "_on_stride_node", "size")

    def __init__(self, on_stride_node: Callable[[int, int, bytes], None] | None = None) -> None:
        self._hashes: list[bytes] = []
        self._on_stride_node = on_stride_node
        self.size = 0

    def add(self, leaf: bytes) -> None:
        hashes = self._hashes
        hashes.append(leaf)
        self.size += 1
        size, level = self.size, 0
        # Each trailing zero bit of the new size completes one more perfect subtree.
        while not size & 1:
            right = hashes.pop()
            hashes[-1] = hashlib.sha256(b"\x01" + hashes[-1] + right).digest()
            size >>= 1
            level += 1
            if self._on_stride_node is not None and level % STRIDE == 0:
                self._on_stride_node(level, (self.size >> level) - 1, hashes[-1])

    def root(self) -> bytes:
        return fold_subtrees(self._hashes)


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH(D[n]) of a whole list of leaf hashes."""
    accumulator = TreeAccumulator()
    for leaf in leaf_hashes:
        accumulator.add(leaf)
    return accumulator.root()


def range_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that is a node of an RFC 6962 tree (as proofs use)."""
    return fold_subtrees(
        [perfect_root(leaf_hashes[i << level : (i + 1) << level]) for level, i in perfect_subtrees(start, end)]
    )


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path of leaf `index` in the tree of the first `size` leaves (in memory)."""
    size = len(leaf_hashes) if size is None else size
    return [range_hash(leaf_hashes, start, end) for start, end in inclusion_ranges(index, size)]


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """The consistency proof from the tree of `first` leaves to the tree of `second` (in memory)."""
    return [range_hash(leaf_hashes, start, end) for start, end in consistency_ranges(first, second)]


# --- proof verification (RFC 9162 2.1.3.2 and 2.1.4.2) --------------------------------------


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to, or None when the proof cannot be for (index, size)."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when `proof` shows that the leaf hash `leaf` is leaf number `index` (from 0) of the
    tree of `size` leaves whose root is `root` (RFC 9162 section 2.1.3.2)."""
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    return computed is not None and computed == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """True when `proof` shows that the tree of `first` leaves with root `first_root` is a prefix
    of the tree of `second` leaves with root `second_root` (RFC 9162 section 2.1.4.2)."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is itself a node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- signed tree heads: C2SP checkpoints in the signed-note format ---------------------------


def log_origin(key_id: str) -> str:
    """The log's name on its checkpoints: one log per instance, named after its signing key."""
    return f"aperture/{key_id}"


def ed25519_raw_public_key(public_key_pem: str) -> bytes:
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def note_key_hash(name: str, raw_public_key: bytes) -> bytes:
    """C2SP signed-note key ID: SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + NOTE_ED25519 + raw_public_key).digest()[:4]


def checkpoint_text(origin: str, tree_size: int, root: bytes, issued_at: str) -> str:
    """The signed bytes (as UTF-8): a C2SP tlog-checkpoint body plus one extension line carrying
    the issue time, so the time is covered by the signature too."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode('ascii')}\n{ISSUED_PREFIX}{issued_at}\n"


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A commitment by the instance key to the log's first `tree_size` leaves."""

    origin: str
    tree_size: int
    root_hash: bytes
    issued_at: str
    key_id: str  # aperture.vault.keys.key_id of the instance key (SPKI digest, 16 hex)
    key_hash: bytes  # the 4-byte signed-note key ID on the signature line
    signature: bytes  # Ed25519 over checkpoint_text(...) encoded as UTF-8
    schema_version: int = TREE_HEAD_SCHEMA_VERSION

    @property
    def note_text(self) -> str:
        return checkpoint_text(self.origin, self.tree_size, self.root_hash, self.issued_at)

    @property
    def signed_note(self) -> str:
        """The checkpoint as a complete signed note: text, blank line, signature line."""
        blob = base64.b64encode(self.key_hash + self.signature).decode("ascii")
        return f"{self.note_text}\n\u2014 {self.origin} {blob}\n"


def build_signed_tree_head(
    *, origin: str, tree_size: int, root: bytes, issued_at: str, key_id: str, public_key_pem: str, signature: bytes
) -> SignedTreeHead:
    return SignedTreeHead(
        origin=origin,
        tree_size=tree_size,
        root_hash=root,
        issued_at=issued_at,
        key_id=key_id,
        key_hash=note_key_hash(origin, ed25519_raw_public_key(public_key_pem)),
        signature=signature,
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a verified signed note says."""

    origin: str
    tree_size: int
    root_hash: bytes
    issued_at: str | None


def parse_checkpoint_text(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
        raise ValueError("a checkpoint is at least three non-empty lines, each ending in a newline")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise ValueError(f"bad tree size line {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise ValueError("the root hash line is not base64") from None
    if len(root) != HASH_SIZE:
        raise ValueError("the root hash is not 32 bytes")
    issued = next((line[len(ISSUED_PREFIX) :] for line in lines[3:-1] if line.startswith(ISSUED_PREFIX)), None)
    return Checkpoint(origin, int(size_text), root, issued)


def verify_signed_note(note: str, public_key_pem: str) -> Checkpoint:
    """Check a signed checkpoint against the instance's public key and return what it says.

    Raises ValueError naming the problem when the note is malformed or no signature by this key
    verifies (signatures by other keys, e.g. witnesses, are ignored as the format requires).
    """
    separator = note.rfind("\n\n")
    if separator < 0:
        raise ValueError("not a signed note: no blank line before the signatures")
    text, signature_block = note[: separator + 1], note[separator + 2 :]
    checkpoint = parse_checkpoint_text(text)
    raw_key = ed25519_raw_public_key(public_key_pem)
    expected_hash = note_key_hash(checkpoint.origin, raw_key)
    public_key = ed25519.Ed25519PublicKey.from_public_bytes(raw_key)
    for line in signature_block.split("\n"):
        if not line:
            continue
        prefix = "\u2014 "
        name, _, blob = line[len(prefix) :].partition(" ")
        if not line.startswith(prefix) or not blob:
            raise ValueError(f"malformed signature line {line!r}")
        try:
            decoded = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise ValueError("a signature is not base64") from None
        if name != checkpoint.origin or decoded[:4] != expected_hash:
            continue  # someone else's signature
        try:
            public_key.verify(decoded[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise ValueError("the checkpoint signature does not verify with this public key") from None
        return checkpoint
    raise ValueError("the checkpoint carries no signature by this public key")


def tree_head_signature_valid(head: SignedTreeHead, public_key_pem: str) -> bool:
    try:
        checkpoint = verify_signed_note(head.signed_note, public_key_pem)
    except ValueError:
        return False
    return checkpoint.tree_size == head.tree_size and checkpoint.root_hash == head.root_hash


# --- proof bundles: what `aperture audit prove` prints and `check-proof` checks offline ------


def tree_head_json(head: SignedTreeHead) -> dict[str, Any]:
    return {
        "origin": head.origin,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "issued_at": head.issued_at,
        "key_id": head.key_id,
        "checkpoint": head.signed_note,
    }


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """The audit path of one event, with the event as one reader may see it (`event_json`)."""

    event: dict[str, Any]
    leaf_hash: bytes  # as stored in the tree
    tree_size: int
    root_hash: bytes
    path: tuple[bytes, ...]
    tree_head: SignedTreeHead | None  # the signed head at tree_size, when one was issued

    def to_json(self) -> dict[str, Any]:
        return {
            "type": INCLUSION_BUNDLE,
            "leaf_index": self.event["leaf_index"],
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root_hash": self.root_hash.hex(),
            "proof": [p.hex() for p in self.path],
            "event": self.event,
            "tree_head": tree_head_json(self.tree_head) if self.tree_head else None,
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    path: tuple[bytes, ...]
    first_tree_head: SignedTreeHead | None
    second_tree_head: SignedTreeHead | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": CONSISTENCY_BUNDLE,
            "first": self.first,
            "second": self.second,
            "first_root": self.first_root.hex(),
            "second_root": self.second_root.hex(),
            "proof": [p.hex() for p in self.path],
            "first_tree_head": tree_head_json(self.first_tree_head) if self.first_tree_head else None,
            "second_tree_head": tree_head_json(self.second_tree_head) if self.second_tree_head else None,
        }


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class BundleCheck:
    kind: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)


def _hash_from_hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} is not hex") from None
    if len(raw) != HASH_SIZE:
        raise ValueError(f"{what} is not 32 bytes")
    return raw


def _int_field(bundle: Mapping[str, Any], name: str) -> int:
    value = bundle.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a non-negative integer")
    return value


def _check_head(head: Any, size: int, root: bytes, public_key_pem: str, label: str) -> list[Check]:
    if not isinstance(head, Mapping) or not isinstance(head.get("checkpoint"), str):
        return [
            Check(
                f"{label} signed",
                False,
                f"no signed tree head at size {size} in the bundle: the root is only the server's word",
            )
        ]
    try:
        checkpoint = verify_signed_note(head["checkpoint"], public_key_pem)
    except ValueError as error:
        return [Check(f"{label} signed", False, str(error))]
    checks = [Check(f"{label} signed", True, f"checkpoint signed by {checkpoint.origin} at {checkpoint.issued_at}")]
    matches = checkpoint.tree_size == size and checkpoint.root_hash == root
    detail = (
        f"size {size}, root {root.hex()[:16]}..."
        if matches
        else f"the checkpoint commits to size {checkpoint.tree_size} root {checkpoint.root_hash.hex()[:16]}..., "
        f"the bundle claims size {size} root {root.hex()[:16]}..."
    )
    checks.append(Check(f"{label} matches", matches, detail))
    return checks


def _check_event(event: Mapping[str, Any], leaf: bytes, index: int) -> list[Check]:
    """The event in a bundle hashes to the leaf, and each field it discloses to its commitment."""
    name = "event hashes to the leaf"
    try:
        recomputed = leaf_hash(event_leaf_data(event))
    except (ValueError, KeyError, TypeError) as error:
        detail = str(error) if isinstance(error, ValueError) else f"malformed event ({error!r})"
        return [Check(name, False, f"leaf {index}: {detail}")]
    described = (
        f"leaf {index}: {event.get('action')} on {shown_text(event.get('resource'))} "
        f"by {shown_text(event.get('actor'))}"
    )
    checks = [Check(name, recomputed == leaf and event.get("leaf_index") == index, described)]
    disclosed = event.get("disclosed")
    if disclosed:
        problems = check_disclosed(event)
        labels = ", ".join(sorted(disclosed)) if isinstance(disclosed, Mapping) else ""
        checks.append(
            Check(
                "disclosed fields match the leaf",
                not problems,
                "; ".join(problems) or f"the fields withheld as {labels} proved against their commitments",
            )
        )
    return checks


def check_bundle(bundle: Mapping[str, Any], public_key_pem: str) -> BundleCheck:
    """Check a saved proof bundle offline against the instance's Ed25519 public key (PEM).

    Inclusion: the event's fields hash to the leaf hash, the audit path leads from it to the
    root, and a checkpoint signed by the key commits to that root at that size. Consistency: the
    proof links the two roots, and both are committed to by signed checkpoints.
    """
    kind = bundle.get("type")
    checks: list[Check] = []
    try:
        proof = [_hash_from_hex(p, f"proof[{i}]") for i, p in enumerate(bundle.get("proof") or [])]
        if kind == INCLUSION_BUNDLE:
            index, size = _int_field(bundle, "leaf_index"), _int_field(bundle, "tree_size")
            leaf = _hash_from_hex(bundle.get("leaf_hash"), "leaf_hash")
            root = _hash_from_hex(bundle.get("root_hash"), "root_hash")
            event = bundle.get("event")
            if isinstance(event, Mapping):
                checks.extend(_check_event(event, leaf, index))
            included = verify_inclusion(leaf, index, size, proof, root)
            checks.append(
                Check("inclusion proof", included, f"leaf {index} in the tree of size {size} ({len(proof)} hashes)")
            )
            checks.extend(_check_head(bundle.get("tree_head"), size, root, public_key_pem, "tree head"))
        elif kind == CONSISTENCY_BUNDLE:
            first, second = _int_field(bundle, "first"), _int_field(bundle, "second")
            first_root = _hash_from_hex(bundle.get("first_root"), "first_root")
            second_root = _hash_from_hex(bundle.get("second_root"), "second_root")
            consistent = verify_consistency(first, second, first_root, second_root, proof)
            checks.append(
                Check(
                    "consistency proof", consistent, f"size {first} is a prefix of size {second} ({len(proof)} hashes)"
                )
            )
            checks.extend(_check_head(bundle.get("first_tree_head"), first, first_root, public_key_pem, "first head"))
            checks.extend(
                _check_head(bundle.get("second_tree_head"), second, second_root, public_key_pem, "second head")
            )
        else:
            checks.append(Check("bundle type", False, f"unknown bundle type {kind!r}"))
    except (ValueError, KeyError, TypeError) as error:
        checks.append(Check("bundle format", False, str(error)))
    return BundleCheck(str(kind), tuple(checks))


# --- verifying the whole log ----------------------------------------------------------------


class ProblemKind(StrEnum):
    GAP = "gap"  # leaf indices are not contiguous: rows were deleted
    LEAF = "leaf"  # a row's fields no longer hash to its stored leaf hash: the row was edited
    ROOT = "root"  # the recomputed tree differs from a signed tree head: rows edited, moved or deleted
    TRUNCATED = "truncated"  # a signed tree head covers more leaves than the log has
    SIGNATURE = "signature"  # a stored tree head's signature does not verify
    NODE = "node"  # a stored subtree hash differs from the recomputed one
    PRIVATE = "private"  # a withheld value or its salt no longer matches the leaf's commitment
    NO_HEAD = "no_head"  # events but no signed head covering them, or signed heads deleted
    CHECKPOINT = "checkpoint"  # the log differs from a checkpoint kept outside the instance
    UNSIGNED = "unsigned"  # (warning) leaves after the latest signed head: nothing commits to them yet
    STALE_HEAD = "stale_head"  # (warning) the latest signed head is older than it should be


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    where: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "where": self.where, "message": self.message}


@dataclass(frozen=True, slots=True)
class VerificationReport:
    tree_size: int  # rows read
    root_hash: bytes
    heads_checked: int
    nodes_checked: int
    problems: tuple[Problem, ...]
    problems_not_listed: int
    signed_size: int = 0  # leaves covered by the latest signed head
    warnings: tuple[Problem, ...] = ()
    checkpoints_checked: int = 0
    private_checked: int = 0  # commitments opened with the private half

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "signed_size": self.signed_size,
            "unsigned_leaves": self.tree_size - self.signed_size,
            "root_hash": self.root_hash.hex(),
            "heads_checked": self.heads_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "private_checked": self.private_checked,
            "problems": [p.to_json() for p in self.problems],
            "problems_not_listed": self.problems_not_listed,
            "warnings": [w.to_json() for w in self.warnings],
        }


# One stored row as the verifier reads it, in this order: leaf_index, event_id, occurred_at,
# actor, action, resource, details (canonical JSON text), leaf_hash, schema_version, the
# commitments (JSON text or None) and the private half (PRIVATE_FORMAT or None). Version 2 rows
# hold actor and resource as their leaf members' JSON text; version 1 rows as plain text.
LeafRecord = tuple[int, str, str, str, str, str, str, bytes, int, str | None, str | None]


def _utc(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class LogVerifier:
    """Recomputes the whole tree from the rows and compares it with everything committed to.

    Feed it every row in leaf-index order (`add_rows`, in batches), then `finish()`. It checks:
    each row's fields hash to its stored leaf hash; each withheld value and salt still hash to
    the commitment in its leaf; indices run 0, 1, 2, ... without gaps; the root at each signed
    tree head's size equals the signed root; each head's signature verifies with the instance
    key; each stored subtree hash equals the recomputed one (which narrows a moved or replaced
    row down to a 16-leaf tile); the root at each external checkpoint's size equals its root.
    `finish` also reports what nothing signed covers: leaves after the latest head (a warning),
    no head at all, and a latest head older than `max_head_age` (a warning).
    """

    def __init__(
        self,
        tree_heads: Sequence[SignedTreeHead],
        public_key_pem: str,
        stored_nodes: Mapping[tuple[int, int], bytes],
        max_problems: int = 100,
        checkpoints: Sequence[Checkpoint] = (),
    ) -> None:
        self._heads = {head.tree_size: head for head in tree_heads}
        self._public_key_pem = public_key_pem
        self._stored_nodes = stored_nodes
        self._max_problems = max_problems
        self._problems: list[Problem] = []
        self._not_listed = 0
        self._expected = 0
        self._heads_checked = 0
        self._nodes_checked = 0
        self._private_checked = 0
        self._last_good_head = 0
        self._checkpoints: dict[int, list[Checkpoint]] = {}
        for checkpoint in checkpoints:
            self._checkpoints.setdefault(checkpoint.tree_size, []).append(checkpoint)
        # The right edge of the tree so far, as in TreeAccumulator (inlined in add_rows for speed).
        self._edge: list[bytes] = []
        self._size = 0
        if 0 in self._heads:
            self._check_head(self._heads[0], EMPTY_ROOT)
        self._check_checkpoints(0, EMPTY_ROOT)

    def _problem(self, kind: ProblemKind, where: str, message: str) -> None:
        if len(self._problems) < self._max_problems:
            self._problems.append(Problem(kind, where, message))
        else:
            self._not_listed += 1

    def _check_node(self, level: int, index: int, value: bytes) -> None:
        stored = self._stored_nodes.get((level, index))
        if stored is None:
            return
        self._nodes_checked += 1
        if stored != value:
            first, last = index << level, ((index + 1) << level) - 1
            self._problem(
                ProblemKind.NODE,
                f"leaves {first}-{last}",
                f"the stored subtree hash (level {level}, index {index}) differs from the one recomputed "
                f"from the rows: a row in leaves {first}-{last} was changed, moved or replaced after it was stored",
            )

    def _check_head(self, head: SignedTreeHead, root: bytes) -> None:
        self._heads_checked += 1
        where = f"tree head at size {head.tree_size} (issued {head.issued_at})"
        if not tree_head_signature_valid(head, self._public_key_pem):
            self._problem(ProblemKind.SIGNATURE, where, "the signature does not verify with the instance key")
        if root != head.root_hash:
            self._problem(
                ProblemKind.ROOT,
                where,
                f"the root recomputed from the rows ({root.hex()[:16]}...) differs from the signed root "
                f"({head.root_hash.hex()[:16]}...): a leaf in {self._last_good_head}-{head.tree_size - 1} was "
                "edited, moved, inserted or deleted",
            )
        else:
            self._last_good_head = head.tree_size

    def _check_checkpoints(self, size: int, root: bytes) -> None:
        for checkpoint in self._checkpoints.get(size, ()):
            if root != checkpoint.root_hash:
                self._problem(
                    ProblemKind.CHECKPOINT,
                    f"checkpoint at size {size} (issued {checkpoint.issued_at})",
                    f"the log's first {size} leaves no longer have the root this checkpoint signed "
                    f"({checkpoint.root_hash.hex()[:16]}..., recomputed {root.hex()[:16]}...): leaves it covered "
                    "were rewritten, moved or deleted since it was saved",
                )

    def _private_problem(self, index: int, what: str) -> None:
        self._problem(
            ProblemKind.PRIVATE,
            f"leaf {index}",
            f"{what} no longer hash to the commitment in the leaf: the private half of the event (a value "
            "or the salt) was edited or moved",
        )

    def add_rows(self, rows: Iterable[LeafRecord]) -> None:
        # The hot loop of `aperture audit verify` (a million rows in a few seconds): locals only,
        # the leaf encodings of leaf_data_from_members / _from_fields and the merge of
        # TreeAccumulator.add inlined.
        heads, edge, size, expected = self._heads, self._edge, self._size, self._expected
        checkpoints, private_checked, fromhex = self._checkpoints, self._private_checked, bytes.fromhex
        sha256, enc, stride = hashlib.sha256, encode_basestring, STRIDE
        for row in rows:
            index, event_id, occurred_at, actor, action, resource, details, stored_hash, version, sealed, private = row
            if index != expected:
                self._gap(expected, index)
                expected = index
            try:
                if version == 2:
                    tail = "" if sealed is None else f',"withheld":{sealed}'
                    text = (
                        f'\x00{{"action":{enc(action)},"actor":{actor},"at":{enc(occurred_at)},"details":{details},'
                        f'"id":{enc(event_id)},"resource":{resource},"v":2{tail}}}'
                    )
                else:
                    text = (
                        f'\x00{{"action":{enc(action)},"actor":{enc(actor)},"at":{enc(occurred_at)},'
                        f'"details":{details},"id":{enc(event_id)},"resource":{enc(resource)},"v":{int(version)}}}'
                    )
                recomputed = sha256(text.encode()).digest()
            except (TypeError, ValueError):  # a field of the wrong type: written outside Aperture
                recomputed = sha256(b"\x00" + repr((event_id, occurred_at, actor, action, resource)).encode()).digest()
            if recomputed != stored_hash:
                self._problem(
                    ProblemKind.LEAF,
                    f"leaf {index}",
                    f"the row's fields (event {event_id}, {action}) no longer hash to its stored leaf hash: the "
                    "row was edited",
                )
            elif private is not None:  # each label's fields and salt still open the leaf's commitment
                try:
                    for line in private.split("\n")[1:]:
                        label, salt, group = line.split("\t", 2)
                        opening = f'"{label}":"{sha256(fromhex(salt) + group.encode()).hexdigest()}"'
                        if sealed is None or opening not in sealed:
                            self._private_problem(index, f"the fields withheld as {label}")
                            break
                        private_checked += 1
                except (ValueError, TypeError):
                    self._private_problem(index, "the fields of its private half (unreadable)")
            edge.append(recomputed)
            size += 1
            bits, level = size, 0
            while not bits & 1:  # each trailing zero bit of the size completes a perfect subtree
                right = edge.pop()
                edge[-1] = sha256(b"\x01" + edge[-1] + right).digest()
                bits >>= 1
                level += 1
                if level % stride == 0:
                    self._check_node(level, (size >> level) - 1, edge[-1])
            expected += 1
            if size in heads:
                self._check_head(heads[size], fold_subtrees(edge))
            if size in checkpoints:
                self._check_checkpoints(size, fold_subtrees(edge))
        self._size, self._expected, self._private_checked = size, expected, private_checked

    def _gap(self, expected: int, index: int) -> None:
        self._problem(
            ProblemKind.GAP,
            f"leaf {expected}",
            f"leaf indices jump from {expected - 1} to {index}: {index - expected} row(s) missing (deleted) "
            f"before leaf {index}"
            if index > expected
            else f"leaf index {index} appears out of order after {expected - 1}",
        )

    def finish(self, now: datetime | None = None, max_head_age: timedelta | None = None) -> VerificationReport:
        size = self._size
        for head_size in sorted(s for s in self._heads if s > size):
            self._problem(
                ProblemKind.TRUNCATED,
                f"tree head at size {head_size}",
                f"a signed tree head commits to {head_size} leaves but only {size} rows are left: rows were deleted",
            )
        for checkpoint_size in sorted(s for s in self._checkpoints if s > size):
            self._problem(
                ProblemKind.CHECKPOINT,
                f"checkpoint at size {checkpoint_size}",
                f"a checkpoint kept outside the instance commits to {checkpoint_size} leaves but only {size} rows "
                "are left: leaves it covered were deleted",
            )
        for level, index in sorted(self._stored_nodes):
            if ((index + 1) << level) > size:
                self._problem(
                    ProblemKind.NODE,
                    f"level {level} index {index}",
                    f"a stored subtree hash covers leaves up to {((index + 1) << level) - 1} but only {size} rows "
                    "are left: rows were deleted",
                )
        signed = [head for head in self._heads.values() if head.tree_size <= size]
        latest = max(signed, key=lambda head: head.tree_size, default=None)
        signed_size = latest.tree_size if latest is not None else 0
        warnings = self._coverage(size, latest, now, max_head_age)
        return VerificationReport(
            tree_size=size,
            root_hash=fold_subtrees(self._edge),
            heads_checked=self._heads_checked,
            nodes_checked=self._nodes_checked,
            problems=tuple(self._problems),
            problems_not_listed=self._not_listed,
            signed_size=signed_size,
            warnings=tuple(warnings),
            checkpoints_checked=sum(len(found) for found in self._checkpoints.values()),
            private_checked=self._private_checked,
        )

    def _coverage(
        self, size: int, latest: SignedTreeHead | None, now: datetime | None, max_head_age: timedelta | None
    ) -> list[Problem]:
        """What nothing signed covers: a missing head is a problem, an unsigned tail and an old
        head are warnings (the server signs every few minutes, so a short tail is normal)."""
        warnings: list[Problem] = []
        signed_size = latest.tree_size if latest is not None else 0
        covered_by_nodes = max((((index + 1) << level) for level, index in self._stored_nodes), default=0)
        if covered_by_nodes > signed_size:
            self._problem(
                ProblemKind.NO_HEAD,
                f"leaves {signed_size}-{covered_by_nodes - 1}",
                f"stored subtree hashes cover leaves up to {covered_by_nodes - 1}, which are stored only when a "
                f"head is signed, but the latest signed head covers {signed_size}: signed tree heads were deleted",
            )
        if size and latest is None:
            self._problem(
                ProblemKind.NO_HEAD,
                "tree head",
                f"the log has {size} events but no signed tree head: nothing commits the instance to them, so "
                "they could be rewritten or deleted unnoticed (run `aperture audit head`; if heads were "
                "signed before, they were deleted)",
            )
        elif size > signed_size:
            warnings.append(
                Problem(
                    ProblemKind.UNSIGNED,
                    f"leaves {signed_size}-{size - 1}",
                    f"{size - signed_size} event(s) after the latest signed tree head (size {signed_size}) are not "
                    "covered by any signature yet: until a head is signed, they could be rewritten or deleted "
                    "unnoticed (`aperture audit head` signs them)",
                )
            )
        if latest is not None and now is not None and max_head_age is not None and size > signed_size:
            issued = _utc(latest.issued_at)
            if issued is not None and now - issued > max_head_age:
                warnings.append(
                    Problem(
                        ProblemKind.STALE_HEAD,
                        f"tree head at size {signed_size}",
                        f"the latest signed tree head was issued at {latest.issued_at}, more than "
                        f"{max_head_age} ago, and events were appended since: is the server signing heads "
                        "(APERTURE_TREE_HEAD_INTERVAL_S)?",
                    )
                )
        return warnings
