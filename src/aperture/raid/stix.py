"""STIX 2.1: RAID items as bundles (incident-core extension, official TLP 2.0 markings), and partners'
bundles read back with every marking checked.

Built with `stix2` (OASIS) and validated with `stix2-validator` 3.2.0, which bundles the STIX 2.1 JSON
schemas (3.3.1 ships without them). Neither checks an extension's content, so the incident-core
extension is registered with `stix2` as a custom extension with its enumerations and ranges: a bad
`determination` or a `criticality` over 100 is refused on the way out and on the way in.

On import a bundle is refused, whole, when it holds an object type STIX 2.1 does not define, a
marking definition that claims to be TLP under a wrong id or with a wrong name or level (a forged
TLP), a reference to a marking it neither defines nor is an official TLP id, or an object marked
with two different TLP labels. TLP 1.0 ids are read as their TLP 2.0 labels (WHITE -> CLEAR).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aperture.core.errors import IntegrityFailure, InvalidInput, TooLarge
from aperture.raid.domain import Determination, Incident, Status
from aperture.raid.tlp import BY_MARKING_ID, LEGACY_MARKING_IDS, MARKING_IDS, TLP2_EXTENSION_ID, Tlp, marking_definition

INCIDENT_CORE = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
NAMESPACE = uuid.UUID("6f0c5f5e-5b8f-4d49-9a7e-3c1f3a2b7d10")  # Aperture's namespace for deterministic STIX ids
MAX_OBJECTS = 20_000
INVESTIGATION = {
    Status.NEW: "new",
    Status.CLOSED: "closed",
    Status.DECLINED: "closed",
    Status.MERGED: "closed",
    Status.DUPLICATE: "closed",
    Status.RESOLVED: "closed",
}
LEGACY_LEVEL = {Tlp.CLEAR: "white", Tlp.GREEN: "green", Tlp.AMBER: "amber", Tlp.RED: "red"}


# stix2 and stix2-validator are imported where a bundle is built or read: they take a fifth of a
# second to load, which every CLI command would otherwise pay.


@functools.cache
def known_types() -> frozenset[str]:
    """The object types STIX 2.1 defines (domain, relationship and cyber-observable objects)."""
    import stix2

    return frozenset(set(stix2.v21.OBJ_MAP) - {"bundle"}) | frozenset(stix2.v21.OBJ_MAP_OBSERVABLE)


@functools.cache
def incident_core() -> type:
    """Register the incident-core extension with stix2 once (its enumerations and ranges)."""
    import stix2
    from stix2.properties import EnumProperty, IntegerProperty, ListProperty, OpenVocabProperty, StringProperty

    @stix2.v21.CustomExtension(
        INCIDENT_CORE,
        [
            ("extension_type", StringProperty(required=True, fixed="property-extension")),
            ("determination", EnumProperty([d.value for d in Determination], required=True)),
            ("investigation_status", OpenVocabProperty(["closed", "new", "open"], required=True)),
            ("criticality", IntegerProperty(min=0, max=100)),
            ("detection_methods", ListProperty(StringProperty)),
            ("incident_types", ListProperty(StringProperty)),
            ("scores", ListProperty(stix2.properties.DictionaryProperty)),
        ],
    )
    class IncidentCore:
        pass

    return IncidentCore


def stix_id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, key)}"


def html_safe(text: str) -> str:
    """JSON with `<`, `>` and `&` written as \\u escapes: the same data, inert if pasted into a page."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _incident_object(incident: Incident, desk_id: str) -> dict[str, Any]:
    assessment = incident.assessment
    core: dict[str, Any] = {
        "extension_type": "property-extension",
        "determination": (assessment.determination if assessment else Determination.SUSPECTED).value,
        "investigation_status": INVESTIGATION.get(incident.status, "open"),
        "detection_methods": [incident.detection.value],
        "scores": [{"name": "OECD severity", "value": incident.severity.rank, "description": incident.severity.value}],
    }
    if incident.severity.criticality is not None:
        core["criticality"] = incident.severity.criticality
    labels = [f"severity:{incident.severity.value}"]
    if assessment is not None:
        if assessment.risk_domain is not None:
            labels.append(f"risk-domain:{assessment.risk_domain.value}")
        if assessment.sector is not None:
            labels.append(f"sector:{assessment.sector.value}")
        if assessment.member_state is not None:
            labels.append(f"member-state:{assessment.member_state}")
        if assessment.dual_use:
            labels.append("dual-use")
    references = [{"source_name": "aperture-raid", "external_id": incident.id}]
    references += [{"source_name": "avid", "external_id": code} for code in (assessment.avid if assessment else ())]
    return {
        "type": "incident",
        "spec_version": "2.1",
        "id": stix_id("incident", incident.id),
        "created": _time(incident.created_at),
        "modified": _time(max(incident.updated_at, incident.created_at)),
        "created_by_ref": desk_id,
        "name": incident.title,
        "description": incident.summary,
        "labels": labels,
        "object_marking_refs": [incident.tlp.marking_id],
        "external_references": references,
        "extensions": {INCIDENT_CORE: core},
    }


