"""The desk's main commands: intake, the queue, triage, clocks, sharing, STIX, the outbox."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aperture.cli_support import command_errors, out_console
from aperture.raid.cli._support import (
    JSON_HELP,
    KEY_HELP,
    caller_of,
    choice,
    event_json,
    incident_json,
    obligation_json,
    parse_time,
    read_file,
    route_json,
    safe,
    services_of,
)
from aperture.raid.clocks import Party
from aperture.raid.domain import Consent, Determination, Move
from aperture.raid.drafts import parse_form
from aperture.raid.serious import CausalLink, Harm, Regime
from aperture.raid.stix import html_safe
from aperture.raid.taxonomy import parse_risk_domain, parse_sector, parse_severity
from aperture.raid.tlp import parse_tlp

app = typer.Typer(
    help="The RAID desk: intake, triage, routing with legal clocks, TLP sharing, disclosure.", no_args_is_help=True
)
Key = typer.Option(None, "--key", help=KEY_HELP)
Json = typer.Option(False, "--json", help=JSON_HELP)


def emit(value: Any) -> None:
    """JSON with <, > and & escaped: the same data, inert if pasted into a page."""
    sys.stdout.write(html_safe(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)) + "\n")


@app.command("report")
@command_errors
def report(
    ctx: typer.Context,
    title: str = typer.Option(..., help="A short title (at most 200 characters)."),
    description: str = typer.Option(..., help="What happened (at most 20,000 characters)."),
    tlp: str = typer.Option("TLP:AMBER+STRICT", help="The TLP 2.0 label."),
    model: list[str] = typer.Option([], help="A model version it concerns: NAME:VERSION or its id (repeat)."),
    organisation: list[str] = typer.Option([], help="An organisation it concerns (repeat)."),
    recipient: list[str] = typer.Option([], help="A principal named on it (TLP:RED needs them; repeat)."),
    contact: str | None = typer.Option(None, help="How to reach the reporter (kept private)."),
    consent: str = typer.Option("legal-minimum", help="legal-minimum, anonymised or full."),
    attach: list[Path] = typer.Option([], help="A file to attach (repeat)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Record a report the desk received (a call, a letter, the press); prints its receipt once."""
    from aperture.raid.service import Attachment, Submission

    services = services_of(ctx)
    limit = services.raid.context.config.max_attachment_bytes
    submission = Submission(
        title=title,
        description=description,
        tlp=parse_tlp(tlp),
        models=tuple(model),
        organisations=tuple(organisation),
        recipients=tuple(recipient),
        contact=contact,
        consent=choice(Consent, consent, "consent"),
        attachments=tuple(Attachment(p.name, read_file(p, limit)) for p in attach),
    )
    receipt = services.raid.intake.record(caller_of(services, key), submission)
    if as_json:
        emit({"incident": receipt.incident_id, "receipt": receipt.receipt, "received_at": receipt.received_at})
        return
    out_console.print(f"recorded {receipt.incident_id}")
    out_console.print(f"receipt (shown once): {receipt.receipt}", highlight=False, soft_wrap=True)


