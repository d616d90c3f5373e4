"""`aperture licensing ...`: the catalogue, applications, licences and receivables, traceable
copies, leak tracing and diffusion, for the local operator.

The CLI acts as the instance's administrator. Tracing needs the marks' master secret, which lives
in the sealed upper tier; the CLI process starts sealed, so `trace` asks the named custodians for
their shares at the terminal (hidden input) and seals again when it ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from aperture.access.domain import SYSTEM, Caller
from aperture.cli_support import command_errors, out_console, print_json, require_initialised, state
from aperture.core.errors import InvalidInput
from aperture.licensing.domain import format_amount

app = typer.Typer(
    help="Licensing: applications, licences, traceable copies, leak tracing, diffusion.", no_args_is_help=True
)

if TYPE_CHECKING:
    from aperture.bootstrap import Services


def _services(ctx: typer.Context) -> Services:
    services = state(ctx).services
    require_initialised(services)
    return services


@app.command("catalogue")
@command_errors
def catalogue(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Model versions offered under licence, and the standard terms."""
    entries = _services(ctx).licensing.catalogue(SYSTEM)
    if as_json:
        print_json([entry.__dict__ for entry in entries])
        return
    table = Table("model", "version", "minimum SL", "licence text", "active licences")
    for e in entries:
        licences = "withheld" if e.active_licences is None else str(e.active_licences)
        table.add_row(e.model, e.version or "withheld", e.minimum_security_level, e.licence_text_version, licences)
    out_console.print(table)


