"""Sharing, STIX exchange, the outbox and the sharing policy."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from aperture.cli_support import command_errors, out_console
from aperture.raid.cli._commands import Json, Key, app, emit
from aperture.raid.cli._support import (
    caller_of,
    choice,
    incident_json,
    message_json,
    read_file,
    safe,
    services_of,
)
from aperture.raid.messages import MessageStatus
from aperture.raid.tlp import parse_tlp


@app.command("share")
@command_errors
def share(
    ctx: typer.Context,
    incident: str,
    tlp: str | None = typer.Option(None, help="A new TLP 2.0 label."),
    principal: list[str] = typer.Option([], help="Name a principal on it (repeat)."),
    remove_principal: list[str] = typer.Option([], help="Remove a named principal (repeat)."),
    organisation: list[str] = typer.Option([], help="Share with an organisation (repeat)."),
    remove_organisation: list[str] = typer.Option([], help="Stop sharing with an organisation (repeat)."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Relabel an item or change who it is shared with."""
    services = services_of(ctx)
    found = services.raid.sharing.share(
        caller_of(services, key),
        incident,
        tlp=None if tlp is None else parse_tlp(tlp),
        add_principals=principal,
        remove_principals=remove_principal,
        add_organisations=organisation,
        remove_organisations=remove_organisation,
    )
    if as_json:
        emit(incident_json(found))
        return
    out_console.print(f"{found.id}: {found.tlp.label}")


@app.command("export")
@command_errors
def export(
    ctx: typer.Context,
    status: list[str] = typer.Option([], help="Only these statuses (repeat)."),
    out: Path | None = typer.Option(None, help="Write the bundle here instead of stdout."),
    key: str | None = Key,
) -> None:
    """A STIX 2.1 bundle of the items you may see (validated, official TLP 2.0 markings)."""
    from aperture.raid.service import Filter

    services = services_of(ctx)
    text = services.raid.sharing.export(caller_of(services, key), Filter(statuses=tuple(status)))
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n", encoding="utf-8")
        out_console.print(f"wrote {out}")


@app.command("import")
@command_errors
def import_bundle(ctx: typer.Context, path: Path, key: str | None = Key, as_json: bool = Json) -> None:
    """Take a partner's STIX 2.1 bundle (every marking checked; the whole bundle or nothing)."""
    services = services_of(ctx)
    data = read_file(path, services.raid.context.config.stix_max_bytes)
    result = services.raid.sharing.import_bundle(caller_of(services, key), data)
    if as_json:
        emit({"taken": list(result.taken), "skipped": result.skipped})
        return
    out_console.print(f"{len(result.taken)} taken, {result.skipped} already known")


@app.command("outbox")
@command_errors
def outbox(
    ctx: typer.Context,
    status: str | None = typer.Option(None, help="pending, sent or dead."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """The outbox's messages and their delivery state."""
    services = services_of(ctx)
    chosen = None if status is None else choice(MessageStatus, status, "status")
    found = services.raid.outbox.messages(caller_of(services, key), status=chosen)
    if as_json:
        emit([message_json(m) for m in found])
        return
    table = Table("created", "kind", "status", "attempts", "to", "subject")
    for message in found:
        table.add_row(
            f"{message.created_at:%Y-%m-%d %H:%M}",
            message.kind.value,
            message.status.value,
            str(message.attempts),
            safe(message.recipient),
            safe(message.subject),
        )
    out_console.print(table)


@app.command("deliver")
@command_errors
def deliver(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", help="Keep delivering until interrupted."),
    interval: float = typer.Option(5.0, min=0.1, help="Seconds between rounds with --watch."),
    key: str | None = Key,
    as_json: bool = Json,
) -> None:
    """Send what is due in the outbox by SMTP (retries with backoff; marked sent once accepted)."""
    services = services_of(ctx)
    caller = caller_of(services, key)
    while True:
        report_ = services.raid.outbox.deliver(caller)
        if as_json:
            emit({"sent": report_.sent, "retried": report_.retried, "dead": report_.dead})
        else:
            out_console.print(f"{report_.sent} sent, {report_.retried} to retry, {report_.dead} given up")
        if not watch:
            return
        time.sleep(interval)


@app.command("policy")
@command_errors
def policy(ctx: typer.Context, as_json: bool = Json) -> None:
    """The published policy on what RAID shares with regulators beyond what the law requires."""
    found = services_of(ctx).raid.routing.sharing_policy()
    if as_json:
        emit(found)
        return
    out_console.print(f"{found['policy']}: {found['text']}")