@app.command("list")
@command_errors
def list_items(
    ctx: typer.Context,
    status: list[str] = typer.Option([], help="Only these statuses (repeat)."),
    tlp: list[str] = typer.Option([], help="Only these labels (repeat)."),
    search: str | None = typer.Option(None, help="Words in the title or description."),
    limit: int = typer.Option(50, min=1, max=500),
    offset: int = typer.Option(0, min=0),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """The queue: the items you may see, newest first, with the total."""
    from aperture.raid.service import Filter

    services = services_of(ctx)
    where = Filter(statuses=tuple(status), tlps=tuple(parse_tlp(t).value for t in tlp), search=search)
    page = services.raid.desk.queue(caller_of(services, key), where, limit=limit, offset=offset)
    if as_json:
        emit({"total": page.total, "items": [incident_json(i) for i in page.items]})
        return
    table = Table("id", "received", "status", "severity", "TLP", "title", title=f"{page.total} items")
    for item in page.items:
        table.add_row(
            item.id,
            item.created_at.strftime("%Y-%m-%d %H:%M"),
            item.status.value,
            item.severity.value,
            item.tlp.label,
            safe(item.title),
        )
    out_console.print(table)


@app.command("show")
@command_errors
def show(ctx: typer.Context, incident: str, key: str | None = Key, as_json: bool = Json) -> None:
    """One item, its attachments and timeline."""
    services = services_of(ctx)
    caller = caller_of(services, key)
    found = services.raid.desk.get(caller, incident)
    files = services.raid.desk.attachments(caller, incident)
    events = services.raid.desk.timeline(caller, incident)
    if as_json:
        emit(
            {
                **incident_json(found),
                "attachments": [
                    {"sha256": f.sha256, "name": f.name, "type": f.media_type, "size": f.size} for f in files
                ],
                "timeline": [event_json(e) for e in events],
            }
        )
        return
    out_console.print(f"[bold]{safe(found.title)}[/]  {found.tlp.label}  {found.status.value}  {found.severity.value}")
    out_console.print(safe(found.summary), highlight=False)
    for event in events:
        out_console.print(f"  {event.at:%Y-%m-%d %H:%M}  {safe(event.kind)}  {safe(event.actor)}", highlight=False)


@app.command("timeline")
@command_errors
def timeline(ctx: typer.Context, incident: str, key: str | None = Key, as_json: bool = Json) -> None:
    """Every event of an item, oldest first."""
    services = services_of(ctx)
    events = services.raid.desk.timeline(caller_of(services, key), incident)
    if as_json:
        emit([event_json(e) for e in events])
        return
    for event in events:
        out_console.print(f"{event.at:%Y-%m-%d %H:%M:%S}  {safe(event.kind)}  {safe(event.actor)}", highlight=False)


@app.command("assess")
@command_errors
def assess(
    ctx: typer.Context,
    incident: str,
    severity: str = typer.Option(..., help="hazard, serious-hazard, incident, serious-incident or disaster."),
    domain: str | None = typer.Option(None, help="Risk domain (the risk profile's vocabulary)."),
    sector: str | None = typer.Option(None, help="Sector (see docs/raid.md)."),
    member_state: str | None = typer.Option(None, help="EU member state where it occurred (ISO code)."),
    dual_use: bool = typer.Option(False, "--dual-use", help="It concerns a dual-use capability."),
    avid: list[str] = typer.Option([], help="An AVID effect code, e.g. S0403 (repeat)."),
    determination: str = typer.Option("suspected", help="STIX determination."),
    harm: list[str] = typer.Option([], help="A harm of AI Act Art. 3(49) or CoP 9.3 (repeat)."),
    causal_link: str = typer.Option("unknown", help="established, reasonably-likely, suspected, none or unknown."),
    regime: list[str] = typer.Option([], help="high-risk-system, gpai-systemic-risk, nis2-entity, ... (repeat)."),
    provider_is_institution: bool = typer.Option(False, "--provider-is-institution", help="Our own model."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Triage's classification; the serious-incident tests run on it."""
    services = services_of(ctx)
    found = services.raid.desk.assess(
        caller_of(services, key),
        incident,
        severity=parse_severity(severity),
        risk_domain=None if domain is None else parse_risk_domain(domain),
        sector=None if sector is None else parse_sector(sector),
        member_state=member_state,
        dual_use=dual_use,
        avid=avid,
        determination=choice(Determination, determination, "determination"),
        harms=[choice(Harm, h, "harm") for h in harm],
        causal_link=choice(CausalLink, causal_link, "causal link"),
        regimes=[choice(Regime, r, "regime") for r in regime],
        provider_is_institution=provider_is_institution,
    )
    reasons: list[str] = next(
        (
            e.details.get("reasons", [])
            for e in reversed(services.raid.desk.timeline(caller_of(services, key), incident))
            if e.kind == "assessed"
        ),
        [],
    )
    if as_json:
        emit({**incident_json(found), "reasons": reasons})
        return
    out_console.print(f"{found.id}: {found.severity.value}")
    for reason in reasons:
        out_console.print(f"  {safe(reason)}", highlight=False)


@app.command("move")
@command_errors
def move(
    ctx: typer.Context,
    incident: str,
    to: str = typer.Argument(
        ..., help="triage, investigate, mitigate, resolve, close, decline, merge, duplicate, reopen."
    ),
    reason: str = typer.Option("", help="Why (needed to decline, merge, mark duplicate or reopen)."),
    into: str | None = typer.Option(None, help="The incident it joins (merge, duplicate)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Move an item through its lifecycle (the transition table decides what is allowed)."""
    services = services_of(ctx)
    found = services.raid.desk.move(
        caller_of(services, key), incident, choice(Move, to, "move"), reason=reason, into=into
    )
    if as_json:
        emit(incident_json(found))
        return
    out_console.print(f"{found.id}: {found.status.value}")


@app.command("assign")
@command_errors
def assign(ctx: typer.Context, incident: str, analyst: str, key: str | None = Key, as_json: bool = Json) -> None:
    """Give an item to a RAID analyst cleared for it."""
    services = services_of(ctx)
    found = services.raid.desk.assign(caller_of(services, key), incident, analyst)
    if as_json:
        emit(incident_json(found))
        return
    out_console.print(f"{found.id}: assigned to {found.assignee}")


@app.command("aware")
@command_errors
def aware(
    ctx: typer.Context,
    incident: str,
    at: str = typer.Option(..., help="When the desk became aware (ISO 8601 UTC)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Record when we became aware: every legal clock counts from it."""
    services = services_of(ctx)
    moment = parse_time(at)
    assert moment is not None
    found = services.raid.desk.set_aware(caller_of(services, key), incident, moment)
    if as_json:
        emit(incident_json(found))
        return
    out_console.print(f"{found.id}: aware since {moment.isoformat()}")


@app.command("facts")
@command_errors
def facts(
    ctx: typer.Context,
    incident: str,
    value: list[str] = typer.Option(..., "--set", help="FIELD=TEXT (repeat); an empty TEXT clears it."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Record what the recipients' forms ask (CoP 9.2 items, NIS2 fields)."""
    from aperture.core.errors import InvalidInput

    pairs = {}
    for item in value:
        name, sep, text = item.partition("=")
        if not sep:
            raise InvalidInput(f"{item!r} is not FIELD=TEXT", hint="--set harm='data of 20 people exposed'")
        pairs[name.strip()] = text
    services = services_of(ctx)
    found = services.raid.desk.record_facts(caller_of(services, key), incident, pairs)
    if as_json:
        emit(incident_json(found))
        return
    out_console.print(f"{found.id}: {', '.join(sorted(pairs))} recorded")


@app.command("route")
@command_errors
def route(ctx: typer.Context, incident: str, key: str | None = Key, as_json: bool = Json) -> None:
    """Route an item by the routing table and compute every clock from aware_at."""
    services = services_of(ctx)
    routes = services.raid.routing.route(caller_of(services, key), incident)
    if as_json:
        emit([route_json(r) for r in routes])
        return
    for chosen in routes:
        out_console.print(
            f"{chosen.id}  {safe(chosen.match.body)}  ({safe(chosen.match.legal_basis)})", highlight=False
        )


@app.command("clocks")
@command_errors
def clocks(ctx: typer.Context, incident: str, key: str | None = Key, as_json: bool = Json) -> None:
    """An item's routes and obligations with their deadlines and legal bases."""
    services = services_of(ctx)
    caller = caller_of(services, key)
    now = services.clock.now()
    routes = services.raid.routing.routes(caller, incident)
    found = services.raid.routing.obligations(caller, incident)
    if as_json:
        emit({"routes": [route_json(r) for r in routes], "obligations": [obligation_json(o, now) for o in found]})
        return
    table = Table("due", "party", "clock", "kind", "to", "met", "legal basis")
    for tracked in found:
        o = tracked.obligation
        late = " (overdue)" if tracked.overdue(now) else ""
        table.add_row(
            f"{o.due_at:%Y-%m-%d %H:%M}{late}",
            o.party.value,
            o.clock.value,
            o.kind,
            safe(o.recipient),
            "" if tracked.met_at is None else f"{tracked.met_at:%Y-%m-%d}",
            safe(o.legal_basis),
        )
    out_console.print(table)


@app.command("due")
@command_errors
def due(
    ctx: typer.Context,
    within_hours: int = typer.Option(7 * 24, min=1, max=24 * 366, help="Due within this many hours."),
    party: str | None = typer.Option(None, help="reporter or raid."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """The clocks dashboard: open obligations due soon, overdue first."""
    services = services_of(ctx)
    found = services.raid.routing.due(
        caller_of(services, key),
        within=timedelta(hours=within_hours),
        party=None if party is None else choice(Party, party, "party"),
    )
    now = services.clock.now()
    if as_json:
        emit([obligation_json(d.obligation, now) for d in found])
        return
    table = Table("due", "overdue", "item", "clock", "kind", "party", "to")
    for entry in found:
        o = entry.obligation.obligation
        table.add_row(
            f"{o.due_at:%Y-%m-%d %H:%M}",
            "yes" if entry.overdue else "",
            entry.obligation.incident_id,
            o.clock.value,
            o.kind,
            o.party.value,
            safe(o.recipient),
        )
    out_console.print(table)


@app.command("met")
@command_errors
def met(
    ctx: typer.Context,
    obligation: str,
    at: str | None = typer.Option(None, help="When it was met (default: now)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Record that an obligation was met (the next intermediate report follows)."""
    services = services_of(ctx)
    tracked = services.raid.routing.meet(caller_of(services, key), obligation, at=parse_time(at))
    if as_json:
        emit(obligation_json(tracked))
        return
    out_console.print(f"{tracked.id}: met")


@app.command("draft")
@command_errors
def draft(ctx: typer.Context, incident: str, form: str, key: str | None = Key, as_json: bool = Json) -> None:
    """A report in the recipient's fields: cop-9.2-initial, cop-9.2-final, nis2-early-warning, ..."""
    services = services_of(ctx)
    found = services.raid.routing.draft(caller_of(services, key), incident, parse_form(form))
    if as_json:
        emit(found.as_dict())
        return
    out_console.print(safe(found.text()), highlight=False)


@app.command("forward")
@command_errors
def forward(
    ctx: typer.Context,
    route_id: str = typer.Argument(..., metavar="ROUTE"),
    form: str | None = typer.Option(None, help="The form to send (default: by the route's clocks)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Send a routed report to its body through the outbox (as the law, consent and policy allow)."""
    services = services_of(ctx)
    chosen = services.raid.routing.forward(
        caller_of(services, key), route_id, form=None if form is None else parse_form(form)
    )
    if as_json:
        emit(route_json(chosen))
        return
    out_console.print(f"forwarded to {safe(chosen.match.body)} (queued in the outbox)")


@app.command("remind")
@command_errors
def remind(ctx: typer.Context, key: str | None = Key, as_json: bool = Json) -> None:
    """Queue reminders to reporters whose own deadlines come within the reminder window."""
    services = services_of(ctx)
    count = services.raid.routing.remind(caller_of(services, key))
    if as_json:
        emit({"queued": count})
        return
    out_console.print(f"{count} reminder(s) queued")
