"""Use cases of licensing: applications and screening (L1), terms and lifecycle (L2), traceable
copies and leak tracing (L3), diffusion at the end of a programme (L4).

Every change is one transaction with its audit event. Decisions on upper-tier models need two
licensing officers. Suspension and revocation cut access at once: a download token is checked
against the licence when it is used, not only when it is issued, and the hosted gateway serves a
licensed version only to `licensees_in_force` (read into its snapshot, refreshed every few seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aperture.access.domain import SYSTEM, Action, Caller, PrincipalKind
from aperture.access.refusals import ask, ask_instance
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.canonical import canonical_json
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import (
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    NotInitialised,
    Unavailable,
)
from aperture.core.ids import new_id
from aperture.licensing import store
from aperture.licensing.domain import (
    DEFAULT_CHECKLIST,
    LICENCE_TEXT_VERSION,
    MARK_ALPHA,
    MARK_SEED_BYTES,
    MARK_THRESHOLD,
    TOKEN_TTL,
    Answer,
    Application,
    ApplicationStatus,
    Copy,
    CopyFile,
    Funding,
    KeyScore,
    Licence,
    LicenceEvent,
    LicenceState,
    Outcome,
    Ownership,
    Question,
    Receivable,
    Schedule,
    SecurityPosture,
    answer_question,
    collusion_note,
    confirm,
    instalments,
    new_application,
    null_summary,
    parse_checklist,
    propose,
    respond,
    terms_from,
    transition,
    verdict_text,
)
from aperture.registry.domain import ArtifactFile, ModelVersion
from aperture.registry.service import RegistryService, version_asset
from aperture.release.domain import Tier, controls
from aperture.release.service import ReleaseService, redacted_label
from aperture.security.domain import TOKEN_PREFIX, check_token, token_hash
from aperture.vault.keys import verify_ed25519

if TYPE_CHECKING:
    import numpy as np

    from aperture.licensing.weights import SuspectWeights

# numpy, the mark's maths and the weights readers are imported by the methods that mark, trace or
# identify: every other use of the service (and every CLI command, which builds it) goes without.
from aperture.vault.service import VaultService

MASTER = "marks-master"
CLOCK_ACTOR = "licensing-clock"
CATALOGUE_WITHHELD = (
    "the name, version and number of licences: licensed models are stored at SL3 (the upper tier), so only people "
    "cleared for the model's programme see them; vetted applicants see them when signed in"
)
STREAM_CHUNK = 1024 * 1024
SEAL_HINT = (
    "the master secret of the marks lives in the sealed upper tier: run `aperture seal init --custodian NAME ... "
    "--threshold K` first"
)


@dataclass(frozen=True)
class LicensingSettings:
    checklist: tuple[Question, ...] = DEFAULT_CHECKLIST
    alpha: float = MARK_ALPHA
    threshold: float = MARK_THRESHOLD
    null_keys: int = 200
    screen_fraction: float = 0.02
    confirm_top: int = 8
    token_ttl: timedelta = TOKEN_TTL


def load_checklist(path: Path | None) -> tuple[Question, ...]:
    if path is None:
        return DEFAULT_CHECKLIST
    try:
        return parse_checklist(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(
            f"cannot read the screening checklist {path}: {error}", hint="a JSON list of questions"
        ) from None


@dataclass(frozen=True)
class CatalogueEntry:
    """A licensed version and its standard terms; `redacted` entries (upper tier, the caller not
    cleared) carry the public registry's label instead of the name, and withhold the version and
    the number of licences."""

    model: str
    version: str | None
    minimum_security_level: str
    licence_text_version: str
    active_licences: int | None
    redacted: bool = False
    withheld: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; only its hash is kept
    copy_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Download:
    filename: str
    media_type: str
    chunks: Iterator[bytes]


@dataclass
class TraceResult:
    report: dict[str, Any]
    signature: str  # hex Ed25519 over canonical_json(report)
    key_id: str
    trace_id: str


@dataclass
class _Original:
    version: ModelVersion
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    buffers: list[bytearray] = field(default_factory=list)


class LicensingService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        access: AccessService,
        registry: RegistryService,
        vault: VaultService,
        release: ReleaseService,
        config: LicensingSettings | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock
        self.access = access
        self.registry = registry
        self.vault = vault
        self.release = release
        self.config = config or LicensingSettings()

    # --- who is who -------------------------------------------------------------------------

    def _organisation_of(self, caller: Caller) -> str | None:
        if caller.principal in ("system", "anonymous"):
            return None
        try:
            principal = self.access.get_principal(caller.principal)
        except NotFound:
            return None
        return principal.organisation if principal.kind is PrincipalKind.PERSON else None

    def desk(self, caller: Caller) -> bool:
        """Whether the caller is the licensing desk (officers, administrators): for pages' headings;
        every use case decides again."""
        return self.access.decide(caller, Action.VIEW_RECEIVABLES).allowed

    def permits(self, caller: Caller, action: Action, model_version_id: str, *, own: bool = False) -> bool:
        """Whether the access service would let the caller do `action` on the version now (for a
        page's buttons; the use case behind the button decides again). `own`: the record is the
        caller's organisation's."""
        return self.access.decide(
            caller, action, version_asset(model_version_id), facts={"own_organisation": own}
        ).allowed

    def may_download(self, caller: Caller, licence: Licence) -> bool:
        """Whether the caller may download the licence's copies now (a page's download buttons)."""
        return self.access.decide(
            caller,
            Action.DOWNLOAD_LICENSED_COPY,
            version_asset(licence.terms.model_version_id),
            facts={
                "own_organisation": self._organisation_of(caller) == licence.terms.organisation,
                "licence_in_force": licence.in_force(self.clock.now().date()),
            },
        ).allowed

    def _upper(self, model_version_id: str) -> bool:
        """Whether events about the version concern the upper tier (licensed versions are stored at SL3)."""
        found = self.access.lookup(version_asset(model_version_id))
        return found is None or found.level.upper_tier

    def _ask(
        self,
        caller: Caller,
        action: Action,
        model_version_id: str,
        *,
        missing: NotFound,
        message: str,
        hint: str,
        **facts: bool,
    ) -> None:
        """The access service decides; a version the caller may not see raises `missing`."""
        asset = version_asset(model_version_id)
        ask(self.access, caller, action, asset, missing=missing, message=message, hint=hint, facts=facts)

    def _sees(self, caller: Caller, action: Action, model_version_id: str, *, own: bool, purpose: str) -> bool:
        """Reads of records: the caller sees it or it is absent (another organisation's record, a
        version above the caller's clearance, an action the key's scopes leave out all read alike)."""
        asset = version_asset(model_version_id)
        return self.access.authorize(caller, action, asset, purpose=purpose, facts={"own_organisation": own}).allowed

    def _desk(self, caller: Caller, action: Action, message: str) -> None:
        ask_instance(self.access, caller, action, message=message, hint="ask a licensing officer")

    def require_tracer(self, caller: Caller) -> None:
        """Tracing and the reverse question: licensing officers and administrators."""
        self._desk(caller, Action.TRACE_LEAKS, "only licensing officers or administrators trace copies")

    # --- the public catalogue ---------------------------------------------------------------

    def catalogue(self, caller: Caller) -> list[CatalogueEntry]:
        """Model versions in the licensed tier and the standard terms they are offered on.

        Licensed versions are stored at SL3, in the upper tier: a caller cleared for one sees its
        name (vetted applicants, to know what they apply for); everyone else sees it redacted under
        the public registry's label, listed, never omitted, with what is withheld and how to qualify."""
        self.expire_due()
        tiers = self.release.tiers_in_effect()
        with self.database.read() as connection:
            active = store.list_licences(connection, states=(LicenceState.ACTIVE.value,))
        entries: list[CatalogueEntry] = []
        minimum = controls(Tier.LICENSED).minimum_security_level.name
        for summary in self.registry.list_models():
            for version in self.registry.get_model(summary.name).versions:  # listed, not read
                if tiers.get(version.id) is not Tier.LICENSED:
                    continue
                classification = self.registry.classification(version)
                secret = classification is None or classification.level.upper_tier or classification.canary
                asset = version_asset(version.id)
                if secret and not self.access.authorize(caller, Action.VIEW, asset, purpose="list").allowed:
                    entries.append(
                        CatalogueEntry(
                            redacted_label(version),
                            None,
                            minimum,
                            LICENCE_TEXT_VERSION,
                            None,
                            redacted=True,
                            withheld=CATALOGUE_WITHHELD,
                        )
                    )
                    continue
                entries.append(
                    CatalogueEntry(
                        version.model_name,
                        version.version,
                        minimum,
                        LICENCE_TEXT_VERSION,
                        sum(1 for licence in active if licence.terms.model_version_id == version.id),
                    )
                )
        return entries

    # --- applications (L1) ------------------------------------------------------------------

    def apply(
        self,
        caller: Caller,
        reference: str,
        *,
        intended_use: str,
        fields_of_use: list[str],
        territories: list[str],
        claimed_level: int,
        certifications: list[str] | None = None,
        incidents: str = "",
        parent: str | None = None,
        non_eu_control: str | None = None,
        fee_minor: int = 0,
        currency: str = "EUR",
        schedule: str = "annual",
        term_months: int = 24,
    ) -> Application:
        organisation = self._organisation_of(caller)
        if organisation is None:
            raise Forbidden(
                "only people of a registered organisation apply for a licence",
                hint="an administrator registers your organisation and you as its person first",
            )
        # A version the applicant may not see reads exactly like one that does not exist (no tier named).
        version = self.registry.find_version(reference, caller)
        self._ask(
            caller,
            Action.APPLY_LICENCE,
            version.id,
            missing=NotFound(f"no version {reference}", hint="`aperture licensing catalogue` lists what is offered"),
            message="only people of a registered organisation apply for a licence",
            hint="an administrator registers your organisation and you as its person first",
        )
        tier = self.release.tier_of(version.model_name, version.version)
        if tier is not Tier.LICENSED:
            raise Conflict(
                f"{version.reference} is not offered under licence ("
                + ("no release decision yet" if tier is None else f"it is in the {tier.value} tier")
                + ")",
                hint="`aperture licensing catalogue` or GET /api/v1/licensing/catalogue lists the licensable models",
            )
        try:
            parsed_schedule = Schedule(schedule)
        except ValueError:
            raise InvalidInput(f"unknown schedule {schedule!r}", hint="once, annual or quarterly") from None
        classification = self.registry.classification(version)
        now = self.clock.now()
        application = new_application(
            id=new_id(),
            organisation=organisation,
            applicant=caller.principal,
            model_version_id=version.id,
            model=version.reference,
            intended_use=intended_use,
            fields_of_use=fields_of_use,
            territories=[t.strip().upper() for t in territories],
            posture=SecurityPosture(claimed_level, tuple(certifications or ()), incidents.strip()),
            ownership=Ownership(parent or None, (non_eu_control or "").upper() or None),
            funding=Funding(fee_minor, currency.upper(), parsed_schedule),
            term_months=term_months,
            upper_tier=classification is None or classification.level.upper_tier,
            now=now,
        )
        with self.database.transaction() as connection:
            store.insert_application(connection, application)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="licensing.application.submitted",
                resource=f"licensing.application:{application.id}",
                details={"organisation": organisation, "model": version.reference},
                upper_tier=application.upper_tier,
            )
        return application

    def get_application(self, caller: Caller, application_id: str) -> Application:
        """One application: the desk's and the applying organisation's people cleared for its
        version see it; for anyone else it reads exactly like one that does not exist."""
        with self.database.read() as connection:
            application = store.load_application(connection, application_id)
        if application is None or not self._sees(
            caller,
            Action.VIEW_LICENCE_APPLICATION,
            application.model_version_id,
            own=self._organisation_of(caller) == application.organisation,
            purpose="read",
        ):
            raise _no_application(application_id)
        return application

    def list_applications(self, caller: Caller, *, queue: bool = False) -> list[Application]:
        """The applications the caller may see: the desk all (the queue: those waiting for an
        officer), applicants their organisation's; versions above the caller's clearance left out."""
        statuses = (
            (ApplicationStatus.SUBMITTED, ApplicationStatus.SCREENING, ApplicationStatus.AWAITING_SECOND)
            if queue
            else ()
        )
        with self.database.read() as connection:
            found = store.list_applications(connection, statuses=tuple(s.value for s in statuses) or None)
        own = self._organisation_of(caller)
        seen: dict[tuple[str, bool], bool] = {}
        out = []
        for application in found:
            key = (application.model_version_id, application.organisation == own)
            if key not in seen:
                seen[key] = self._sees(
                    caller, Action.VIEW_LICENCE_APPLICATION, key[0], own=key[1] and own is not None, purpose="list"
                )
            if seen[key]:
                out.append(application)
        return out

    def _change(
        self, caller: Caller, before: Application, after: Application, action: str, details: dict[str, Any]
    ) -> Application:
        with self.database.transaction() as connection:
            if not store.update_application(connection, before, after):
                raise Conflict("the application changed meanwhile", hint="reload it and try again")
            self.audit.append(
                connection,
                actor=caller.actor,
                action=action,
                resource=f"licensing.application:{before.id}",
                details=details,
                upper_tier=before.upper_tier,
            )
        return after

    def _screening(self, caller: Caller, application_id: str) -> Application:
        """An application an officer cleared for its version may screen and decide."""
        application = self.get_application(caller, application_id)
        self._ask(
            caller,
            Action.SCREEN_LICENCE_APPLICATION,
            application.model_version_id,
            missing=_no_application(application_id),
            message="only licensing officers do this",
            hint="a person with the licensing_officer role",
        )
        return application

    def screen(
        self,
        caller: Caller,
        application_id: str,
        question: str,
        answer: str,
        note: str = "",
        evidence: list[Path] | None = None,
    ) -> Application:
        """An officer answers one checklist question (pass / fail / needs_review), with optional
        evidence files kept in the artifact store (content-addressed)."""
        application = self._screening(caller, application_id)
        try:
            parsed = Answer(answer)
        except ValueError:
            raise InvalidInput(f"unknown answer {answer!r}", hint="pass, fail or needs_review") from None
        digests = self._store_evidence(application, evidence or [])
        after = answer_question(
            application, self.config.checklist, question, parsed, note, digests, caller.principal, self.clock.now()
        )
        return self._change(
            caller, application, after, "licensing.application.screened", {"question": question, "answer": parsed.value}
        )

    def _store_evidence(self, application: Application, paths: list[Path]) -> tuple[str, ...]:
        if not paths:
            return ()
        for path in paths:
            if not path.is_file():
                raise InvalidInput(f"no evidence file {path}", hint="attach an existing file")
        with self.vault.staging() as staged:
            blobs = self.vault.store(staged, [self.vault.source_file(path, path.name) for path in paths])
            with self.vault.committing(blobs), self.database.transaction() as connection:
                self.vault.reference(connection, f"licensing.application:{application.id}", blobs, self.clock.now())
        return tuple(blob.digest for blob in blobs)

    def checklist(self) -> tuple[Question, ...]:
        return self.config.checklist

    def decide(self, caller: Caller, application_id: str, outcome: str, reasons: str = "") -> Application:
        application = self._screening(caller, application_id)
        try:
            parsed = Outcome(outcome)
        except ValueError:
            raise InvalidInput(f"unknown decision {outcome!r}", hint="approve, reject or request_information") from None
        after = propose(
            application,
            self.config.checklist,
            parsed,
            reasons,
            caller.principal,
            self._organisation_of(caller),
            self.clock.now(),
        )
        action = (
            "licensing.application.approval_proposed"
            if after.status is ApplicationStatus.AWAITING_SECOND
            else f"licensing.application.{after.status.value}"
        )
        return self._change(caller, application, after, action, {"outcome": parsed.value})

    def second_approval(self, caller: Caller, application_id: str) -> Application:
        application = self._screening(caller, application_id)
        after = confirm(application, caller.principal, self._organisation_of(caller), self.clock.now())
        return self._change(
            caller, application, after, "licensing.application.approved", {"approvers": list(after.decided_by)}
        )

    def answer_request(self, caller: Caller, application_id: str, text: str) -> Application:
        application = self.get_application(caller, application_id)
        self._ask(
            caller,
            Action.ANSWER_LICENCE_REQUEST,
            application.model_version_id,
            missing=_no_application(application_id),
            message="only the applying organisation answers",
            hint="sign in as a person of that organisation",
            own_organisation=self._organisation_of(caller) == application.organisation,
        )
        after = respond(application, caller.principal, text, self.clock.now())
        return self._change(caller, application, after, "licensing.application.answered", {})

    # --- licences (L2) ----------------------------------------------------------------------

    def grant_licence(
        self,
        caller: Caller,
        application_id: str,
        *,
        starts_on: date | None = None,
        sublicensing: bool = False,
        minimum_security_level: int | None = None,
    ) -> Licence:
        """Draft terms from an approved application (one licence per application)."""
        application = self.get_application(caller, application_id)
        self._ask(
            caller,
            Action.DRAFT_LICENCE,
            application.model_version_id,
            missing=_no_application(application_id),
            message="only licensing officers do this",
            hint="a person with the licensing_officer role",
        )
        with self.database.read() as connection:
            existing = [
                licence
                for licence in store.list_licences(connection, organisation=application.organisation)
                if licence.application_id == application.id
            ]
        if existing:
            raise Conflict(
                f"application {application.id} already has licence {existing[0].id}", hint="use that licence"
            )
        minimum = minimum_security_level or int(controls(Tier.LICENSED).minimum_security_level)
        if application.posture.claimed_level < minimum:
            raise Conflict(
                f"the applicant claims SL{application.posture.claimed_level}, the licence needs SL{minimum}",
                hint="ask for more information or lower the minimum with a recorded reason",
            )
        now = self.clock.now()
        terms = terms_from(
            application, starts_on=starts_on or now.date(), minimum_security_level=minimum, sublicensing=sublicensing
        )
        licence = Licence(new_id(), application.id, terms, LicenceState.DRAFT, now, now)
        with self.database.transaction() as connection:
            store.insert_licence(connection, licence)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="licensing.licence.drafted",
                resource=f"licensing.licence:{licence.id}",
                details={"terms": terms.as_dict()},
                upper_tier=application.upper_tier,
            )
        return licence

    def get_licence(self, caller: Caller, licence_id: str) -> Licence:
        """One licence: the desk's and the licensee's people cleared for its version see it; for
        anyone else it reads exactly like one that does not exist."""
        self.expire_due()
        with self.database.read() as connection:
            licence = store.load_licence(connection, licence_id)
        if licence is None or not self._sees(
            caller,
            Action.VIEW_LICENCE,
            licence.terms.model_version_id,
            own=self._organisation_of(caller) == licence.terms.organisation,
            purpose="read",
        ):
            raise _no_licence(licence_id)
        return licence

    def list_licences(self, caller: Caller) -> list[Licence]:
        """The licences the caller may see: the desk all, licensees their organisation's."""
        self.expire_due()
        with self.database.read() as connection:
            found = store.list_licences(connection)
        own = self._organisation_of(caller)
        seen: dict[tuple[str, bool], bool] = {}
        out = []
        for licence in found:
            key = (licence.terms.model_version_id, own is not None and licence.terms.organisation == own)
            if key not in seen:
                seen[key] = self._sees(caller, Action.VIEW_LICENCE, key[0], own=key[1], purpose="list")
            if seen[key]:
                out.append(licence)
        return out

    def change_licence(self, caller: Caller, licence_id: str, event: str, reason: str = "") -> Licence:
        """activate / suspend / reinstate / revoke, by the transition table. Suspending and
        revoking cancel every outstanding download token at once; revoking also cancels the
        instalments not yet due."""
        licence = self.get_licence(caller, licence_id)
        self._ask(
            caller,
            Action.MANAGE_LICENCE,
            licence.terms.model_version_id,
            missing=_no_licence(licence_id),
            message="only licensing officers or administrators change licences",
            hint="ask a licensing officer",
        )
        try:
            parsed = LicenceEvent(event)
        except ValueError:
            raise InvalidInput(
                f"unknown licence event {event!r}", hint="activate, suspend, reinstate or revoke"
            ) from None
        if parsed is LicenceEvent.EXPIRE:
            raise InvalidInput("expiry is automatic", hint="licences expire at the end of their term")
        now = self.clock.now()
        after = transition(licence, parsed, now, reason)
        return self._apply(caller.actor, licence, after, parsed, now)

    def _apply(self, actor: str, licence: Licence, after: Licence, event: LicenceEvent, now: datetime) -> Licence:
        with self.database.transaction() as connection:
            if not store.update_licence(connection, licence, after):
                raise Conflict("the licence changed meanwhile", hint="reload it and try again")
            details: dict[str, Any] = {"from": licence.state.value, "to": after.state.value}
            if after.reason and event in (LicenceEvent.SUSPEND, LicenceEvent.REVOKE):
                details["reason"] = after.reason
            if event is LicenceEvent.ACTIVATE:
                receivables = [
                    Receivable(
                        new_id(),
                        licence.id,
                        licence.terms.organisation,
                        due,
                        amount,
                        licence.terms.fee.currency,
                        "open",
                    )
                    for due, amount in instalments(licence.terms)
                ]
                store.insert_receivables(connection, receivables, now)
                details["receivables"] = len(receivables)
            if after.state in (LicenceState.SUSPENDED, LicenceState.REVOKED, LicenceState.EXPIRED):
                copies = [copy.id for copy in store.list_copies(connection, licence_id=licence.id)]
                details["tokens_cancelled"] = store.cancel_tokens(connection, copies, now)
            if after.state is LicenceState.REVOKED:
                details["receivables_cancelled"] = store.cancel_receivables(connection, licence.id, now.date())
            self.audit.append(
                connection,
                actor=actor,
                action=f"licensing.licence.{event.value}",
                resource=f"licensing.licence:{licence.id}",
                details=details,
                upper_tier=self._upper(licence.terms.model_version_id),
            )
        return after

    def expire_due(self) -> list[Licence]:
        """Automatic expiry: every licence past its end date becomes expired (audited). Runs on
        every read of licences, so no scheduler is needed for correctness."""
        now = self.clock.now()
        with self.database.read() as connection:
            due = store.due_to_expire(connection, now.date())
        expired: list[Licence] = []
        for licence in due:
            after = transition(licence, LicenceEvent.EXPIRE, now)
            with contextlib.suppress(Conflict):  # another process expired it first
                expired.append(self._apply(CLOCK_ACTOR, licence, after, LicenceEvent.EXPIRE, now))
        return expired

    def licensees_in_force(self, name: str, version: str) -> frozenset[str]:
        """The organisations holding a licence in force on NAME:VERSION (the gateway serves a
        licensed version only to them; suspension, revocation and expiry drop them at once)."""
        self.expire_due()
        record = self.registry.get_version(name, version)
        today = self.clock.now().date()
        with self.database.read() as connection:
            licences = store.list_licences(connection, model_version_id=record.id, states=(LicenceState.ACTIVE.value,))
        return frozenset(licence.terms.organisation for licence in licences if licence.in_force(today))

    def active_licence(self, organisation: str, name: str, version: str) -> Licence | None:
        """The licence in force for `organisation` on NAME:VERSION, or None: what the hosted
        gateway and the downloads consult (fail closed: draft, suspended, revoked, expired and
        not-yet-started licences give None)."""
        self.expire_due()
        record = self.registry.get_version(name, version)
        today = self.clock.now().date()
        with self.database.read() as connection:
            licences = store.list_licences(
                connection, organisation=organisation, model_version_id=record.id, states=(LicenceState.ACTIVE.value,)
            )
        return next((licence for licence in licences if licence.in_force(today)), None)

    def receivables(self, caller: Caller, licence_id: str | None = None) -> list[Receivable]:
        if licence_id is not None:
            self.get_licence(caller, licence_id)
        else:
            self._desk(caller, Action.VIEW_RECEIVABLES, "only officers see every receivable; name your licence")
        with self.database.read() as connection:
            return store.list_receivables(connection, licence_id)

    # --- the master secret ------------------------------------------------------------------

    def _master(self) -> bytes:
        """The master secret of the marks, sealed in the upper tier: made on first use (writing
        needs only the tier's public key), read back only while the tier is unsealed."""
        try:
            self.vault.require_keyring()
        except NotInitialised:
            raise NotInitialised(
                "the upper tier has no key yet, so the marks have no master secret", hint=SEAL_HINT
            ) from None
        with self.database.read() as connection:
            found = store.load_secret(connection, MASTER)
        if found is None:
            secret = secrets.token_bytes(MARK_SEED_BYTES)
            keyring_id, artifact_id, sealed = self.vault.seal_secret(secret)
            try:
                with self.database.transaction() as connection:
                    store.insert_secret(connection, MASTER, keyring_id, artifact_id, sealed, self.clock.now())
                    self.audit.append(
                        connection,
                        actor=SYSTEM.actor,
                        action="licensing.master_secret.created",
                        resource="licensing.secret:marks-master",
                        details={"keyring_id": keyring_id},
                    )
            except Exception:
                with self.database.read() as connection:
                    found = store.load_secret(connection, MASTER)
                if found is None:
                    raise
            else:
                found = (keyring_id, artifact_id, sealed)
        keyring_id, artifact_id, sealed = found
        return self.vault.open_secret(keyring_id, artifact_id, sealed)

    def _seed(self, master: bytes, copy_model: str, organisation: str) -> bytes:
        from aperture.licensing import marking

        name, _, version = copy_model.partition(":")
        return marking.licensee_seed(master, name, version, organisation)

    # --- traceable copies (L3) --------------------------------------------------------------

    def _original_bytes(self, version: ModelVersion, file: ArtifactFile) -> Iterator[bytes]:
        if self.registry.is_sealed(version):
            sealed = self.vault.sealed_copies(f"registry.version:{version.id}")
            if file.sha256 not in sealed:
                raise IntegrityFailure(f"no sealed copy of {file.path}", hint="restore HOME/sealed from backup")
            return self.vault.open_sealed(sealed[file.sha256])
        return _read_chunks(self.vault.blob_path(file.sha256))

    def _load_original(self, version: ModelVersion) -> _Original:
        from aperture.licensing import marking
        from aperture.licensing.weights import parse_safetensors

        original = _Original(version)
        for file in version.files:
            if not file.path.endswith(".safetensors"):
                continue
            buffer = bytearray(file.size)
            offset = 0
            for chunk in self._original_bytes(version, file):
                buffer[offset : offset + len(chunk)] = chunk
                offset += len(chunk)
            arrays, _ = parse_safetensors(buffer)
            original.buffers.append(buffer)
            for name, array in arrays.items():
                original.arrays[name] = array
        if not marking.marked_names(original.arrays):
            raise InvalidInput(
                f"{version.reference} has no transformer block projections to mark",
                hint="traceable copies are made of Llama-family safetensors models",
            )
        return original

    def issue_copy(self, caller: Caller, licence_id: str) -> Copy:
        """Make the licensee's uniquely marked copy: mark as the copy is streamed into sealed
        storage (never unencrypted on disk), read it back and check the mark (self-test), then
        record the shard hashes and the commitment to the seed in the audit log."""
        import numpy as np

        from aperture.licensing import marking
        from aperture.licensing.weights import iter_safetensors, parse_safetensors, safetensors_stream

        licence = self.get_licence(caller, licence_id)
        self._ask(
            caller,
            Action.ISSUE_LICENSED_COPY,
            licence.terms.model_version_id,
            missing=_no_licence(licence_id),
            message="only licensing officers or administrators make marked copies",
            hint="ask a licensing officer",
        )
        if not licence.in_force(self.clock.now().date()):
            raise Conflict(
                f"the licence is {licence.state.value}", hint="copies are made only under a licence in force"
            )
        master = self._master()
        version = self.registry.find_version(licence.terms.model)
        seed = self._seed(master, version.reference, licence.terms.organisation)
        alpha = self.config.alpha
        copy_id = new_id()
        files: list[CopyFile] = []
        z_total = 0.0
        energy = 0.0
        with self.vault.staging() as staged:
            sealed_blobs = []
            for file in version.files:
                if not file.path.endswith(".safetensors"):
                    files.append(CopyFile(file.path, file.sha256, file.size, False, None))
                    continue
                buffer = bytearray(file.size)
                offset = 0
                for chunk in self._original_bytes(version, file):
                    buffer[offset : offset + len(chunk)] = chunk
                    offset += len(chunk)
                arrays, metadata = parse_safetensors(buffer)
                names = set(marking.marked_names(arrays))

                def mark(name: str, array: np.ndarray, names: set[str] = names) -> np.ndarray:
                    return marking.mark_tensor(name, array, seed, alpha) if name in names else array

                size, chunks = safetensors_stream(arrays, metadata, mark)
                blob = self.vault.seal_stream(staged, chunks, size)
                sealed_blobs.append(blob)
                # Self-test: read the sealed copy back and find the licensee's key in it.
                for name, marked in iter_safetensors(self.vault.open_sealed_blob(blob)):
                    if name in names:
                        vector = marking.residual_vector(name, marked.astype(np.float32), arrays[name])
                        z_total += float(vector @ marking.pattern(seed, name, arrays[name].shape).ravel())
                        energy += float(vector @ vector)
                files.append(CopyFile(file.path, blob.digest, size, True, blob.artifact_id))
                del arrays, buffer
            self_test = z_total / float(np.sqrt(energy)) if energy > 0 else 0.0
            if self_test < self.config.threshold:
                raise IntegrityFailure(
                    f"the marked copy failed its self-test (z = {self_test:.2f} < {self.config.threshold:g})",
                    hint="the weights are too small or too coarse for the mark: raise APERTURE_LICENSING_ALPHA",
                )
            now = self.clock.now()
            copy = Copy(
                id=copy_id,
                licence_id=licence.id,
                organisation=licence.terms.organisation,
                model_version_id=version.id,
                model=version.reference,
                commitment="",
                alpha=alpha,
                self_test_z=round(self_test, 3),
                files=tuple(files),
                created_at=now,
                created_by=caller.actor,
            )
            copy = replace(copy, commitment=marking.seed_commitment(seed, copy.shard_hashes))
            with self.database.transaction() as connection:
                store.insert_copy(connection, copy)
                self.vault.reference_sealed(connection, f"licensing.copy:{copy.id}", sealed_blobs, now)
                self.audit.append(
                    connection,
                    actor=caller.actor,
                    action="licensing.copy.issued",
                    resource=f"licensing.copy:{copy.id}",
                    details={
                        "licence_id": licence.id,
                        "organisation": copy.organisation,
                        "model": copy.model,
                        "commitment": copy.commitment,
                        "shard_hashes": copy.shard_hashes,
                        "self_test_z": f"{copy.self_test_z:.3f}",
                        "alpha": f"{alpha:g}",
                    },
                    upper_tier=self._upper(version.id),
                )
        return copy

    def list_copies(self, caller: Caller, licence_id: str | None = None) -> list[Copy]:
        """A licence's copies (for whoever may see the licence), or every copy the caller may see."""
        if licence_id is not None:
            self.get_licence(caller, licence_id)
            with self.database.read() as connection:
                return store.list_copies(connection, licence_id=licence_id)
        with self.database.read() as connection:
            copies = store.list_copies(connection)
        own = self._organisation_of(caller)
        seen: dict[tuple[str, bool], bool] = {}
        out = []
        for copy in copies:
            key = (copy.model_version_id, own is not None and copy.organisation == own)
            if key not in seen:
                seen[key] = self._sees(caller, Action.VIEW_LICENCE, key[0], own=key[1], purpose="list")
            if seen[key]:
                out.append(copy)
        return out

    def _copy(self, copy_id: str) -> Copy:
        with self.database.read() as connection:
            copy = store.load_copy(connection, copy_id)
        if copy is None:
            raise _no_copy(copy_id)
        return copy

    def _require_download(self, caller: Caller, copy: Copy, licence: Licence | None, why: str) -> None:
        """A copy goes only to a person with the licensee role, of the licensee organisation,
        cleared for the version, under a licence in force: the access service decides (role,
        clearance and need-to-know, and the facts given). Another organisation's copy, and one
        above the caller's clearance, read exactly like a copy that does not exist."""
        own = self._organisation_of(caller) == copy.organisation
        in_force = licence is not None and licence.in_force(self.clock.now().date())
        asset = version_asset(copy.model_version_id)
        facts = {"own_organisation": own, "licence_in_force": in_force}
        if self.access.authorize(caller, Action.DOWNLOAD_LICENSED_COPY, asset, facts=facts).allowed:
            return
        sees = own and self.access.authorize(caller, Action.VIEW, asset).allowed
        state = licence.state.value if licence is not None else "missing"
        self._refused(caller, copy, why, f"licence {state}" if sees and not in_force else "not the licensee's")
        if not sees:
            raise _no_copy(copy.id)
        if not in_force:
            raise Forbidden(f"the licence is {state}", hint="downloads need a licence in force")
        raise Forbidden(
            "only people with the licensee role download the licensee's copy",
            hint="ask your organisation's administrator for the licensee role (and clearance for the model)",
        )

    def issue_download_token(self, caller: Caller, copy_id: str) -> IssuedToken:
        """A single-use token, valid for minutes, for a licensee's person to fetch its copy."""
        copy = self._copy(copy_id)
        with self.database.read() as connection:
            licence = store.load_licence(connection, copy.licence_id)
        self.expire_due()
        self._require_download(caller, copy, licence, "licensing.token.refused")
        now = self.clock.now()
        token = f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
        expires = now + self.config.token_ttl
        with self.database.transaction() as connection:
            store.insert_token(connection, token_hash(token), copy.id, caller.principal, now, expires)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="licensing.token.issued",
                resource=f"licensing.copy:{copy.id}",
                details={"expires_at": expires.isoformat()},
                upper_tier=self._upper(copy.model_version_id),
            )
        return IssuedToken(token, copy.id, expires)

    def _refused(self, caller: Caller, copy: Copy, action: str, why: str) -> None:
        self.audit.record(
            actor=caller.actor,
            action=action,
            resource=f"licensing.copy:{copy.id}",
            details={"why": why},
            upper_tier=self._upper(copy.model_version_id),
        )

    def redeem(self, caller: Caller, token: str) -> Download:
        """Use a token once. The licence, the licensee role and the clearance are checked again
        now: a suspension or revocation after the token was issued stops the download."""
        check_token(token)
        digest = token_hash(token)
        now = self.clock.now()
        with self.database.read() as connection:
            found = store.load_token(connection, digest)
        unusable = NotFound("no usable download token", hint="tokens are single-use and expire within minutes")
        if found is None:
            raise unusable
        copy = self._copy(found["copy_id"])
        refused = "licensing.download.refused"
        if found["cancelled_at"] is not None:
            self._refused(caller, copy, refused, "cancelled with the licence")
            raise Forbidden("the licence was suspended or revoked", hint="downloads need a licence in force")
        if found["used_at"] is not None or found["expires_at"] <= now:
            self._refused(caller, copy, refused, "replayed" if found["used_at"] is not None else "expired")
            raise unusable
        if caller.principal != found["principal"]:
            self._refused(caller, copy, refused, "not the person it was issued to")
            raise unusable
        self.expire_due()
        with self.database.read() as connection:
            licence = store.load_licence(connection, copy.licence_id)
        if licence is None or not licence.in_force(now.date()):
            self._refused(caller, copy, refused, f"licence {licence.state.value if licence else 'missing'}")
            raise Forbidden("the licence is not in force", hint="downloads need a licence in force")
        self._require_download(caller, copy, licence, refused)
        version = self.registry.find_version(copy.model)
        sealed = self.vault.sealed_copies(f"licensing.copy:{copy.id}")
        with self.database.transaction() as connection:
            if not store.use_token(connection, digest, now):
                won = False
            else:
                won = True
                self.audit.append(
                    connection,
                    actor=caller.actor,
                    action="licensing.copy.downloaded",
                    resource=f"licensing.copy:{copy.id}",
                    details={"licence_id": licence.id, "origin": caller.origin, "files": len(copy.files)},
                    upper_tier=self._upper(copy.model_version_id),
                )
        if not won:
            self._refused(caller, copy, refused, "replayed")
            raise unusable
        originals = {file.path: file for file in version.files}

        def parts() -> Iterator[tuple[str, int, Iterator[bytes]]]:
            for file in copy.files:
                if file.marked:
                    yield file.path, file.size, self.vault.open_sealed(sealed[file.sha256])
                else:
                    yield file.path, file.size, self._original_bytes(version, originals[file.path])

        name = f"{version.model_name}-{version.version}-{copy.organisation}.tar"
        return Download(name, "application/x-tar", _tar_stream(parts()))

    # --- leak tracing (L3) ------------------------------------------------------------------

    def trace(
        self, caller: Caller, path: Path, *, model: str | None = None, null_keys: int | None = None
    ) -> TraceResult:
        """Score every issued key against a suspect model and sign the report (A.5.1 detect). Only
        originals the caller may see are candidates (a report names its original)."""
        from aperture.licensing.weights import open_suspect

        self.require_tracer(caller)
        suspect = open_suspect(path)
        hashes = [(file.name, _sha256_file(file)) for file in suspect.files]
        with self.database.read() as connection:
            copies = store.list_copies(connection)
        candidates = self._candidate_versions(caller, copies, model)
        allowed = {version.id for version in candidates}
        verbatim = self._hash_matches([h for _, h in hashes], [c for c in copies if c.model_version_id in allowed])
        if not candidates:
            raise NotFound(
                "no traceable copies have been issued" if model is None else f"no copies of {model} have been issued",
                hint="trace compares a suspect with the licensed copies issued so far",
            )
        master = self._master()
        best: tuple[float, _Original] | None = None
        for version in candidates:
            original = self._load_original(version)
            similarity = _lineage(suspect, original)
            if similarity is not None and (best is None or similarity > best[0]):
                best = (similarity, original)
            elif best is None or similarity is None:
                del original
        if best is None:
            raise InvalidInput(
                "the suspect's tensors match no licensed model's architecture",
                hint="give --model NAME:VERSION, or check that the file is a Llama-family model",
            )
        similarity, original = best
        report = self._score(suspect, original, copies, master, null_keys)
        report.update(
            {
                "suspect": {
                    "path": path.name,
                    "format": suspect.format,
                    "files": [{"name": n, "sha256": h} for n, h in hashes],
                },
                "verbatim_matches": verbatim,
                "lineage_similarity": f"{similarity:.4f}",
                "created_at": self.clock.now().isoformat(),
                "created_by": caller.actor,
            }
        )
        return self._sign_and_keep(caller, report, upper_tier=self._upper(original.version.id))

    def _candidate_versions(self, caller: Caller, copies: list[Copy], model: str | None) -> list[ModelVersion]:
        if model is not None:
            version = self.registry.find_version(model, caller)
            return [version] if any(copy.model_version_id == version.id for copy in copies) else []
        seen: dict[str, ModelVersion] = {}
        for copy in copies:
            if copy.model_version_id not in seen and self._sees(
                caller, Action.VIEW, copy.model_version_id, own=False, purpose="list"
            ):
                seen[copy.model_version_id] = self.registry.find_version(copy.model)
        return list(seen.values())

    @staticmethod
    def _hash_matches(hashes: list[str], copies: list[Copy]) -> list[dict[str, str]]:
        matches = []
        for copy in copies:
            for file in copy.files:
                if file.marked and file.sha256 in hashes:
                    matches.append({"sha256": file.sha256, "copy_id": copy.id, "organisation": copy.organisation})
        return matches

    def _score(
        self, suspect: SuspectWeights, original: _Original, copies: list[Copy], master: bytes, null_keys: int | None
    ) -> dict[str, Any]:
        from aperture.licensing import marking
        from aperture.licensing.weights import EMBEDDING, requantized_reference

        config = self.config
        version = original.version
        rotation = marking.rotation_of(suspect.get(EMBEDDING), original.arrays.get(EMBEDDING))
        registration = marking.Registration(rotated=rotation is not None)
        reference = requantized_reference(suspect.quantization)
        vectors: dict[str, np.ndarray] = {}  # compacted one tensor at a time (float16 and a scale)
        scales: dict[str, float] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for name in marking.marked_names(original.arrays):
            w0 = original.arrays[name]
            s = suspect.get(name)
            if s is None or s.shape != w0.shape:
                registration.missing.append(name)
                continue
            registered = marking.register_tensor(name, s, w0, rotation, registration)
            vectors[name], scales[name] = marking.compact(marking.residual_vector(name, registered, w0, reference))
            shapes[name] = tuple(w0.shape)
        residual = marking.Residual.build(vectors, scales, shapes)
        screen = marking.screen_subset(residual, config.screen_fraction)
        issued = [copy for copy in copies if copy.model_version_id == version.id]
        seeds = {copy.organisation: self._seed(master, copy.model, copy.organisation) for copy in issued}
        first_copy: dict[str, Copy] = {}
        for copy in issued:
            first_copy.setdefault(copy.organisation, copy)
        scored = marking.score_keys(
            residual, seeds, screen_fraction=config.screen_fraction, confirm_top=config.confirm_top
        )
        scores = [
            KeyScore(
                first_copy[s.key].id,
                s.key,
                first_copy[s.key].licence_id,
                s.screen_z,
                s.z,
                s.z is not None and s.z >= config.threshold,
            )
            for s in scored
        ]
        nonce = secrets.token_bytes(16)
        count = config.null_keys if null_keys is None else null_keys
        null = marking.empirical_null(screen, nonce, count)
        null_full = marking.empirical_null(residual, nonce + b"full", min(8, count))
        ks_p = _ks_normal(null) if len(null) >= 8 else None
        accused = [s for s in scores if s.accused]
        return {
            "kind": "aperture.licensing.trace/v1",
            "original": version.reference,
            "original_manifest_digest": version.manifest_digest,
            "method": {
                "mark": "keyed spread-spectrum (white-box), non-blind correlation",
                "alpha": f"{config.alpha:g}",
                "threshold": f"{config.threshold:g}",
                "screen_fraction": f"{screen.coordinates / max(1, residual.coordinates):.4f}",
                "coordinates": residual.coordinates,
                "reference": "re-quantised" if reference is not None else "original",
            },
            "registration": registration.as_dict(),
            "scores": [
                {
                    "organisation": s.organisation,
                    "copy_id": s.copy_id,
                    "licence_id": s.licence_id,
                    "commitment": first_copy[s.organisation].commitment,
                    "screen_z": f"{s.screen_z:.3f}",
                    "z": None if s.z is None else f"{s.z:.3f}",
                    "accused": s.accused,
                }
                for s in scores
            ],
            "null": {
                "nonce": nonce.hex(),
                "screen": {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in null_summary(null).items()},
                "ks_p_value": None if ks_p is None else f"{ks_p:.4f}",
                "full": [f"{z:.3f}" for z in null_full],
            },
            "accused": [{"organisation": s.organisation, "copy_id": s.copy_id, "z": f"{s.z:.3f}"} for s in accused],
            "verdict": verdict_text(accused, config.threshold),
            "collusion": collusion_note(accused, scores, config.threshold),
        }

    def _sign_and_keep(self, caller: Caller, report: dict[str, Any], *, upper_tier: bool) -> TraceResult:
        keys = self.vault.keys
        trace_id = new_id()
        report["id"] = trace_id
        report["signing_key_id"] = keys.key_id
        body = canonical_json(report)
        digest = hashlib.sha256(body).hexdigest()
        signature = keys.sign(body).hex()
        with self.database.transaction() as connection:
            store.insert_trace(connection, trace_id, self.clock.now(), caller.actor, digest, body.decode(), signature)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="licensing.trace.reported",
                resource=f"licensing.trace:{trace_id}",
                details={"digest": digest, "accused": [a["organisation"] for a in report.get("accused", [])]},
                upper_tier=upper_tier,
            )
        return TraceResult(report, signature, keys.key_id, trace_id)

    def get_trace(self, caller: Caller, trace_id: str) -> TraceResult:
        """A signed trace report, for the desk's people who may see its original."""
        self.require_tracer(caller)
        with self.database.read() as connection:
            found = store.load_trace(connection, trace_id)
        missing = NotFound(f"no trace report {trace_id}", hint="`aperture licensing traces` lists them")
        if found is None:
            raise missing
        body, signature = found
        report = json.loads(body)
        try:
            self.registry.find_version(str(report.get("original", "")), caller)
        except (NotFound, InvalidInput):
            raise missing from None
        return TraceResult(report, signature, report.get("signing_key_id", ""), trace_id)

    def list_traces(self, caller: Caller) -> list[dict[str, Any]]:
        self.require_tracer(caller)
        with self.database.read() as connection:
            return store.list_traces(connection)

    def verify_report(self, report: dict[str, Any], signature_hex: str) -> bool:
        """Check a signed report with the instance's public key (anyone can, offline)."""
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise InvalidInput("the signature is not hex", hint="give the signature printed with the report") from None
        return verify_ed25519(self.vault.keys.public_key_pem, signature, canonical_json(report))

    def identify(self, caller: Caller, path: Path) -> dict[str, Any]:
        """The reverse question: is this a copy of one of our models? By file hash (registered
        versions and issued copies), then by lineage similarity to each model with the same shapes.
        Only versions the caller may see are compared (the answer names them)."""
        from aperture.licensing.weights import open_suspect

        self.require_tracer(caller)
        suspect = open_suspect(path)
        hashes = [_sha256_file(file) for file in suspect.files]
        with self.database.read() as connection:
            copies = store.list_copies(connection)
        versions = [
            version
            for summary in self.registry.list_models(caller)  # a listing: only what the caller may see
            for version in self.registry.get_model(summary.name, caller).versions
        ]
        seen = {version.id for version in versions}
        copies = [copy for copy in copies if copy.model_version_id in seen]
        found: list[dict[str, Any]] = []
        for version in versions:
            for file in version.files:
                if file.sha256 in hashes:
                    found.append({"model": version.reference, "file": file.path, "match": "unmarked original (hash)"})
        for match in self._hash_matches(hashes, copies):
            found.append({**match, "match": "licensee's marked copy (hash)"})
        lineage: list[dict[str, str]] = []
        for version in versions:
            if not any(f.path.endswith(".safetensors") for f in version.files):
                continue
            try:
                original = self._load_original(version)
            except InvalidInput:
                continue
            except Unavailable:  # an upper-tier original while this process is sealed
                lineage.append({"model": version.reference, "similarity": "unchecked: the upper tier is sealed"})
                continue
            similarity = _lineage(suspect, original)
            if similarity is not None:
                lineage.append({"model": version.reference, "similarity": f"{similarity:.4f}"})
        checked = [item for item in lineage if not item["similarity"].startswith("unchecked")]
        checked.sort(key=lambda item: -float(item["similarity"]))
        derived = [item["model"] for item in checked if float(item["similarity"]) >= LINEAGE_THRESHOLD]
        lineage = checked + [item for item in lineage if item["similarity"].startswith("unchecked")]
        self.audit.record(
            actor=caller.actor,
            action="licensing.identify",
            resource="licensing.suspect",
            details={"hash_matches": len(found), "derived_from": derived},
            upper_tier=any(self._upper(version.id) for version in versions),
        )
        return {
            "hash_matches": found,
            "lineage": lineage,
            "derived_from": derived,
            "threshold": f"{LINEAGE_THRESHOLD:g}",
        }

    # --- diffusion (L4) ---------------------------------------------------------------------

    def diffuse(
        self,
        caller: Caller,
        reference: str,
        target: str,
        *,
        decision_id: str,
        acknowledge: bool = False,
        reason: str = "",
    ) -> dict[str, Any]:
        """End-of-programme diffusion: `open` (the weights become public: traceability of every
        licensed copy ends) or `partners` (continued licensing to partners and spin-offs).

        Either needs the release board's decision on this version: opening, a decision to open
        whose cooling-off period has passed unchallenged on unchanged evidence (carried out here
        through the release service, which checks all of that); partners, the decision to license
        that is in force. A decision id that is not such a decision is refused."""
        version = self.registry.find_version(reference, caller)
        self._ask(
            caller,
            Action.DIFFUSE_LICENSED,
            version.id,
            missing=NotFound(
                f"no version {reference}", hint="`aperture licensing catalogue` lists the licensed models"
            ),
            message="only licensing officers or administrators diffuse a licensed model",
            hint="ask a licensing officer",
        )
        tier = self.release.tier_of(version.model_name, version.version)
        if tier is not Tier.LICENSED:
            raise Conflict(
                f"{version.reference} is not in the licensed tier (it is {tier.value if tier else 'undecided'})",
                hint="diffusion moves a licensed model on at the end of its programme",
            )
        if target not in ("open", "partners"):
            raise InvalidInput(f"unknown diffusion target {target!r}", hint="open or partners")
        if not decision_id.strip():
            raise InvalidInput("name the board decision", hint="--decision ID")
        with self.database.read() as connection:
            copies = store.list_copies(connection, model_version_id=version.id)
            live = store.list_licences(connection, model_version_id=version.id, states=("active", "suspended"))
        warning = (
            f"OPENING {version.reference} ENDS TRACEABILITY: {len(copies)} marked licensed cop"
            f"{'y' if len(copies) == 1 else 'ies'} can no longer be traced once the same weights are public "
            "(anyone can subtract the public weights and strip the mark). Never publish a second, differently "
            "marked copy either."
            if target == "open"
            else ""
        )
        if target == "open" and not acknowledge:
            raise Conflict(warning, hint="repeat with --acknowledge-end-of-traceability if the board accepted this")
        self._check_board_decision(caller, version, target, decision_id)
        if target == "open":
            # The release service opens the weights only after the cooling-off period and only on the
            # evidence and policy the board voted on; it refuses (and audits the refusal) otherwise.
            self.release.carry_out(caller, decision_id)
        now = self.clock.now()
        diffusion_id = new_id()
        body = {
            "model": version.reference,
            "decision_id": decision_id,
            "warning": warning,
            "copies": len(copies),
            "live_licences": len(live),
            "reason": reason,
            "requested_by": caller.actor,
        }
        with self.database.transaction() as connection:
            store.insert_diffusion(connection, diffusion_id, version.id, target, "effective", now, body)
            self.audit.append(
                connection,
                actor=caller.actor,
                action=f"licensing.diffusion.{target}",
                resource=self.registry.log_name(version),
                details={"decision_id": decision_id, "copies": len(copies), "live_licences": len(live)},
                upper_tier=self._upper(version.id),
            )
        return {"id": diffusion_id, "target": target, **body}

    def _check_board_decision(self, caller: Caller, version: ModelVersion, target: str, decision_id: str) -> None:
        """The decision must be the board's, on this version, for the tier the diffusion leads to."""
        try:
            decision = self.release.proposal(caller, decision_id)
        except NotFound:
            raise NotFound(
                f"no release board decision {decision_id}",
                hint=f"see `aperture release proposals {version.reference}`",
            ) from None
        wanted = "open" if target == "open" else "licensed"
        wanted_status = "cooling-off" if target == "open" else "effective"
        if decision["model"] != version.reference or decision["tier"] != wanted:
            raise Conflict(
                f"decision {decision_id} puts {decision['model']} under {decision['tier']}, "
                f"not {version.reference} under {wanted}",
                hint=f"diffusion to {target} needs the board's decision to make {version.reference} {wanted}",
            )
        if decision["status"] != wanted_status:
            raise Conflict(
                f"decision {decision_id} is {decision['status']}, not {wanted_status}",
                hint="propose it to the release board: `aperture release propose`"
                if target == "open"
                else "diffusion to partners rests on the licensing decision in force",
            )

    def diffusions(self, caller: Caller) -> list[dict[str, Any]]:
        """Diffusions of the versions the caller may see, newest first."""
        with self.database.read() as connection:
            rows = store.list_diffusions(connection)
        return [
            row for row in rows if self._sees(caller, Action.VIEW, row["model_version_id"], own=False, purpose="list")
        ]