def export_bundle(incidents: Sequence[Incident], *, publisher: str, validate: bool = True) -> str:
    """A STIX 2.1 bundle of the incidents, with the official TLP 2.0 marking definitions they use."""
    import stix2
    from stix2.exceptions import STIXError
    from stix2validator import ValidationOptions, validate_parsed_json

    incident_core()
    desk = {
        "type": "identity",
        "spec_version": "2.1",
        "id": stix_id("identity", publisher),
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": publisher,
        "identity_class": "organization",
    }
    labels = sorted({i.tlp for i in incidents}, key=lambda t: t.rank)
    objects: list[dict[str, Any]] = [desk, *(marking_definition(t) for t in labels)]
    objects += [_incident_object(i, desk["id"]) for i in incidents]
    try:
        bundle = stix2.parse(
            {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}, allow_custom=False
        )
    except STIXError as error:
        raise IntegrityFailure(
            f"the STIX export is not valid STIX 2.1: {error}", hint="this is a bug in the export"
        ) from None
    text = bundle.serialize(sort_keys=True)
    if validate:
        results = validate_parsed_json(json.loads(text), ValidationOptions(version="2.1"))
        if not results.is_valid:
            errors = "; ".join(str(e) for r in _results(results) for e in r.errors)[:500]
            raise IntegrityFailure(
                f"the STIX export fails stix2-validator: {errors}", hint="this is a bug in the export"
            )
    return html_safe(text)


def _results(results: Any) -> Iterable[Any]:
    return results if isinstance(results, list) else [results]


# --- import -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportedIncident:
    stix_id: str
    name: str
    description: str
    tlp: Tlp | None  # None: unmarked (the desk applies its default)
    created: datetime
    determination: Determination
    producer: str | None  # the identity's name the bundle says created it


def _refuse(problem: str, hint: str = "fix the bundle and send it again; nothing was imported") -> InvalidInput:
    return InvalidInput(f"the STIX bundle is refused: {problem}", hint=hint)


def _tlp_of_definition(item: Mapping[str, Any]) -> Tlp | None:
    """The TLP level a marking definition claims, checked against the official id and name; None
    for a non-TLP marking (a statement)."""
    marking_id = str(item.get("id", ""))
    name = item.get("name")
    extension = (item.get("extensions") or {}).get(TLP2_EXTENSION_ID)
    claims_tlp = (
        extension is not None
        or item.get("definition_type") == "tlp"
        or (isinstance(name, str) and name.upper().startswith("TLP:"))
        or marking_id in BY_MARKING_ID
        or marking_id in LEGACY_MARKING_IDS
    )
    if not claims_tlp:
        return None
    if marking_id in BY_MARKING_ID:
        tlp = BY_MARKING_ID[marking_id]
        level = extension.get("tlp_2_0") if isinstance(extension, Mapping) else None
        if name != tlp.label or level != tlp.value:
            raise _refuse(f"a forged TLP marking: {marking_id} is {tlp.label}, the bundle says {name!r} / {level!r}")
        return tlp
    if marking_id in LEGACY_MARKING_IDS:
        tlp = LEGACY_MARKING_IDS[marking_id]
        definition = item.get("definition") or {}
        if item.get("definition_type") != "tlp" or definition.get("tlp") != LEGACY_LEVEL[tlp]:
            raise _refuse(f"a forged TLP 1.0 marking: {marking_id} is not TLP:{LEGACY_LEVEL[tlp].upper()}")
        return tlp
    raise _refuse(
        f"a TLP marking under a wrong id ({marking_id}, named {name!r})",
        hint="use the official TLP 2.0 marking-definition ids (OASIS cti-stix-common-objects)",
    )


