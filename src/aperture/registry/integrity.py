"""Is a version's record still what was signed and logged? The checks behind `models verify`.

Everything but the re-hash of the files: the signature is valid and names this version, the
signed manifest lists exactly the recorded files (and the signed facts), the recorded manifest
digest is the signed one, the facts the database holds now are the signed facts, and the signed
facts' digest is the one the registration event recorded in the transparency log (an event whose
content still hashes to its leaf of the tree). A security level that differs from the signed one
passes only when the log holds the reclassification that explains it.

Versions registered before facts were signed (schema revision 0007) have no facts document: the
facts their lower-tier registration event recorded (licence, compute, parameters, lineage,
manifest digest) are compared instead, and their facts are reported as unsigned until
`aperture models sign-facts` signs them after review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aperture.access.domain import AssetKind, AssetRef, SecurityLevel
from aperture.access.service import AccessService
from aperture.audit.domain import AuditEvent
from aperture.audit.service import AuditLog
from aperture.core.errors import IntegrityFailure, NotFound
from aperture.registry.domain import (
    FACTS_FILE,
    FactsStatus,
    ModelVersion,
    compare_facts,
    compare_with_event,
    fact_values,
    facts_binding,
    read_facts,
)
from aperture.vault.domain import compare_manifest
from aperture.vault.service import VaultService

REGISTERED = "registry.version.registered"
FACTS_SIGNED = "registry.version.facts_signed"
CLASSIFIED = "access.asset.classified"

Problem = tuple[str, str]  # (field, what is wrong)


@dataclass(frozen=True, slots=True)
class FactsCheck:
    status: FactsStatus
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]  # what passed but deserves a word (a reclassification since registration)

    @property
    def fields(self) -> list[str]:
        return list(dict.fromkeys(field for field, _ in self.problems))


def _asset(version: ModelVersion) -> AssetRef:
    return AssetRef(AssetKind.MODEL_VERSION, version.id)


def log_resources(version: ModelVersion) -> list[str]:
    """Every name the log may use for a version: by name (lower tier), by opaque id (upper, canary)."""
    return [f"model:{version.reference}", _asset(version).audit_resource]


class VersionIntegrity:
    def __init__(self, audit: AuditLog, access: AccessService, vault: VaultService) -> None:
        self.audit = audit
        self.access = access
        self.vault = vault

    def classification_of(self, version: ModelVersion) -> tuple[SecurityLevel | None, str | None]:
        found = self.access.classification(_asset(version))  # the row itself, not a cached copy
        return (None, None) if found is None else (found.level, found.programme)

    def check(self, version: ModelVersion) -> FactsCheck:
        """Every check but the re-hash. An invalid signature raises at once (nothing else can be
        trusted); everything else is collected, so one report names every altered field."""
        signed = self.vault.verify_signature(version.signature)
        problems: list[Problem] = []
        notes: list[str] = []
        if signed.model_name != version.reference:
            problems.append(("binding", f"the signature belongs to {signed.model_name}, not to {version.reference}"))
        recorded = {f.path: f.sha256 for f in version.files}
        if version.facts_digest is not None:
            recorded[FACTS_FILE] = version.facts_digest
        differences = compare_manifest(signed, recorded)
        if version.signed_facts is None and FACTS_FILE in signed.files:
            problems.append(("signed_facts", "the signature covers signed facts that the database no longer holds"))
            differences = [d for d in differences if not d.startswith(FACTS_FILE)]
        if differences:
            problems.append(("files", "the signed manifest differs from the registry: " + "; ".join(differences[:5])))
        if version.signing_key_id != self.vault.keys.artifact_key_id:
            problems.append(
                (
                    "signing_key_id",
                    f"signing_key_id is {version.signing_key_id} in the database; the signature is by "
                    f"{self.vault.keys.artifact_key_id}",
                )
            )
        if signed.root_digest != version.manifest_digest:
            problems.append(
                (
                    "manifest_digest",
                    f"manifest_digest is {version.manifest_digest} in the database, {signed.root_digest} where signed",
                )
            )
        level, programme = self.classification_of(version)
        current = fact_values(version, level, programme)
        if version.signed_facts is None:
            problems += self._unsigned(version, current)
            return FactsCheck(FactsStatus.UNSIGNED, tuple(problems), ())
        try:
            signed_facts = read_facts(version.signed_facts)
        except IntegrityFailure as failure:
            problems.append(("signed_facts", failure.message))
            return FactsCheck(FactsStatus.SIGNED, tuple(problems), ())
        binding = facts_binding(signed_facts, version)
        if binding is not None:
            problems.append(("binding", binding))  # the other fields are another version's: not compared
        else:
            differences_of_facts = compare_facts(signed_facts, current)
            if any(name.startswith("security.") for name, _ in differences_of_facts):
                note = self._reclassified(version, signed_facts, level, programme)
                if note is not None:
                    notes.append(note)
                    differences_of_facts = [p for p in differences_of_facts if not p[0].startswith("security.")]
            problems += differences_of_facts
            problems += self._facts_event(version)
        return FactsCheck(FactsStatus.SIGNED, tuple(problems), tuple(notes))

    # --- the log's side -------------------------------------------------------------------

    def _event(self, leaf: int, what: str) -> AuditEvent | Problem:
        try:
            return self.audit.checked_event(leaf)
        except NotFound:
            return ("registration_event", f"the {what} (log leaf {leaf}) is missing from the log")
        except IntegrityFailure:
            return ("registration_event", f"the {what} (log leaf {leaf}) was changed after it was logged")

    def _facts_event(self, version: ModelVersion) -> list[Problem]:
        leaf = version.facts_event
        if leaf is None:
            return [("registration_event", "no registration event is recorded for the signed facts")]
        event = self._event(leaf, "registration event")
        if isinstance(event, tuple):
            return [event]
        if event.action not in (REGISTERED, FACTS_SIGNED) or event.details.get("version_id") != version.id:
            return [("registration_event", f"the event at log leaf {leaf} is not this version's registration")]
        if event.details.get("facts_digest") != version.facts_digest:
            return [
                (
                    "registration_event",
                    f"the signed facts' digest differs from the one the registration event (log leaf {leaf}) recorded",
                )
            ]
        if event.action == REGISTERED and event.actor != version.registered_by:
            return [_registrant(version, event)]
        if event.action == FACTS_SIGNED:
            registered = self.registration_event(version)
            if isinstance(registered, AuditEvent) and registered.details.get("facts_digest") is not None:
                return [
                    (
                        "registration_event",
                        f"the facts were signed at registration (log leaf {registered.leaf_index}) "
                        f"and signed again later (log leaf {leaf})",
                    )
                ]
        return []

    def registration_event(self, version: ModelVersion) -> AuditEvent | Problem | None:
        """The version's registration event, found by a scan of the log (checked against its leaf)."""
        asset = _asset(version).audit_resource
        for event in self.audit.find_events(action=REGISTERED, resources=log_resources(version), limit=100):
            if event.details.get("version_id") == version.id or event.resource == asset:
                return self._event(event.leaf_index, "registration event")
        return None

    def _unsigned(self, version: ModelVersion, current: dict[str, object]) -> list[Problem]:
        """A version without signed facts: compare what its registration event recorded, and
        refuse to pass one whose signed facts were removed (an older signature put back)."""
        problems: list[Problem] = []
        registered = self.registration_event(version)
        if isinstance(registered, tuple):
            problems.append(registered)
        elif registered is not None:
            if registered.details.get("facts_digest") is not None:
                problems.append(
                    (
                        "signed_facts",
                        f"the facts were signed at registration (log leaf {registered.leaf_index}) "
                        "but the database holds none",
                    )
                )
            else:
                if registered.actor != version.registered_by:
                    problems.append(_registrant(version, registered))
                problems += compare_with_event(registered.details, current)
                logged = registered.details.get("manifest_digest")
                if logged is not None and logged != version.manifest_digest:
                    problems.append(
                        (
                            "manifest_digest",
                            f"manifest_digest is {version.manifest_digest} in the database, {logged} when registered",
                        )
                    )
        for event in self.audit.find_events(action=FACTS_SIGNED, resources=log_resources(version), limit=100):
            if event.details.get("version_id") == version.id:
                problems.append(
                    (
                        "signed_facts",
                        f"the facts were signed (log leaf {event.leaf_index}) but the database holds none",
                    )
                )
                break
        return problems

    def _reclassified(
        self,
        version: ModelVersion,
        signed: dict[str, object],
        level: SecurityLevel | None,
        programme: str | None,
    ) -> str | None:
        """A note when the log's latest reclassification since the facts were signed explains the
        level the database holds now; None when nothing in the log does."""
        after = -1 if version.facts_event is None else version.facts_event
        events = self.audit.find_events(
            action=CLASSIFIED, resources=[_asset(version).audit_resource], after=after, limit=1000
        )
        if not events or level is None:
            return None
        latest = self._event(events[-1].leaf_index, "reclassification event")
        if isinstance(latest, tuple):
            return None
        if latest.details.get("level") != str(level) or latest.details.get("programme") != programme:
            return None
        security = signed.get("security")
        was = security.get("level") if isinstance(security, dict) else None
        return f"reclassified from {was} to {level} after its facts were signed (log leaf {latest.leaf_index})"


def _registrant(version: ModelVersion, event: AuditEvent) -> Problem:
    return (
        "registered_by",
        f"registered_by is {version.registered_by!r} in the database, {event.actor!r} in the registration event "
        f"(log leaf {event.leaf_index})",
    )


def describe(problems: Sequence[Problem], limit: int = 8) -> str:
    shown = "; ".join(message for _, message in problems[:limit])
    more = len(problems) - limit
    return shown + (f"; and {more} more" if more > 0 else "")