LINEAGE_THRESHOLD = 0.9


def _lineage(suspect: SuspectWeights, original: _Original) -> float | None:
    """Mean cosine between the suspect's and the original's weights over a few block projections,
    after registration; None when the shapes do not match (another architecture)."""
    import numpy as np

    from aperture.licensing import marking

    names = marking.marked_names(original.arrays)
    if not names:
        return None
    picked = names[:: max(1, len(names) // 6)][:6]
    values = []
    for name in picked:
        s = suspect.get(name)
        w0 = original.arrays[name]
        if s is None or s.shape != w0.shape:
            return None
        registered = marking.register_tensor(name, s, w0, None, marking.Registration())
        a, b = registered.ravel(), np.asarray(w0, dtype=np.float32).ravel()
        denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
        values.append(float(a @ b) / denominator if denominator else 0.0)
    return float(np.mean(values))


def _ks_normal(values: list[float]) -> float:
    from scipy.stats import kstest

    return float(kstest(values, "norm").pvalue)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(STREAM_CHUNK):
            yield block


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    for block in _read_chunks(path):
        hasher.update(block)
    return hasher.hexdigest()


def _tar_stream(parts: Iterator[tuple[str, int, Iterator[bytes]]]) -> Iterator[bytes]:
    for path, size, chunks in parts:
        info = tarfile.TarInfo(path)
        info.size = size
        info.mode = 0o644
        yield info.tobuf(tarfile.PAX_FORMAT)
        yield from chunks
        padding = (-size) % tarfile.BLOCKSIZE
        if padding:
            yield b"\0" * padding
    yield b"\0" * (tarfile.BLOCKSIZE * 2)


def _no_application(application_id: str) -> NotFound:
    """What an application that does not exist and one the caller may not see both raise."""
    return NotFound(f"no application {application_id}", hint="GET /api/v1/licensing/applications lists yours")


def _no_licence(licence_id: str) -> NotFound:
    return NotFound(f"no licence {licence_id}", hint="GET /api/v1/licensing/licences lists yours")


def _no_copy(copy_id: str) -> NotFound:
    return NotFound(f"no copy {copy_id}", hint="GET /api/v1/licensing/licences/ID/copies lists a licence's copies")