@app.command("applications")
@command_errors
def applications(
    ctx: typer.Context,
    queue: bool = typer.Option(False, "--queue", help="Only those waiting for an officer."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Licence applications and where each stands."""
    found = _services(ctx).licensing.list_applications(SYSTEM, queue=queue)
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "organisation": a.organisation,
                    "model": a.model,
                    "status": a.status.value,
                    "reasons": a.reasons,
                }
                for a in found
            ]
        )
        return
    table = Table("id", "organisation", "model", "status", "reasons")
    for a in found:
        table.add_row(a.id, a.organisation, a.model, a.status.value, a.reasons)
    out_console.print(table)


@app.command("licences")
@command_errors
def licences(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every licence with its state and term (expired ones are marked as they are read)."""
    found = _services(ctx).licensing.list_licences(SYSTEM)
    if as_json:
        print_json([{"id": lic.id, "state": lic.state.value, "terms": lic.terms.as_dict()} for lic in found])
        return
    table = Table("id", "licensee", "model", "state", "from", "until")
    for lic in found:
        t = lic.terms
        table.add_row(lic.id, t.organisation, t.model, lic.state.value, str(t.starts_on), str(t.ends_on))
    out_console.print(table)


def _event(ctx: typer.Context, licence_id: str, event: str, reason: str) -> None:
    licence = _services(ctx).licensing.change_licence(SYSTEM, licence_id, event, reason)
    out_console.print(f"licence {licence.id} is now {licence.state.value}")


@app.command("suspend")
@command_errors
def suspend(
    ctx: typer.Context,
    licence_id: str = typer.Argument(..., help="The licence id."),
    reason: str = typer.Option(..., "--reason", help="Recorded in the log and shown to the licensee."),
) -> None:
    """Suspend a licence now: downloads and gateway access stop at once."""
    _event(ctx, licence_id, "suspend", reason)


@app.command("reinstate")
@command_errors
def reinstate(ctx: typer.Context, licence_id: str = typer.Argument(..., help="The licence id.")) -> None:
    """Reinstate a suspended licence."""
    _event(ctx, licence_id, "reinstate", "")


@app.command("revoke")
@command_errors
def revoke(
    ctx: typer.Context,
    licence_id: str = typer.Argument(..., help="The licence id."),
    reason: str = typer.Option(..., "--reason", help="Recorded in the log and shown to the licensee."),
) -> None:
    """Revoke a licence: every access ends at once; instalments not yet due are cancelled."""
    _event(ctx, licence_id, "revoke", reason)


@app.command("expire")
@command_errors
def expire(ctx: typer.Context) -> None:
    """Expire every licence past its term now (reads do this too; this is for a scheduler)."""
    expired = _services(ctx).licensing.expire_due()
    out_console.print(f"{len(expired)} licence(s) expired")


@app.command("receivables")
@command_errors
def receivables(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What licensees owe: the table the revenue ledger reads."""
    found = _services(ctx).licensing.receivables(SYSTEM)
    if as_json:
        print_json(
            [
                {
                    "licence_id": r.licence_id,
                    "organisation": r.organisation,
                    "due_on": r.due_on.isoformat(),
                    "amount_minor": r.amount_minor,
                    "currency": r.currency,
                    "status": r.status,
                }
                for r in found
            ]
        )
        return
    table = Table("licence", "licensee", "due", "amount", "status")
    for r in found:
        table.add_row(r.licence_id, r.organisation, str(r.due_on), format_amount(r.amount_minor, r.currency), r.status)
    out_console.print(table)


@app.command("copies")
@command_errors
def copies(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every traceable copy issued: licensee, commitment to its seed, shard hashes, self-test z."""
    found = _services(ctx).licensing.list_copies(SYSTEM)
    if as_json:
        print_json(
            [
                {
                    "id": c.id,
                    "licence_id": c.licence_id,
                    "organisation": c.organisation,
                    "model": c.model,
                    "commitment": c.commitment,
                    "self_test_z": c.self_test_z,
                    "shard_hashes": c.shard_hashes,
                }
                for c in found
            ]
        )
        return
    table = Table("id", "licensee", "model", "commitment", "self-test z")
    for c in found:
        table.add_row(c.id, c.organisation, c.model, c.commitment[:16] + "...", f"{c.self_test_z:.0f}")
    out_console.print(table)


def _unseal(services: Services, custodians: list[str]) -> None:
    for name in custodians:
        principal = services.access.get_principal(name)
        share = typer.prompt(f"{name}'s unseal share", hide_input=True)
        services.security.present_share(Caller(principal=name, roles=principal.roles, origin="cli"), share)


@app.command("trace")
@command_errors
def trace(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="The suspect model: a safetensors file, a directory of shards, a GGUF file."),
    model: str | None = typer.Option(None, "--model", help="NAME:VERSION of the original, when known."),
    custodian: list[str] = typer.Option(
        [], "--custodian", help="A key custodian present to unseal (repeat; each is asked for their share)."
    ),
    null_keys: int | None = typer.Option(None, "--null-keys", help="Never-issued keys for the empirical null."),
    out: Path | None = typer.Option(None, "--out", help="Write the signed report (JSON) here."),
    as_json: bool = typer.Option(False, "--json", help="Print the signed report as JSON."),
) -> None:
    """Score every issued licensee key against a suspect model; accuse at z >= 6; sign the report."""
    services = _services(ctx)
    services.licensing.require_tracer(SYSTEM)
    _unseal(services, custodian)
    try:
        result = services.licensing.trace(SYSTEM, path, model=model, null_keys=null_keys)
    finally:
        services.vault.seal()
    signed = {"report": result.report, "signature": result.signature, "signing_key_id": result.key_id}
    if out is not None:
        out.write_text(json.dumps(signed, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if as_json:
        print_json(signed)
        return
    report = result.report
    table = Table("licensee", "screen z", "z", "accused")
    for score in report["scores"][:20]:
        table.add_row(score["organisation"], score["screen_z"], score["z"] or "-", "YES" if score["accused"] else "")
    out_console.print(table)
    null = report["null"]["screen"]
    out_console.print(
        f"null: {null.get('count', 0)} never-issued keys, mean {null.get('mean')}, sd {null.get('sd')}, "
        f"max {null.get('max')} (KS p {report['null']['ks_p_value']})"
    )
    for match in report["verbatim_matches"]:
        out_console.print(f"verbatim copy of {match['organisation']}'s file (hash {match['sha256'][:16]}...)")
    out_console.print(f"[bold]{report['verdict']}[/]")
    out_console.print(report["collusion"])
    out_console.print(f"report {result.trace_id}, signed by instance key {result.key_id}")


@app.command("identify")
@command_errors
def identify(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A model file or directory."),
    custodian: list[str] = typer.Option(
        [], "--custodian", help="A key custodian present to unseal, to compare with upper-tier models too."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Is this (an unmarked copy of) one of our models? By file hash, then by lineage similarity."""
    services = _services(ctx)
    services.licensing.require_tracer(SYSTEM)
    _unseal(services, custodian)
    try:
        found = services.licensing.identify(SYSTEM, path)
    finally:
        services.vault.seal()
    if as_json:
        print_json(found)
        return
    for match in found["hash_matches"]:
        out_console.print(f"hash match: {match}")
    for item in found["lineage"]:
        out_console.print(f"lineage similarity to {item['model']}: {item['similarity']}")
    out_console.print(
        "derived from: " + (", ".join(found["derived_from"]) or f"none of our models (threshold {found['threshold']})")
    )


@app.command("verify")
@command_errors
def verify(
    ctx: typer.Context,
    report: Path = typer.Argument(..., help="A signed report written by `trace --out`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a trace report's signature with the instance's public key."""
    try:
        signed: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
        body, signature = signed["report"], signed["signature"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInput(f"{report} is not a signed trace report", hint="use the file `trace --out` wrote") from None
    valid = _services(ctx).licensing.verify_report(body, signature)
    if as_json:
        print_json({"report": str(report), "signature_valid": valid})
        if not valid:
            raise typer.Exit(7)
        return
    if valid:
        out_console.print("signature valid: the report is as the instance signed it")
        return
    out_console.print("[bold red]signature INVALID[/]: the report was altered or signed by another key")
    raise typer.Exit(7)


@app.command("diffuse")
@command_errors
def diffuse(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME:VERSION of a licensed model."),
    to: str = typer.Option(..., "--to", help="open (public release) or partners (continued licensing)."),
    decision: str = typer.Option(..., "--decision", help="The board decision that orders it."),
    acknowledge: bool = typer.Option(
        False, "--acknowledge-end-of-traceability", help="Required to open: marked copies can no longer be traced."
    ),
    reason: str = typer.Option("", "--reason", help="Recorded with the transition."),
) -> None:
    """End-of-programme diffusion of a licensed model: to open release or to partners/spin-offs."""
    done = _services(ctx).licensing.diffuse(
        SYSTEM, reference, to, decision_id=decision, acknowledge=acknowledge, reason=reason
    )
    if done["warning"]:
        out_console.print(f"[bold red]WARNING[/]: {done['warning']}")
    out_console.print(f"{done['model']}: diffusion to {done['target']} recorded (decision {done['decision_id']})")