def parse_bundle(data: bytes, *, max_bytes: int) -> list[ImportedIncident]:
    """The incidents of a partner's bundle, every marking checked; the whole bundle or nothing."""
    import stix2
    from stix2.exceptions import STIXError
    from stix2validator import ValidationOptions, validate_parsed_json

    if len(data) > max_bytes:
        raise TooLarge(f"the bundle has {len(data)} bytes; at most {max_bytes}", hint="split it into smaller bundles")
    try:
        bundle = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse("it is not UTF-8 JSON") from None
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle" or not isinstance(bundle.get("objects"), list):
        raise _refuse("it is not a STIX bundle (type bundle, with objects)")
    objects = bundle["objects"]
    if len(objects) > MAX_OBJECTS:
        raise TooLarge(f"{len(objects)} objects; at most {MAX_OBJECTS}", hint="split it into smaller bundles")
    definitions: dict[str, Tlp | None] = {}
    for index, item in enumerate(objects):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _refuse(f"object {index} has no type")
        if item["type"] not in known_types():
            raise _refuse(
                f"object {index} has the type {item['type'][:60]!r}, which STIX 2.1 does not define",
                hint="send only STIX 2.1 objects (custom objects are not accepted)",
            )
        if item["type"] == "marking-definition":
            definitions[str(item.get("id"))] = _tlp_of_definition(item)
    official = {**{m: t for t, m in MARKING_IDS.items()}, **LEGACY_MARKING_IDS}
    imported: list[tuple[dict[str, Any], Tlp | None]] = []
    for index, item in enumerate(objects):
        refs = item.get("object_marking_refs") or []
        if not isinstance(refs, list):
            raise _refuse(f"object {index}'s object_marking_refs is not a list")
        levels: set[Tlp] = set()
        for ref in refs:
            if ref in definitions:
                level = definitions[ref]
            elif ref in official:
                level = official[ref]
            else:
                raise _refuse(f"object {index} refers to a marking the bundle does not define ({str(ref)[:80]})")
            if level is not None:
                levels.add(level)
        if len(levels) > 1:
            raise _refuse(f"object {index} carries {len(levels)} different TLP labels", hint="mark each object once")
        if item["type"] == "incident":
            imported.append((item, levels.pop() if levels else None))
    results = validate_parsed_json(bundle, ValidationOptions(version="2.1"))
    if not all(r.is_valid for r in _results(results)):
        errors = "; ".join(str(e) for r in _results(results) for e in r.errors)[:500]
        raise _refuse(f"it is not valid STIX 2.1 ({errors})")
    incident_core()
    try:
        stix2.parse(bundle, allow_custom=False)
    except STIXError as error:
        raise _refuse(f"it is not valid STIX 2.1 ({str(error)[:300]})") from None
    producers = {o.get("id"): o.get("name") for o in objects if o.get("type") == "identity"}
    found: list[ImportedIncident] = []
    for item, level in imported:
        core = (item.get("extensions") or {}).get(INCIDENT_CORE) or {}
        found.append(
            ImportedIncident(
                stix_id=item["id"],
                name=str(item.get("name", "")),
                description=str(item.get("description") or item.get("name", "")),
                tlp=level,
                created=datetime.fromisoformat(str(item["created"]).replace("Z", "+00:00")),
                determination=Determination(core.get("determination", Determination.SUSPECTED.value)),
                producer=producers.get(item.get("created_by_ref")),
            )
        )
    return found
