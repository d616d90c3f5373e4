"""`aperture policy ...` and `aperture release ...`: policies as code, decisions, the board, reports.

The local operator (no key) may read, decide and adopt policies. Acts that belong to a person
(proposing, voting, declaring a conflict, challenging, carrying out) take that person's API key
with `--key`, so every vote in the log is the member's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from aperture.access.domain import SYSTEM, Caller
from aperture.cli_support import command_errors, out_console, print_json, require_initialised, state
from aperture.core.errors import InvalidInput, NotFound
from aperture.release.domain import CONTROLS, Tier
from aperture.release.policy import TierDecision, parse_policy
from aperture.release.reports import FORMATS

policy_app = typer.Typer(help="Release policies as code: check, compare, adopt.", no_args_is_help=True)
release_app = typer.Typer(
    help="Release decisions: decide, propose, vote, carry out, stages, the public registry and reports.",
    no_args_is_help=True,
)

KEY_HELP = "Your API key (apk_...): the act is recorded as yours."

if TYPE_CHECKING:
    from aperture.bootstrap import Services


def _services(ctx: typer.Context) -> Services:
    services = state(ctx).services
    require_initialised(services)
    return services


def _person(services: Services, key: str) -> Caller:
    return services.access.authenticate(key.strip())


def _read(path: Path) -> str:
    if not path.is_file():
        raise NotFound(f"{path} does not exist", hint="pass the path of a policy YAML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text", hint="a policy is a YAML text file") from None


# --- policy -------------------------------------------------------------------------------


@policy_app.command("check")
@command_errors
def check(
    path: Path = typer.Argument(..., help="Policy YAML file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Validate a policy file: every problem is named with its rule and the fix."""
    policy = parse_policy(_read(path), str(path))
    counts: dict[str, int] = {}
    for rule in policy.rules:
        counts[rule.type] = counts.get(rule.type, 0) + 1
    if as_json:
        print_json(
            {
                "name": policy.name,
                "version": policy.version,
                "digest": policy.digest,
                "valid": True,
                "rules": len(policy.rules),
                "rule_types": counts,
            }
        )
        return
    out_console.print(f"{policy.label}: valid, {len(policy.rules)} rules, sha256 {policy.digest}")
    for rule_type, count in sorted(counts.items()):
        out_console.print(f"  {count} {rule_type}")


