"""What the RAID commands share: who acts, reading files, and records as plain data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from aperture.access.domain import SYSTEM, Caller
from aperture.cli_support import require_initialised, state
from aperture.core.errors import InvalidInput, NotFound, TooLarge
from aperture.raid.clocks import Tracked
from aperture.raid.disclosure import Advisory
from aperture.raid.domain import Incident, TimelineEvent
from aperture.raid.messages import Message
from aperture.raid.routing import Route

KEY_HELP = "Act as the person holding this API key (apk_...); without it, as the local operator."
JSON_HELP = "Print JSON."

if TYPE_CHECKING:
    from aperture.bootstrap import Services


def services_of(ctx: typer.Context) -> Services:
    services = state(ctx).services
    require_initialised(services)
    return services


def caller_of(services: Services, key: str | None) -> Caller:
    return SYSTEM if not key else services.access.authenticate(key.strip(), origin="cli")


def read_file(path: Path, limit: int) -> bytes:
    if not path.is_file():
        raise NotFound(f"{path} does not exist", hint="give the path of an existing file")
    size = path.stat().st_size
    if size > limit:
        raise TooLarge(f"{path.name} has {size} bytes; at most {limit}", hint="send a smaller file")
    return path.read_bytes()


def read_text(path: Path, limit: int = 1024 * 1024) -> str:
    try:
        return read_file(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text", hint="save it as UTF-8") from None


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a time", hint="ISO 8601 in UTC, e.g. 2026-11-24T09:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{text!r} has no time zone", hint="end it with Z (UTC)")
    return moment


def choice(kind: type[Any], text: str, what: str) -> Any:
    """An enum value from its text, or a clear error naming the choices."""
    try:
        return kind(text.strip().lower())
    except ValueError:
        raise InvalidInput(f"{text!r} is not a {what}", hint=f"{what}s: " + ", ".join(k.value for k in kind)) from None


def safe(text: object) -> str:
    """Reporter text printed as text: console markup in it is shown, not interpreted."""
    return escape(str(text))


def when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def incident_json(incident: Incident) -> dict[str, Any]:
    assessment = incident.assessment
    return {
        "id": incident.id,
        "source": {"kind": incident.source.kind.value, "id": incident.source.id},
        "title": incident.title,
        "description": incident.summary,
        "status": incident.status.value,
        "tlp": incident.tlp.label,
        "severity": incident.severity.value,
        "created_at": when(incident.created_at),
        "updated_at": when(incident.updated_at),
        "aware_at": when(incident.aware_at),
        "occurred_from": when(incident.occurred_from),
        "occurred_until": when(incident.occurred_until),
        "reporter": {
            "principal": incident.reporter.principal,
            "organisation": incident.reporter.organisation,
            "consent": incident.reporter.consent.value,
        },
        "shared_with": {
            "principals": sorted(incident.audience.principals),
            "organisations": sorted(incident.audience.organisations),
        },
        "bindings": [{"kind": b.kind.value, "ref": b.ref} for b in incident.bindings],
        "assessment": None if assessment is None else assessment.as_dict(),
        "facts": dict(incident.facts.values),
        "assignee": incident.assignee,
        "merged_into": incident.merged_into,
        "resolved_at": when(incident.resolved_at),
        "closed_at": when(incident.closed_at),
        "evidence": incident.evidence,
    }


def event_json(event: TimelineEvent) -> dict[str, Any]:
    return {"at": when(event.at), "actor": event.actor, "kind": event.kind, "details": event.details}


def obligation_json(tracked: Tracked, now: datetime | None = None) -> dict[str, Any]:
    obligation = tracked.obligation
    found: dict[str, Any] = {
        "id": tracked.id,
        "incident": tracked.incident_id,
        "route": tracked.route_id,
        "clock": obligation.clock.value,
        "kind": obligation.kind,
        "party": obligation.party.value,
        "recipient": obligation.recipient,
        "due_at": when(obligation.due_at),
        "counts_from": obligation.counts_from,
        "legal_basis": obligation.legal_basis,
        "met_at": when(tracked.met_at),
        "reminded_at": when(tracked.reminded_at),
    }
    if now is not None:
        found["overdue"] = tracked.overdue(now)
    return found


def route_json(route: Route) -> dict[str, Any]:
    match = route.match
    return {
        "id": route.id,
        "rule": match.rule_id,
        "body": match.body,
        "also": list(match.also),
        "legal_basis": match.legal_basis,
        "clocks": [c.value for c in match.clocks],
        "verified": match.verified.value,
        "raid_owned": match.raid_owned,
        "required_by_law": route.required_by_law,
        "table_version": match.table_version,
        "forwarded_at": when(route.forwarded_at),
    }


def advisory_json(advisory: Advisory) -> dict[str, Any]:
    return {
        "id": advisory.id,
        "incident": advisory.incident_id,
        "title": advisory.title,
        "summary": advisory.summary,
        "remediation": advisory.remediation,
        "status": advisory.status.value,
        "embargo_policy": advisory.policy.value,
        "embargo_until": when(advisory.embargo_until),
        "parties": list(advisory.parties),
        "notified_at": when(advisory.notified_at),
        "published_at": when(advisory.published_at),
        "early_publication": None
        if advisory.early is None
        else {"by": advisory.early.by, "at": when(advisory.early.at), "reason": advisory.early.reason},
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "created_at": when(message.created_at),
        "incident": message.incident_id,
        "kind": message.kind.value,
        "recipient": message.recipient,
        "subject": message.subject,
        "status": message.status.value,
        "attempts": message.attempts,
        "next_attempt_at": when(message.next_attempt_at),
        "last_error": message.last_error,
        "sent_at": when(message.sent_at),
    }
