"""Intake (D1): the public, partners, the desk itself, and the platform's own alerts."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aperture.access.domain import ANONYMOUS, SYSTEM, Action, Caller
from aperture.core.errors import InvalidInput, NotFound, TooLarge
from aperture.core.ids import new_id
from aperture.raid import store
from aperture.raid._context import Context, check_id, principal_of, record, upper_tier, version_asset
from aperture.raid.checks import RECEIPT_PREFIX, check_receipt, check_text, receipt_hash
from aperture.raid.domain import (
    MAX_TEXT,
    Binding,
    BindingKind,
    Consent,
    Detection,
    Incident,
    IntakeItem,
    Reporter,
    Source,
    SourceKind,
    Status,
    TimelineEvent,
    new_incident,
)
from aperture.raid.sniff import display_name, sniff
from aperture.raid.tlp import Audience, Tlp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes


@dataclass(frozen=True)
class Submission:
    """A report as a person writes it (the public form, a partner's API call, the desk's CLI)."""

    title: str
    description: str
    tlp: Tlp = Tlp.AMBER_STRICT
    models: tuple[str, ...] = ()  # model version ids or NAME:VERSION references
    organisations: tuple[str, ...] = ()  # organisations it concerns (developers, deployers)
    recipients: tuple[str, ...] = ()  # principals named on it (TLP:RED needs them)
    contact: str | None = None
    consent: Consent = Consent.LEGAL_MINIMUM
    occurred_from: datetime | None = None
    occurred_until: datetime | None = None
    reporter_aware_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Receipt:
    incident_id: str
    receipt: str  # shown once; only its hash is kept
    received_at: datetime


@dataclass(frozen=True)
class IntakeResult:
    taken: tuple[str, ...]  # ids of the incidents created
    skipped: int  # items already taken before (or twice in the batch)


@dataclass(frozen=True)
class AttachmentInfo:
    sha256: str
    name: str
    media_type: str
    size: int
    added_at: datetime


@dataclass(frozen=True)
class ReporterView:
    """What a reporter sees of their own report: what they wrote and its status, and only the
    model versions they may see themselves (nothing about the others)."""

    incident_id: str
    title: str
    description: str
    status: Status
    tlp: Tlp
    received_at: datetime
    updated_at: datetime
    models: tuple[str, ...]
    additions: tuple[dict[str, Any], ...]
    attachments: tuple[AttachmentInfo, ...] = field(default_factory=tuple)


class Intake:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- people --------------------------------------------------------------------------

    def report(self, caller: Caller, submission: Submission, *, honeypot: str = "") -> Receipt:
        """A report from the public (anonymous) or a partner (signed in, as its organisation).

        A filled honeypot field is a robot: it gets a receipt that looks real and nothing is kept."""
        if honeypot.strip():
            log.info("raid: a report with the honeypot field filled was dropped")
            return Receipt(new_id(), f"{RECEIPT_PREFIX}_{secrets.token_urlsafe(32)}", self.ctx.clock.now())
        name = principal_of(caller)
        if name is None:
            return self._take(caller, submission, Source(SourceKind.PUBLIC), Reporter(None, None))
        self.ctx.access.require_instance(caller, Action.RAID_REPORT)
        organisation = self._organisation(name)
        return self._take(caller, submission, Source(SourceKind.PARTNER), Reporter(name, organisation))

    def record(self, caller: Caller, submission: Submission) -> Receipt:
        """A report the desk records itself (a call, a letter, the press)."""
        self.ctx.access.require_instance(caller, Action.RAID_TRIAGE)
        me = principal_of(caller)
        if submission.tlp is Tlp.RED and me is not None:  # whoever labels it RED stays in the exchange
            submission = replace(submission, recipients=(*submission.recipients, me))
        return self._take(caller, submission, Source(SourceKind.DESK), Reporter(None, None))

    def _organisation(self, name: str) -> str | None:
        try:
            return self.ctx.access.get_principal(name).organisation
        except NotFound:
            return None

    def _take(self, caller: Caller, submission: Submission, source: Source, reporter: Reporter) -> Receipt:
        ctx = self.ctx
        files = self._check_attachments(submission.attachments)
        bindings, unresolved = self._bindings(submission)
        now = ctx.clock.now()
        item = IntakeItem(
            source=source,
            title=submission.title,
            summary=submission.description,
            tlp=submission.tlp,
            aware_at=now,
            detection=Detection.USER_REPORTING if source.kind is not SourceKind.DESK else Detection.HUMAN_REVIEW,
            bindings=bindings,
            reporter=replace(reporter, contact=submission.contact, consent=submission.consent),
            audience=Audience(frozenset(submission.recipients)),
            occurred_from=submission.occurred_from,
            occurred_until=submission.occurred_until,
            reporter_aware_at=submission.reporter_aware_at,
            evidence={"unresolved_models": list(unresolved)} if unresolved else {},
        )
        incident = new_incident(item, id=new_id(), now=now)
        receipt = f"{RECEIPT_PREFIX}_{secrets.token_urlsafe(32)}"
        for digest, data, _ in files:
            ctx.files.put(digest, data)
        with ctx.database.transaction() as connection:
            store.insert_incidents(connection, [(incident, receipt_hash(receipt))])
            store.add_attachments(connection, incident.id, [self._attachment_record(f, "reporter", now) for f in files])
            record(
                ctx,
                connection,
                caller.actor if source.kind is not SourceKind.PUBLIC else "public",
                incident,
                "raid.report.received",
                {
                    "source": source.kind.value,
                    "tlp": incident.tlp.value,
                    "bindings": len(incident.bindings),
                    "attachments": len(files),
                },
            )
        return Receipt(incident.id, receipt, now)

    def _check_attachments(self, attachments: Sequence[Attachment]) -> list[tuple[str, bytes, tuple[str, str]]]:
        config = self.ctx.config
        if len(attachments) > config.max_attachments:
            raise TooLarge(
                f"{len(attachments)} attachments; at most {config.max_attachments}",
                hint="attach the most important files, or describe the rest",
            )
        checked = []
        for attachment in attachments:
            if len(attachment.data) > config.max_attachment_bytes:
                raise TooLarge(
                    f"the attachment {display_name(attachment.name)!r} has {len(attachment.data)} bytes; "
                    f"at most {config.max_attachment_bytes}",
                    hint="attach a smaller file",
                )
            kind = sniff(attachment.data)
            checked.append(
                (
                    hashlib.sha256(attachment.data).hexdigest(),
                    attachment.data,
                    (display_name(attachment.name), kind.media_type),
                )
            )
        return checked

    @staticmethod
    def _attachment_record(file: tuple[str, bytes, tuple[str, str]], by: str, now: datetime) -> store.AttachmentRecord:
        digest, data, (name, media_type) = file
        return store.AttachmentRecord(digest, name, media_type, len(data), now, by)

    def _bindings(self, submission: Submission) -> tuple[tuple[Binding, ...], tuple[str, ...]]:
        """Model references resolved by the operator's view of the registry: a version the reporter
        cannot see is bound like any other (the desk needs it), and what resolves to nothing is kept
        as text for the desk. The reporter is told nothing either way."""
        bindings: list[Binding] = []
        unresolved: list[str] = []
        for reference in submission.models[:50]:
            text = reference.strip()[:200]
            try:
                if ":" in text:
                    version = self.ctx.registry.find_version(text, caller=SYSTEM)
                else:
                    version = self.ctx.registry.version_by_id(check_id(text, "model version"), caller=SYSTEM)
            except (NotFound, InvalidInput):
                unresolved.append(text)
                continue
            bindings.append(Binding(BindingKind.MODEL_VERSION, version.id))
        bindings += [Binding(BindingKind.ORGANISATION, name.strip()) for name in submission.organisations]
        return tuple(bindings), tuple(unresolved)

    # --- receipts ------------------------------------------------------------------------

    def _by_receipt(self, receipt: str) -> Incident:
        with self.ctx.database.read() as connection:
            found = store.load_by_receipt(connection, receipt_hash(check_receipt(receipt)))
        if found is None:
            raise NotFound("no report for this receipt", hint="check the receipt you were given when you reported")
        return found

    def follow_up(self, receipt: str) -> ReporterView:
        incident = self._by_receipt(receipt)
        reporter = self._reporter_caller(incident)
        models = tuple(
            version
            for version in incident.versions()
            if self.ctx.access.authorize(reporter, Action.VIEW, version_asset(version), purpose="list").allowed
        )
        with self.ctx.database.read() as connection:
            events = store.timeline(connection, incident.id)
            files = store.attachments(connection, incident.id)
        return ReporterView(
            incident_id=incident.id,
            title=incident.title,
            description=incident.summary,
            status=incident.status,
            tlp=incident.tlp,
            received_at=incident.created_at,
            updated_at=incident.updated_at,
            models=models,
            additions=tuple(
                {
                    "at": e.at.isoformat(),
                    "text": e.details.get("text", ""),
                    "attachments": e.details.get("attachments", 0),
                }
                for e in events
                if e.kind == "information_added"
            ),
            attachments=tuple(
                AttachmentInfo(f.sha256, f.name, f.media_type, f.size, f.added_at)
                for f in files
                if f.added_by == "reporter"
            ),
        )

    @staticmethod
    def _reporter_caller(incident: Incident) -> Caller:
        if incident.reporter.principal is None:
            return ANONYMOUS
        return Caller(principal=incident.reporter.principal, roles=())

    def add_information(
        self, receipt: str, text: str, attachments: Sequence[Attachment] = (), *, honeypot: str = ""
    ) -> ReporterView:
        """The reporter adds what they learned since, with the receipt and without an account."""
        if honeypot.strip():
            raise NotFound("no report for this receipt", hint="check the receipt you were given when you reported")
        incident = self._by_receipt(receipt)
        body = check_text(text, "information", MAX_TEXT, required=not attachments)
        files = self._check_attachments(attachments)
        now = self.ctx.clock.now()
        for digest, data, _ in files:
            self.ctx.files.put(digest, data)
        with self.ctx.database.transaction() as connection:
            store.add_attachments(connection, incident.id, [self._attachment_record(f, "reporter", now) for f in files])
            record(
                self.ctx,
                connection,
                "reporter",
                incident,
                "raid.report.information_added",
                {"characters": len(body), "attachments": len(files)},
                timeline_kind="information_added",
                timeline_details={"text": body, "attachments": len(files)},
            )
        return self.follow_up(receipt)

    # --- the platform's own alerts -------------------------------------------------------

    def take_alerts(self, caller: Caller, items: Sequence[IntakeItem]) -> IntakeResult:
        """Automatic intake, batched and idempotent by source id: one transaction inserts the new
        items (INSERT ... ON CONFLICT DO NOTHING on the source's unique key), so an alert taken
        twice, here or concurrently elsewhere, becomes one incident. Nothing is written if any item
        is invalid."""
        ctx = self.ctx
        ctx.access.require_instance(caller, Action.RAID_INTAKE)
        if len(items) > ctx.config.max_batch:
            raise TooLarge(
                f"{len(items)} alerts in one batch; at most {ctx.config.max_batch}", hint="take them in smaller batches"
            )
        now = ctx.clock.now()
        incidents: dict[tuple[str, str | None], Incident] = {}
        for index, item in enumerate(items):
            if not item.source.kind.automatic:
                raise InvalidInput(
                    f"alert {index}: {item.source.kind.value} is not an automatic source",
                    hint="people's reports go through report(); STIX bundles through import",
                )
            try:
                incident = new_incident(item, id=new_id(), now=now)
            except InvalidInput as error:
                raise type(error)(f"alert {index}: {error.message}", hint=error.hint) from None
            incidents.setdefault((item.source.kind.value, item.source.id), incident)
        if not incidents:
            return IntakeResult((), 0)
        with ctx.database.transaction() as connection:
            taken = store.insert_incidents(connection, [(i, None) for i in incidents.values()])
            chosen = [i for i in incidents.values() if i.id in set(taken)]
            store.add_events(
                connection,
                [
                    TimelineEvent(new_id(), i.id, now, caller.actor, "received", {"source": i.source.kind.value})
                    for i in chosen
                ],
            )
            if chosen:
                ctx.audit.append(
                    connection,
                    actor=caller.actor,
                    action="raid.alerts.taken",
                    resource="raid-intake",
                    details={
                        "taken": len(chosen),
                        "skipped": len(items) - len(chosen),
                        "sources": dict(Counter(i.source.kind.value for i in chosen)),
                        "incidents": [i.id for i in chosen],
                    },
                    upper_tier=any(upper_tier(ctx, i) for i in chosen),
                )
        return IntakeResult(tuple(taken), len(items) - len(taken))
