"""`aperture raid routing|contact|advisory ...`: the routing table, contacts, advisories."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from aperture.cli_support import command_errors, out_console
from aperture.raid import routing
from aperture.raid.cli._commands import Json, Key, emit
from aperture.raid.cli._support import advisory_json, caller_of, parse_time, read_text, safe, services_of
from aperture.raid.disclosure import parse_policy

routing_app = typer.Typer(help="The routing table: show it, check a file, adopt a new version.", no_args_is_help=True)
contact_app = typer.Typer(
    help="Where the desk's messages go: bodies' and organisations' addresses.", no_args_is_help=True
)
advisory_app = typer.Typer(
    help="Advisories: draft, tell affected parties privately, embargo, publish as CSAF 2.0.", no_args_is_help=True
)


@routing_app.command("show")
@command_errors
def show_table(ctx: typer.Context, as_json: bool = Json) -> None:
    """The routing table in force, rule by rule, with its sources."""
    table = services_of(ctx).raid.routing.table()
    rows = routing.describe(table)
    if as_json:
        emit({"version": table.version, "title": table.title, "digest": table.digest, "routes": rows})
        return
    view = Table("rule", "body", "legal basis", "clocks", "verified", title=f"{table.title} (version {table.version})")
    for row in rows:
        view.add_row(row["id"], safe(row["body"]), safe(row["legal_basis"]), ", ".join(row["clocks"]), row["verified"])
    out_console.print(view)


@routing_app.command("check")
@command_errors
def check_table(ctx: typer.Context, path: Path, as_json: bool = Json) -> None:
    """Validate a routing table file without adopting it (every problem named with its place)."""
    table = services_of(ctx).raid.routing.check(read_text(path))
    if as_json:
        emit({"valid": True, "version": table.version, "routes": len(table.rules), "digest": table.digest})
        return
    out_console.print(f"valid: version {table.version}, {len(table.rules)} routes, sha256 {table.digest}")


@routing_app.command("adopt")
@command_errors
def adopt_table(ctx: typer.Context, path: Path, key: str | None = Key) -> None:
    """Adopt a new version of the routing table (validated first; recorded in the log)."""
    services = services_of(ctx)
    table = services.raid.routing.adopt(caller_of(services, key), read_text(path))
    out_console.print(f"routing table version {table.version} adopted (sha256 {table.digest})")


@contact_app.command("set")
@command_errors
def set_contact(ctx: typer.Context, name: str, address: str, key: str | None = Key) -> None:
    """The address for a body (as the routing table names it) or an organisation."""
    services = services_of(ctx)
    services.raid.routing.save_contact(caller_of(services, key), name, address)
    out_console.print(f"{safe(name)}: {safe(address)}")


@contact_app.command("list")
@command_errors
def list_contacts(ctx: typer.Context, key: str | None = Key, as_json: bool = Json) -> None:
    """Every contact the desk knows."""
    services = services_of(ctx)
    found = services.raid.routing.contacts(caller_of(services, key))
    if as_json:
        emit(found)
        return
    for name, address in found.items():
        out_console.print(f"{safe(name)}: {safe(address)}", highlight=False)


@advisory_app.command("draft")
@command_errors
def draft_advisory(
    ctx: typer.Context,
    incident: str,
    title: str = typer.Option(..., help="The advisory's title (public once published)."),
    summary: str = typer.Option(..., help="What it says (public once published)."),
    remediation: str = typer.Option("", help="What to do."),
    policy: str | None = typer.Option(None, help="cert-cc, project-zero, project-zero-itw, days or none."),
    days: int | None = typer.Option(None, min=1, max=3650, help="Days of embargo with --policy days."),
    fixed_at: str | None = typer.Option(None, help="When a fix shipped (Project Zero policies)."),
    grace: bool = typer.Option(False, "--grace", help="The Project Zero grace period was requested."),
    party: list[str] = typer.Option([], help="An affected organisation to tell privately (repeat)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Draft an advisory about an item; its embargo is computed from when it was reported."""
    services = services_of(ctx)
    advisory = services.raid.disclosure.draft(
        caller_of(services, key),
        incident,
        title=title,
        summary=summary,
        remediation=remediation,
        policy=None if policy is None else parse_policy(policy),
        days=days,
        fixed_at=parse_time(fixed_at),
        grace=grace,
        parties=party,
    )
    if as_json:
        emit(advisory_json(advisory))
        return
    until = advisory.embargo_until.isoformat() if advisory.embargo_until else "no fixed date"
    out_console.print(f"advisory {advisory.id}: embargo until {until}")


@advisory_app.command("notify")
@command_errors
def notify(ctx: typer.Context, advisory: str, key: str | None = Key, as_json: bool = Json) -> None:
    """Tell every affected party privately (TLP:AMBER+STRICT), through the outbox."""
    services = services_of(ctx)
    found = services.raid.disclosure.notify(caller_of(services, key), advisory)
    if as_json:
        emit(advisory_json(found))
        return
    out_console.print(f"{len(found.parties)} part{'y' if len(found.parties) == 1 else 'ies'} told privately")


@advisory_app.command("decide-early")
@command_errors
def decide_early(
    ctx: typer.Context,
    advisory: str,
    reason: str = typer.Option(..., help="Why it must be published before the embargo ends (recorded)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Record the decision to publish before the embargo ends (chief scientist or programme director)."""
    services = services_of(ctx)
    found = services.raid.disclosure.decide_early(caller_of(services, key), advisory, reason)
    if as_json:
        emit(advisory_json(found))
        return
    out_console.print(f"{found.id}: early publication decided")


@advisory_app.command("extend")
@command_errors
def extend_embargo(
    ctx: typer.Context,
    advisory: str,
    until: str = typer.Option(..., help="The new embargo end (ISO 8601 UTC); only later than now set."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Extend an embargo (shortening it takes a recorded decision)."""
    services = services_of(ctx)
    moment = parse_time(until)
    assert moment is not None
    found = services.raid.disclosure.extend(caller_of(services, key), advisory, moment)
    if as_json:
        emit(advisory_json(found))
        return
    out_console.print(f"{found.id}: embargo until {moment.isoformat()}")


@advisory_app.command("publish")
@command_errors
def publish(ctx: typer.Context, advisory: str, key: str | None = Key, as_json: bool = Json) -> None:
    """Publish as a CSAF 2.0 document (after the embargo, or by a recorded decision)."""
    services = services_of(ctx)
    found = services.raid.disclosure.publish(caller_of(services, key), advisory)
    if as_json:
        emit(advisory_json(found))
        return
    out_console.print(f"{found.id}: published")


@advisory_app.command("list")
@command_errors
def list_advisories(
    ctx: typer.Context,
    published: bool = typer.Option(False, "--published", help="Only published advisories (public)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Advisories: the desk's (drafts and embargoed too) or only the published ones."""
    services = services_of(ctx)
    found = (
        services.raid.disclosure.published()
        if published
        else services.raid.disclosure.advisories(caller_of(services, key))
    )
    if as_json:
        emit([advisory_json(a) for a in found])
        return
    table = Table("id", "status", "embargo until", "title")
    for advisory in found:
        until = advisory.embargo_until.strftime("%Y-%m-%d") if advisory.embargo_until else "none"
        table.add_row(advisory.id, advisory.status.value, until, safe(advisory.title))
    out_console.print(table)


@advisory_app.command("csaf")
@command_errors
def show_csaf(ctx: typer.Context, advisory: str) -> None:
    """A published advisory's CSAF 2.0 JSON (validated against the OASIS schema)."""
    sys.stdout.write(services_of(ctx).raid.disclosure.csaf(advisory) + "\n")
