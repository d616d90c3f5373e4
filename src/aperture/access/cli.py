"""`aperture keys ...`: issue, list and revoke API keys."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from aperture.access.domain import SYSTEM, Role
from aperture.bootstrap import require_initialised
from aperture.cli_support import command_errors, out_console, print_json, state
from aperture.core.errors import InvalidInput

app = typer.Typer(help="API keys: issue, list, revoke.", no_args_is_help=True)


@app.command("issue")
@command_errors
def issue(
    ctx: typer.Context,
    name: str = typer.Option(..., help="What the key is for."),
    principal: str = typer.Option(..., help="Who acts with it (a person or service account)."),
    role: list[str] = typer.Option(["researcher"], help="Role(s); repeat the option for several."),
    expires: str | None = typer.Option(None, help="Expiry as ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Issue a key (operator action on the instance). The key text is shown once."""
    services = state(ctx).services
    require_initialised(services)
    try:
        roles = tuple(Role(value) for value in role)
    except ValueError as error:
        raise InvalidInput(str(error), hint="roles: " + ", ".join(r.value for r in Role)) from None
    expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None
    issued = services.access.issue_key(SYSTEM, name=name, principal=principal, roles=roles, expires_at=expires_at)
    if as_json:
        print_json({"key_id": issued.key.key_id, "key": issued.text})
    else:
        out_console.print(f"key id: {issued.key.key_id}\nkey (shown once): [bold]{issued.text}[/]")


@app.command("list")
@command_errors
def list_keys(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (never their secrets)."""
    services = state(ctx).services
    require_initialised(services)
    keys = services.access.list_keys()
    if as_json:
        print_json(
            [
                {
                    "key_id": k.key_id,
                    "name": k.name,
                    "principal": k.principal,
                    "roles": [r.value for r in k.roles],
                    "created_at": k.created_at.isoformat(),
                    "expires_at": k.expires_at.isoformat() if k.expires_at else None,
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return
    table = Table("key id", "name", "principal", "roles", "state")
    for k in keys:
        table.add_row(k.key_id, k.name, k.principal, ",".join(k.roles), "revoked" if k.revoked_at else "active")
    out_console.print(table)


@app.command("revoke")
@command_errors
def revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="The 8-hex key id.")) -> None:
    """Revoke a key at once."""
    services = state(ctx).services
    require_initialised(services)
    services.access.revoke_key(SYSTEM, key_id)
    out_console.print(f"revoked {key_id}")