@policy_app.command("diff")
@command_errors
def diff(
    old: Path = typer.Argument(..., help="The policy in force (or an older file)."),
    new: Path = typer.Argument(..., help="The proposed policy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Explain what changed between two policies, rule by rule."""
    from aperture.release.service import ReleaseService

    changes = ReleaseService.diff(_read(old), _read(new))
    if as_json:
        print_json([{"kind": c.kind, "rule": c.rule, "detail": c.detail} for c in changes])
        return
    if not changes:
        out_console.print("no changes")
    for change in changes:
        out_console.print(f"{change.kind:8} {change.rule}: {change.detail}", highlight=False)


@policy_app.command("adopt")
@command_errors
def adopt(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Policy YAML file."),
    reason: str = typer.Option(..., "--reason", help="Why the policy changes (logged)."),
) -> None:
    """Put a policy in force: validated, signed with the instance key, logged. Decisions in force get re-assessed."""
    services = _services(ctx)
    row = services.release.adopt_policy(SYSTEM, _read(path), reason)
    out_console.print(f"adopted {row['name']} v{row['version']} (sha256 {row['digest']}), signed by {row['key_id']}")


@policy_app.command("show")
@command_errors
def show_policy(
    ctx: typer.Context,
    digest: str | None = typer.Option(None, "--digest", help="An earlier adopted policy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: name, version, sha256 and the YAML text."),
) -> None:
    """Print the policy in force (or an earlier one) as YAML, byte for byte: `> FILE` then `policy check FILE`."""
    release = _services(ctx).release
    if as_json:
        print_json(release.policy_document(digest))
        return
    text = release.policy_text(digest)
    out_console.file.write(text if text.endswith("\n") else text + "\n")


@policy_app.command("list")
@command_errors
def list_policies(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every adopted policy, newest first, with its signature check."""
    rows = _services(ctx).release.policies()
    if as_json:
        print_json(rows)
        return
    table = Table("in force", "policy", "sha256", "adopted", "by", "signature", "reason")
    for row in rows:
        table.add_row(
            "yes" if row["active"] else "",
            f"{row['name']} v{row['version']}",
            row["digest"][:12],
            row["adopted_at"][:19],
            row["adopted_by"],
            "valid" if row["signature_valid"] else "INVALID",
            row["reason"],
        )
    out_console.print(table)


# --- release ------------------------------------------------------------------------------


def _print_decision(decision: TierDecision) -> None:
    out_console.print(f"[bold]{decision.summary()}[/]", highlight=False)
    table = Table("domain", "level", "why")
    for level in decision.levels:
        shown = level.to_dict()
        table.add_row(shown["domain"], shown["level"], shown["reason"])
    out_console.print(table)
    rules = Table("rule", "outcome", "reason")
    for result in decision.results:
        rules.add_row(result.rule, result.outcome, result.reason)
    out_console.print(rules)
    if decision.missing:
        out_console.print("missing: " + "; ".join(decision.missing), highlight=False)
    for obligation in decision.obligations:
        out_console.print(f"obligation: {obligation}", highlight=False)


@release_app.command("decide")
@command_errors
def decide_command(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    comparable_open_model: str | None = typer.Option(None, "--comparable-open-model", help="Declared open peer."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What the policy in force decides for a version now, with every rule's reason (changes nothing)."""
    decision = _services(ctx).release.evaluate(SYSTEM, reference, comparable_open_model=comparable_open_model)
    if as_json:
        print_json(decision.to_dict())
    else:
        _print_decision(decision)


@release_app.command("tiers")
def tiers(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The four tiers, most open first, and the controls each implies."""
    rows = [CONTROLS[t].as_dict() for t in Tier]
    if as_json:
        print_json(rows)
        return
    table = Table(
        "tier", "min storage", "who may hold weights", "gateway", "weights leave", "tamper proof", "reversible"
    )
    for row in rows:
        table.add_row(
            *(str(row[k]) for k in ("tier", "minimum_security_level", "weight_holders")),
            *("yes" if row[k] else "no" for k in ("gateway_may_serve", "weights_leave_institution")),
            *("yes" if row[k] else "no" for k in ("tamper_resistance_required", "reversible")),
        )
    out_console.print(table)


def _print_proposal(proposal: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(proposal)
        return
    out_console.print(
        f"proposal {proposal['id']}: {proposal['model']} -> {proposal['tier']} [{proposal['status']}]"
        f" ({len([v for v in proposal['votes'] if v['approve']])}/{proposal['quorum']} approvals)",
        highlight=False,
    )
    if proposal["status_reason"]:
        out_console.print(f"  {proposal['status_reason']}", highlight=False)
    for vote in proposal["votes"]:
        out_console.print(f"  {vote['member']}: {'approve' if vote['approve'] else 'reject'} — {vote['reason']}")
    for conflict in proposal["conflicts"]:
        out_console.print(f"  {conflict['member']}: conflict declared — {conflict['reason']}")
    if proposal["cooling_off_until"] and proposal["status"] == "cooling-off":
        out_console.print(f"  cooling off until {proposal['cooling_off_until']}; then `aperture release carry-out`")
    for stage in proposal["stages"]:
        out_console.print(f"  stage {stage['position']}: {stage['tier']} due {stage['due_at']} ({stage['state']})")


@release_app.command("propose")
@command_errors
def propose(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    tier: Tier = typer.Option(..., "--tier", help="The tier proposed."),
    rationale: str = typer.Option(..., "--rationale", help="Why this tier."),
    stage: list[str] = typer.Option([], "--stage", help="A later stage TIER@DAYS[:CONDITION] (repeat)."),
    stage_id: str | None = typer.Option(None, "--stage-id", help="Decide this planned stage (when it is due)."),
    comparable_open_model: str | None = typer.Option(None, "--comparable-open-model", help="Declared open peer."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Propose a tier to the release board (programme directors)."""
    services = _services(ctx)
    from aperture.release.service import parse_stage

    planned = [parse_stage(text) for text in stage]
    proposal = services.release.propose(
        _person(services, key),
        reference,
        tier,
        rationale,
        stages=planned,
        comparable_open_model=comparable_open_model,
        stage_id=stage_id,
    )
    _print_proposal(proposal, as_json)


@release_app.command("vote")
@command_errors
def vote(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    approve: bool = typer.Option(..., "--approve/--reject", help="Your vote."),
    reason: str = typer.Option(..., "--reason", help="Why (published with the decision)."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Vote on a proposal (release board members; one vote each, with a reason)."""
    services = _services(ctx)
    _print_proposal(services.release.vote(_person(services, key), proposal_id, approve, reason), as_json)


@release_app.command("conflict")
@command_errors
def conflict(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    reason: str = typer.Option(..., "--reason", help="The conflict of interest."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
) -> None:
    """Declare a conflict of interest: you are excluded from this vote (published)."""
    services = _services(ctx)
    _print_proposal(services.release.declare_conflict(_person(services, key), proposal_id, reason), False)


@release_app.command("challenge")
@command_errors
def challenge(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    reason: str = typer.Option(..., "--reason", help="What is wrong with the decision."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
) -> None:
    """Challenge an opening of weights during its cooling-off period."""
    services = _services(ctx)
    _print_proposal(services.release.challenge(_person(services, key), proposal_id, reason), False)


@release_app.command("carry-out")
@command_errors
def carry_out(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
) -> None:
    """Carry out an opening once its cooling-off period has passed unchallenged."""
    services = _services(ctx)
    _print_proposal(services.release.carry_out(_person(services, key), proposal_id), False)


@release_app.command("withdraw")
@command_errors
def withdraw(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    reason: str = typer.Option(..., "--reason", help="Why."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
) -> None:
    """Withdraw a proposal still open for votes (its proposer)."""
    services = _services(ctx)
    _print_proposal(services.release.withdraw(_person(services, key), proposal_id, reason), False)


@release_app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A proposal with its votes, conflicts, challenges, stages and signed decision."""
    _print_proposal(_services(ctx).release.proposal(SYSTEM, proposal_id), as_json)


@release_app.command("proposals")
@command_errors
def proposals(
    ctx: typer.Context,
    reference: str | None = typer.Argument(None, help="MODEL:VERSION (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Release proposals, newest first."""
    rows = _services(ctx).release.proposals(SYSTEM, reference)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "model", "tier", "status", "proposer", "created")
    for row in rows:
        table.add_row(row["id"], row["reference"], row["tier"], row["status"], row["proposer"], row["created_at"][:19])
    out_console.print(table)


@release_app.command("verify")
@command_errors
def verify(
    ctx: typer.Context,
    proposal_id: str = typer.Argument(..., help="Proposal id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a decision's signature with the instance's public key."""
    valid = _services(ctx).release.verify_decision(SYSTEM, proposal_id)
    if as_json:
        print_json({"proposal": proposal_id, "signature_valid": valid})
    elif valid:
        out_console.print("signature valid")
    if not valid:
        raise typer.Exit(3)


@release_app.command("timeline")
@command_errors
def timeline(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A version's decisions, planned stages (planned, due, overdue) and why it needs re-assessment."""
    data = _services(ctx).release.timeline(SYSTEM, reference)
    if as_json:
        print_json(data)
        return
    out_console.print(f"{data['model']}: {data['tier'] or 'no tier in effect'}")
    for decision in data["decisions"]:
        out_console.print(
            f"  {decision['created_at'][:10]} {decision['tier']:9} {decision['status']} ({decision['proposal']})"
        )
    for stage in data["stages"]:
        when = stage["due_at"][:10]
        out_console.print(
            f"  stage {stage['position']}: {stage['tier']} due {when} [{stage['state']}] {stage['condition']}"
        )
    for reason in data["reassessment"]:
        out_console.print(f"  re-assess: {reason}", highlight=False)


@release_app.command("due")
@command_errors
def due(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Reminders: stages due or overdue, and decisions to re-assess (new evidence, incidents, policy)."""
    rows = _services(ctx).release.due(SYSTEM)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out_console.print("nothing due")
    for row in rows:
        detail = "; ".join(row["reasons"]) if "reasons" in row else f"{row['tier']} due {row['due_at'][:10]}"
        out_console.print(f"{row['kind']}: {row['model']}: {detail}", highlight=False)


@release_app.command("trigger")
@command_errors
def trigger(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    reason: str = typer.Option(..., "--reason", help="The incident."),
    key: str = typer.Option(..., "--key", help=KEY_HELP),
) -> None:
    """Record an incident on a model: its release decision must be re-assessed."""
    services = _services(ctx)
    result = services.release.trigger(_person(services, key), reference, reason)
    out_console.print(f"{result['model']}: re-assessment needed: {'; '.join(result['reasons'])}", highlight=False)


@release_app.command("registry")
@command_errors
def registry(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The public registry: every model, its tier and reasons; upper-tier entries redacted."""
    rows = _services(ctx).release.public_registry()
    if as_json:
        print_json(rows)
        return
    table = Table("model", "tier", "since", "decision")
    for row in rows:
        summary = (row.get("decision") or {}).get("summary", "")
        if row["redacted"]:
            summary = "withheld: " + row["withheld"][0]["why"]
        table.add_row(row["model"], row["tier"], (row["effective_at"] or "")[:10], summary)
    out_console.print(table)


@release_app.command("report")
@command_errors
def report(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    fmt: str = typer.Option("md", "--format", help=f"One of {', '.join(FORMATS)}."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout; pdf needs one)."),
) -> None:
    """Model card, safety and security report and EU documentation form, as Markdown, HTML, JSON or PDF."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "pdf" and output is None:
        raise InvalidInput("a PDF needs a file to go to", hint="pass --output report.pdf")
    content = _services(ctx).release.report(SYSTEM, reference, fmt)
    if output is None:
        out_console.file.write(content.decode("utf-8"))
        return
    output.write_bytes(content)
    out_console.print(f"wrote {output} ({len(content)} bytes)")
