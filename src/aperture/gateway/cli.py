"""`aperture gateway ...`: run the gateway alone; keys, backends, grants, limits, prices, safety
policies, usage and alerts."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aperture.access.domain import SYSTEM
from aperture.cli_support import (
    ALWAYS_JSON,
    command_errors,
    err_console,
    out_console,
    parse_expiry,
    print_json,
    require_initialised,
    state,
)
from aperture.core.errors import InvalidInput
from aperture.gateway.domain import BackendKind, GatewayKey, Limits, ScopeKind

app = typer.Typer(
    help="The inference gateway (OpenAI-compatible /v1): run it alone, or manage keys, backends, "
    "grants, limits, prices, safety policies, usage and alerts.",
)
keys_app = typer.Typer(help="Gateway keys of organisations: issue, list, revoke.", no_args_is_help=True)
backends_app = typer.Typer(help="Bind model versions to backends: add, list, remove, check.", no_args_is_help=True)
limits_app = typer.Typer(help="Rate limits and quotas per key or organisation: set, list.", no_args_is_help=True)
prices_app = typer.Typer(help="Prices per model version (EUR per million tokens): set, list.", no_args_is_help=True)
policy_app = typer.Typer(help="Safety policies per model version: set, show.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(backends_app, name="backends")
app.add_typer(limits_app, name="limits")
app.add_typer(prices_app, name="prices")
app.add_typer(policy_app, name="policy")


def _services(ctx: typer.Context) -> Any:
    services = state(ctx).services
    require_initialised(services)
    return services


def _key_json(key: GatewayKey, now: datetime) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "organisation": key.organisation,
        "created_at": key.created_at.isoformat(),
        "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
        "state": key.state(now),
    }


# --- keys -------------------------------------------------------------------------------------


@keys_app.command("issue")
@command_errors
def keys_issue(
    ctx: typer.Context,
    organisation: str = typer.Option(..., help="The organisation the key belongs to."),
    name: str = typer.Option(..., help="What the key is for (an application)."),
    expires: str | None = typer.Option(None, help="Expiry as ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Issue a gateway key for an organisation. The key text is shown once."""
    services = _services(ctx)
    issued = services.gateway.issue_key(SYSTEM, organisation=organisation, name=name, expires_at=parse_expiry(expires))
    if as_json:
        print_json({**_key_json(issued.key, services.clock.now()), "key": issued.text})
    else:
        out_console.print(f"key id: {issued.key.key_id}\nkey (shown once): [bold]{issued.text}[/]", soft_wrap=True)


@keys_app.command("list")
@command_errors
def keys_list(
    ctx: typer.Context,
    organisation: str | None = typer.Option(None, help="Only this organisation's keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List gateway keys (never their secrets)."""
    services = _services(ctx)
    now = services.clock.now()
    keys = services.gateway.list_keys(SYSTEM, organisation)
    if as_json:
        print_json([_key_json(k, now) for k in keys])
        return
    table = Table("key id", "organisation", "name", "state", "expires")
    for k in keys:
        table.add_row(k.key_id, k.organisation, k.name, k.state(now), k.expires_at.isoformat() if k.expires_at else "")
    out_console.print(table)


@keys_app.command("revoke")
@command_errors
def keys_revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="The key's 8-hex id.")) -> None:
    """Revoke a gateway key (every replica refuses it within APERTURE_GATEWAY_CACHE_S)."""
    services = _services(ctx)
    services.gateway.revoke_key(SYSTEM, key_id)
    out_console.print(f"revoked {key_id}")


# --- backends ---------------------------------------------------------------------------------


@backends_app.command("add")
@command_errors
def backends_add(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME:VERSION of a registered version."),
    embedded: bool = typer.Option(False, "--embedded", help="Run it in the gateway's own process."),
    url: str | None = typer.Option(None, help="An OpenAI-compatible server's base URL, e.g. http://host:8000/v1."),
    remote_model: str | None = typer.Option(None, help="The model name that server knows (default: the name)."),
    timeout: float = typer.Option(60.0, help="Seconds a request to the server may take (then 504)."),
    api_key_file: Path | None = typer.Option(None, help="A file holding the server's own API key, if it needs one."),
) -> None:
    """Bind a model version to the embedded engine or to a remote server."""
    if embedded == (url is not None):
        raise InvalidInput("give exactly one of --embedded and --url", hint="e.g. --url http://10.0.0.5:8000/v1")
    services = _services(ctx)
    kind = BackendKind.EMBEDDED if embedded else BackendKind.REMOTE
    api_key = None
    if api_key_file is not None:
        if not api_key_file.is_file() or api_key_file.stat().st_size > 4096:
            raise InvalidInput(
                f"{api_key_file} is not a readable key file", hint="give a file with the key on one line"
            )
        api_key = api_key_file.read_text(encoding="utf-8").strip()
    backend = services.gateway.bind(
        SYSTEM, model, kind, url=url, remote_model=remote_model, timeout_s=timeout, api_key=api_key
    )
    where = "the embedded engine" if backend.url is None else f"{backend.url} as {backend.remote_model}"
    out_console.print(f"{backend.model} is served by {where}", highlight=False)


