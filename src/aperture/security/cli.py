"""`aperture seal ...` and `aperture security ...`: the upper tier's key custody and the alerts.

The CLI is the local operator. It creates the tier's key and hands out the shares; unsealing
happens in the server process that serves the upper tier (custodians present their shares over
the API or on the /security page), because the unsealed key lives only in that process's memory.
"""

from __future__ import annotations

import typer
from rich.table import Table

from aperture.access.domain import SYSTEM
from aperture.cli_support import command_errors, out_console, print_json, require_initialised, state

seal_app = typer.Typer(
    help="The upper tier's key: create it k-of-n among custodians, show the seal.", no_args_is_help=True
)
security_app = typer.Typer(help="The security desk: alerts and grants.", no_args_is_help=True)


@seal_app.command("init")
@command_errors
def init_seal(
    ctx: typer.Context,
    custodian: list[str] = typer.Option(..., help="A key custodian (repeat; each gets one share)."),
    threshold: int = typer.Option(..., help="How many custodians must present their shares to unseal."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create the upper tier's key and split it among the custodians. Prints each share ONCE."""
    services = state(ctx).services
    require_initialised(services)
    shares = services.security.init_seal(SYSTEM, custodian, threshold)
    if as_json:
        print_json({"threshold": threshold, "shares": [{"custodian": c, "share": s} for c, s in shares]})
        return
    out_console.print(f"upper tier key created: {threshold} of {len(shares)} custodians unseal it")
    out_console.print("hand each custodian their share now; they are not stored and not shown again:")
    for name, share in shares:
        out_console.print(f"  {name}: {share}", highlight=False, soft_wrap=True)


@seal_app.command("status")
@command_errors
def seal_status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Whether the upper tier has a key, and its custodians (this process is always sealed)."""
    services = state(ctx).services
    require_initialised(services)
    status = services.security.seal_status(SYSTEM)
    if as_json:
        print_json(
            {
                "initialised": status.initialised,
                "threshold": status.threshold,
                "shares": status.shares,
                "custodians": list(status.custodians),
            }
        )
        return
    if not status.initialised:
        out_console.print("the upper tier has no key yet: `aperture seal init --custodian NAME ... --threshold K`")
        return
    out_console.print(
        f"{status.threshold} of {status.shares} custodians unseal the upper tier: {', '.join(status.custodians)}"
    )


@security_app.command("alerts")
@command_errors
def alerts(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only alerts nobody acknowledged."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Canary touches, download surges, reaches outside programmes, bad shares, replayed tokens."""
    services = state(ctx).services
    require_initialised(services)
    found = services.security.alerts(SYSTEM, open_only=open_only)
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "raised_at": a.raised_at.isoformat(),
                    "severity": a.severity.value,
                    "kind": a.kind.value,
                    "principal": a.principal,
                    "asset": a.asset.uid if a.asset else None,
                    "origin": a.origin,
                    "summary": a.summary,
                    "acknowledged_by": a.acknowledged_by,
                }
                for a in found
            ]
        )
        return
    table = Table("raised", "severity", "kind", "who", "from", "summary")
    for a in found:
        table.add_row(
            a.raised_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.severity.value,
            a.kind.value,
            a.principal,
            a.origin or "",
            a.summary,
        )
    out_console.print(table)


@security_app.command("grants")
@command_errors
def grants(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every weight-access grant and its state."""
    services = state(ctx).services
    require_initialised(services)
    found = services.security.list_grants(SYSTEM)
    if as_json:
        print_json(
            [
                {
                    "id": v.grant.id,
                    "model": v.label,
                    "action": v.grant.action.value,
                    "state": v.state,
                    "requester": v.grant.requester,
                    "approver": v.grant.approver,
                    "officer": v.grant.officer,
                    "expires_at": v.grant.expires_at.isoformat() if v.grant.expires_at else None,
                }
                for v in found
            ]
        )
        return
    table = Table("grant", "model", "action", "state", "requester", "approver", "officer")
    for v in found:
        g = v.grant
        table.add_row(g.id, v.label, g.action.value, v.state, g.requester, g.approver or "", g.officer or "")
    out_console.print(table)
