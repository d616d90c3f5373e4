"""CSAF 2.0 advisories (OASIS Common Security Advisory Framework), validated against the official JSON
schema shipped in `data/csaf/` (see its NOTICE for the source commit and licences).

RAID publishes the `csaf_security_incident_response` profile, which "MAY also be used to convey
information about an incident that is unrelated to the issuing party's own products"; the profile
needs a note of category description, details, general or summary, and an external reference
(CSAF 2.0 section 4). CSAF 2.0 carries TLP 1.0 labels: TLP:CLEAR is written WHITE (a published
advisory is always CLEAR).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from aperture.core.errors import IntegrityFailure
from aperture.raid.disclosure import Advisory
from aperture.raid.stix import html_safe

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

PROFILE = "csaf_security_incident_response"
PROFILE_NOTES = {"description", "details", "general", "summary"}
CVSS_URLS = {
    "https://www.first.org/cvss/cvss-v2.0.json": "cvss-v2.0.json",
    "https://www.first.org/cvss/cvss-v3.0.json": "cvss-v3.0.json",
    "https://www.first.org/cvss/cvss-v3.1.json": "cvss-v3.1.json",
}


def _data(name: str) -> Any:
    return json.loads((resources.files("aperture.raid") / "data" / "csaf" / name).read_text(encoding="utf-8"))


@functools.cache
def validator() -> Draft202012Validator:
    """The official schema, its CVSS references resolved to the shipped copies (no network).

    jsonschema is imported here, not with the module: its format checkers take most of a second
    to load, which every CLI command would otherwise pay."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry()
    for url, name in CVSS_URLS.items():
        registry = registry.with_resource(url, Resource.from_contents(_data(name)))
    schema = _data("csaf_json_schema.json")
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(document: dict[str, Any]) -> list[str]:
    """Schema errors and profile errors, as `path: message` lines (empty when valid)."""
    found = [
        f"/{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in sorted(validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]
    meta = document.get("document", {})
    if meta.get("category") == PROFILE:
        if not any(note.get("category") in PROFILE_NOTES for note in meta.get("notes", [])):
            found.append(
                "/document/notes: the incident-response profile needs a description, details, general or summary note"
            )
        if not any(ref.get("category") == "external" for ref in meta.get("references", [])):
            found.append("/document/references: the incident-response profile needs an external reference")
    return found


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document(
    advisory: Advisory,
    *,
    publisher: str,
    namespace: str,
    severity: str,
    released_at: datetime,
    engine_version: str,
) -> dict[str, Any]:
    notes: list[dict[str, str]] = [{"category": "summary", "title": "Summary", "text": advisory.summary}]
    if advisory.remediation:
        notes.append({"category": "general", "title": "Remediation", "text": advisory.remediation})
    if advisory.early is not None:
        notes.append(
            {
                "category": "general",
                "title": "Published before the embargo ended",
                "text": f"By a recorded decision of {advisory.early.at.date().isoformat()}: {advisory.early.reason}",
            }
        )
    released = _time(released_at)
    base = namespace.rstrip("/")
    return {
        "document": {
            "category": PROFILE,
            "csaf_version": "2.0",
            "publisher": {"category": "coordinator", "name": publisher, "namespace": namespace},
            "title": advisory.title,
            "lang": "en",
            "distribution": {
                "text": "TLP:CLEAR (TLP 2.0); CSAF 2.0 writes it as TLP:WHITE.",
                "tlp": {"label": "WHITE", "url": "https://www.first.org/tlp/"},
            },
            "aggregate_severity": {"namespace": "https://oecd.ai/en/incidents-methodology", "text": severity},
            "notes": notes,
            "references": [
                {
                    "category": "external",
                    "summary": "The RAID desk's advisory page",
                    "url": f"{base}/raid/advisories/{advisory.id}",
                }
            ],
            "tracking": {
                "id": f"aperture-raid-{advisory.id}",
                "status": "final",
                "version": "1",
                "initial_release_date": released,
                "current_release_date": released,
                "revision_history": [{"date": released, "number": "1", "summary": "Initial publication."}],
                "generator": {"engine": {"name": "Aperture", "version": engine_version}, "date": released},
            },
        }
    }


def render(document_: dict[str, Any]) -> str:
    """The document as JSON, refused if it does not validate (our own output: a bug)."""
    errors = problems(document_)
    if errors:
        raise IntegrityFailure("the CSAF advisory does not validate: " + "; ".join(errors[:5]), hint="this is a bug")
    return html_safe(json.dumps(document_, indent=2, sort_keys=True, ensure_ascii=False))