@backends_app.command("list")
@command_errors
def backends_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the bound model versions."""
    services = _services(ctx)
    rows = [
        {
            "model": b.model,
            "kind": b.kind.value,
            "url": b.url,
            "remote_model": b.remote_model,
            "timeout_s": b.timeout_s,
            "tier": (lambda t: None if t is None else t.value)(services.release.tier_of(*b.model.split(":", 1))),
        }
        for b in services.gateway.backends()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("model", "kind", "url", "remote model", "timeout s", "tier")
    for row in rows:
        table.add_row(*(str(row[k] or "") for k in ("model", "kind", "url", "remote_model", "timeout_s", "tier")))
    out_console.print(table)


@backends_app.command("remove")
@command_errors
def backends_remove(ctx: typer.Context, model: str = typer.Argument(..., help="NAME:VERSION")) -> None:
    """Unbind a model version (it is no longer served)."""
    _services(ctx).gateway.unbind(SYSTEM, model)
    out_console.print(f"{model} is no longer served")


@backends_app.command("check")
@command_errors
def backends_check(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Health-check every remote backend now (exit 9 when one is unhealthy)."""
    services = _services(ctx)

    async def check() -> list[dict[str, Any]]:
        try:
            found: list[dict[str, Any]] = await services.gateway.check_backends()
            return found
        finally:
            await services.gateway.clients.aclose()

    results = asyncio.run(check())
    if as_json:
        print_json(results)
    else:
        for row in results:
            mark = "[green]ok[/]" if row["healthy"] else "[red]unhealthy[/]"
            out_console.print(f"{row['model']:<40} {row['kind']:<9} {mark} {row['detail']}", highlight=False)
    if any(not row["healthy"] for row in results):
        raise typer.Exit(9)


# --- grants, limits, prices, policies ---------------------------------------------------------


@app.command("grant")
@command_errors
def grant(
    ctx: typer.Context,
    organisation: str = typer.Argument(..., help="The organisation."),
    model: str = typer.Argument(..., help="NAME:VERSION of a licensed or secured version."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the grant back."),
) -> None:
    """Grant (or revoke) an organisation's access to a licensed or secured version through the gateway."""
    _services(ctx).gateway.grant(SYSTEM, organisation, model, revoke=revoke)
    out_console.print(f"{organisation} {'may no longer' if revoke else 'may now'} call {model}")


@limits_app.command("set")
@command_errors
def limits_set(
    ctx: typer.Context,
    key: str | None = typer.Option(None, help="A key's 8-hex id."),
    organisation: str | None = typer.Option(None, help="An organisation."),
    rpm: int | None = typer.Option(None, help="Requests per minute."),
    tpm: int | None = typer.Option(None, help="Tokens per minute (prompt + completion)."),
    monthly_tokens: int | None = typer.Option(None, help="Tokens per calendar month (UTC)."),
    max_tokens: int | None = typer.Option(None, help="The most new tokens one request may ask for."),
) -> None:
    """Set the limits of a key or an organisation (options left out: no limit)."""
    if (key is None) == (organisation is None):
        raise InvalidInput("give exactly one of --key and --organisation", hint="e.g. --organisation acme --rpm 60")
    kind, scope = (ScopeKind.KEY, key) if key is not None else (ScopeKind.ORGANISATION, organisation)
    assert scope is not None
    _services(ctx).gateway.set_limits(SYSTEM, kind, scope, Limits(rpm, tpm, monthly_tokens, max_tokens))
    out_console.print(f"limits of {kind.value} {scope} set")


@limits_app.command("list")
@command_errors
def limits_list(
    ctx: typer.Context,
    as_json: bool = ALWAYS_JSON,
) -> None:
    """List the limits in force (as JSON)."""
    limits = _services(ctx).gateway.limits()
    print_json([{"scope_kind": k.value, "scope": s, **v.as_dict()} for (k, s), v in sorted(limits.items())])


@prices_app.command("set")
@command_errors
def prices_set(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME:VERSION"),
    input_eur: float = typer.Option(..., "--input", help="EUR per million prompt tokens."),
    output_eur: float = typer.Option(..., "--output", help="EUR per million completion tokens."),
) -> None:
    """Set a version's prices (applied to usage metered from now on)."""
    price = _services(ctx).gateway.set_price(SYSTEM, model, input_eur, output_eur)
    out_console.print(f"{price.model}: {price.input_eur_per_mtok} EUR in, {price.output_eur_per_mtok} EUR out per 1M")


@prices_app.command("list")
@command_errors
def prices_list(
    ctx: typer.Context,
    as_json: bool = ALWAYS_JSON,
) -> None:
    """List the prices (as JSON)."""
    prices = _services(ctx).gateway.prices()
    print_json(
        [
            {"model": p.model, "input_eur_per_mtok": p.input_eur_per_mtok, "output_eur_per_mtok": p.output_eur_per_mtok}
            for p in prices.values()
        ]
    )


@policy_app.command("set")
@command_errors
def policy_set(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME:VERSION"),
    file: Path = typer.Argument(..., help="A JSON file with input and output keywords and patterns."),
) -> None:
    """Set a version's safety policy from a JSON file (64 KiB at most)."""
    if not file.is_file() or file.stat().st_size > 64 * 1024:
        raise InvalidInput(f"{file} is not a readable file of at most 64 KiB", hint="check the path")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{file} is not JSON: {error}", hint="check the file") from None
    policy = _services(ctx).gateway.set_policy(SYSTEM, model, data)
    out_console.print(
        f"{policy.model}: {len(policy.input.keywords) + len(policy.input.patterns)} input rules, "
        f"{len(policy.output.keywords) + len(policy.output.patterns)} output rules"
        + (f", classifier {policy.classifier}" if policy.classifier else "")
    )


@policy_app.command("show")
@command_errors
def policy_show(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME:VERSION"),
    as_json: bool = ALWAYS_JSON,
) -> None:
    """Print a version's safety policy (JSON)."""
    policy = _services(ctx).gateway.policies().get(model)
    print_json(None if policy is None else policy.as_dict())


# --- usage and alerts -------------------------------------------------------------------------


@app.command("usage")
@command_errors
def usage(
    ctx: typer.Context,
    organisation: str | None = typer.Option(None, help="Only this organisation."),
    since: str | None = typer.Option(None, help="First day, YYYY-MM-DD."),
    until: str | None = typer.Option(None, help="Last day, YYYY-MM-DD."),
    output_format: str = typer.Option("table", "--format", help="table, csv or json."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the same as --format json)."),
) -> None:
    """Metered usage per day, organisation, key and model, priced."""
    if as_json:
        if output_format not in ("table", "json"):
            raise InvalidInput(f"--json and --format {output_format} disagree", hint="give one of them")
        output_format = "json"
    if output_format not in ("table", "csv", "json"):
        raise InvalidInput(f"unknown format {output_format!r}", hint="use table, csv or json")
    services = _services(ctx)
    rows = services.gateway.usage(SYSTEM, organisation=organisation, since=since, until=until)
    if output_format == "csv":
        sys.stdout.write(services.gateway.usage_csv(rows))
    elif output_format == "json":
        print_json([row.as_dict() for row in rows])
    else:
        table = Table("day", "organisation", "key", "model", "requests", "blocked", "prompt", "completion", "EUR")
        for row in rows:
            data = row.as_dict()
            table.add_row(*(str(data[c]) for c in data))
        out_console.print(table)


@app.command("alerts")
@command_errors
def alerts(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only alerts the risk desk has not picked up."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the evidence)."),
) -> None:
    """Misuse alerts raised by the gateway (repeated blocks from one key), for the risk desk."""
    found = _services(ctx).gateway.alerts(SYSTEM, open_only=open_only)
    if as_json:
        print_json([a.as_dict() for a in found])
        return
    if not found:
        err_console.print("no alerts")
    for alert in found:
        out_console.print(f"{alert.raised_at:%Y-%m-%d %H:%M} UTC  {alert.kind}  {alert.summary}", highlight=False)
