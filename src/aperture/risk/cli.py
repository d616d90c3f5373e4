"""`aperture assess ...`: run suites, resume, import evidence, attach findings, show risk profiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from aperture.access.domain import SYSTEM
from aperture.cli_support import (
    ALWAYS_JSON,
    ProgressBar,
    command_errors,
    err_console,
    out_console,
    print_json,
    require_initialised,
    state,
)
from aperture.core.errors import InvalidInput
from aperture.risk.domain import ATTACK_GRIDS, SUITES, RiskDomain, Safeguard

if TYPE_CHECKING:
    from aperture.risk.service import RunOutcome

app = typer.Typer(help="Risk assessment: evaluation suites, evidence, risk profiles.", no_args_is_help=True)


class ItemProgress(ProgressBar):
    """Items done / total with ETA on stderr (terminal only); resumed items count as done."""

    def start(self, label: str, total: int, done: int) -> None:
        if self.quiet:
            return
        if done:
            self.note(f"resuming {label}: {done} of {total} items already scored")
        if not err_console.is_terminal:
            self.note(f"scoring {label}: {total - done} items")
            return
        self._add_task(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            description=label,
            total=total,
            completed=done,
        )


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def headline_text(headline: dict[str, Any] | None) -> str:
    if not headline:
        return "-"
    low, high = headline["ci95"]
    text = f"{headline['metric']} {_percent(headline['value'])} [{_percent(low)}, {_percent(high)}] n={headline['n']}"
    if headline.get("p_value") is not None:
        text += f", p(>chance)={headline['p_value']:.3g}"
    return text


def _print_outcome(outcome: RunOutcome) -> None:
    evidence = outcome.evidence
    headline = evidence.headline.to_dict() if evidence and evidence.headline else None
    out_console.print(
        f"[bold]{outcome.suite}[/] run {outcome.run_id}: {headline_text(headline)}"
        + (f" ({outcome.resumed_items} resumed)" if outcome.resumed_items else ""),
        highlight=False,
        soft_wrap=True,
    )


@app.command("suites")
@command_errors
def suites(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the evaluation suites and what each measures."""
    rows = [suite.to_dict() for suite in SUITES.values()]
    if as_json:
        print_json(rows)
        return
    table = Table("suite", "measures", "metric", "data")
    for row in rows:
        table.add_row(row["name"], row["domain"] or row["safeguard"] or "", row["metric"], ", ".join(row["files"]))
    out_console.print(table)
    out_console.print("and `tamper`: fine-tuning attack grids " + ", ".join(ATTACK_GRIDS), highlight=False)


@app.command("run")
@command_errors
def run(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    suite: list[str] = typer.Option(["all"], "--suite", "-s", help="Suite name (repeat), or all."),
    limit: int | None = typer.Option(None, "--limit", help="Score a spread sample of this many items per suite."),
    seed: int = typer.Option(0, "--seed", help="Sampling offset for --limit (recorded for replay)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, max=4096, help="Bound on generated answers."),
    time_limit: float = typer.Option(120.0, "--time-limit", min=1.0, help="Seconds per generation batch at most."),
    judge: str = typer.Option("rules", "--judge", help="rules | model:DIR | openai:URL#MODEL"),
    engine: str = typer.Option(
        "local", "--engine", help="local (the version's weights, in process) | openai:URL#MODEL (a served copy)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run evaluation suites on a registered version's weights; each result becomes evidence."""
    from aperture.risk.providers import validate_engine_spec, validate_judge_spec
    from aperture.risk.scoring import GenerationSettings
    from aperture.risk.service import RunOptions

    names = list(SUITES) if suite == ["all"] else suite
    for name in names:
        if name not in SUITES:
            raise InvalidInput(f"there is no suite named {name!r}", hint=f"choose from: {', '.join(SUITES)}, all")
    validate_judge_spec(judge)
    validate_engine_spec(engine)
    services = state(ctx).services
    require_initialised(services)
    options = RunOptions(limit, seed, GenerationSettings(max_new_tokens, time_limit), judge, engine)
    outcomes = []
    with ItemProgress(quiet=as_json) as bar:
        for name in names:
            try:
                outcome = services.risk.run_suite(SYSTEM, reference, name, options, progress=bar)
            except KeyboardInterrupt:
                err_console.print(
                    "interrupted: the completed chunks are saved; continue with `aperture assess resume RUN_ID` "
                    "(see `aperture assess runs`)"
                )
                raise typer.Exit(130) from None
            outcomes.append(outcome)
            if not as_json:
                _print_outcome(outcome)
    if as_json:
        print_json([_outcome_json(o) for o in outcomes])


def _outcome_json(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "run": outcome.run_id,
        "suite": outcome.suite,
        "status": outcome.status,
        "items": outcome.items,
        "resumed_items": outcome.resumed_items,
        "evidence": outcome.evidence.to_dict() if outcome.evidence else None,
        "profile_version": outcome.profile_version,
    }


@app.command("resume")
@command_errors
def resume(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run to continue (see `aperture assess runs`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Continue an interrupted run from its last completed chunk."""
    services = state(ctx).services
    require_initialised(services)
    with ItemProgress(quiet=as_json) as bar:
        outcome = services.risk.resume(SYSTEM, run_id, progress=bar)
    if as_json:
        print_json(_outcome_json(outcome))
    else:
        _print_outcome(outcome)


@app.command("runs")
@command_errors
def runs(
    ctx: typer.Context,
    reference: str | None = typer.Argument(None, help="MODEL:VERSION (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List assessment runs, newest first."""
    services = state(ctx).services
    require_initialised(services)
    found = services.risk.runs(SYSTEM, reference)
    if as_json:
        print_json(found)
        return
    table = Table("run", "suite", "model", "status", "items", "started")
    for item in found:
        table.add_row(
            item["id"],
            item["suite"],
            item["inputs"]["model"],
            item["status"],
            f"{item['items_done']}/{item['items_total']}",
            item["created_at"].isoformat(timespec="seconds"),
        )
    out_console.print(table)


@app.command("results")
@command_errors
def results(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="A run id."),
    as_json: bool = ALWAYS_JSON,
) -> None:
    """Every item's result of a run (including generated answers), as JSON."""
    services = state(ctx).services
    require_initialised(services)
    print_json(services.risk.run_details(SYSTEM, run_id))


@app.command("import")
@command_errors
def import_evidence(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="An Inspect log (.eval or .json) or lm-evaluation-harness results JSON."),
    reference: str = typer.Option(..., "--model", help="The MODEL:VERSION the log evaluated."),
    override_reason: str | None = typer.Option(
        None, "--override-reason", help="Accept a log naming another model digest, recording why."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Import evaluation results from elsewhere as evidence (the file's hash is kept as provenance)."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file", hint="pass the path of an evaluation log")
    services = state(ctx).services
    require_initialised(services)
    items, profile_version = services.risk.import_log(
        SYSTEM, reference, path.read_bytes(), path.name, override_reason=override_reason
    )
    if as_json:
        print_json({"evidence": [i.to_dict() for i in items], "profile_version": profile_version})
        return
    for item in items:
        out_console.print(
            f"imported [bold]{item.title}[/]: {headline_text(item.headline.to_dict() if item.headline else None)}",
            highlight=False,
            soft_wrap=True,
        )
    out_console.print(f"risk profile version {profile_version}")


@app.command("finding")
@command_errors
def finding(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    title: str = typer.Option(..., "--title", help="What was found."),
    author: str = typer.Option(..., "--author", help="Who found it (a person or team)."),
    summary: str = typer.Option("", "--summary", help="The finding in a few sentences."),
    domain: RiskDomain | None = typer.Option(None, "--domain", help="Risk domain."),
    safeguard: Safeguard | None = typer.Option(None, "--safeguard", help="Safeguard concerned."),
    attachment: Path | None = typer.Option(None, "--attachment", help="The report file (stored by content)."),
    level: str | None = typer.Option(
        None, "--level", help="Capability level the finding establishes: low, notable, elevated or critical."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Attach a manual expert finding (e.g. a red-team report) as evidence."""
    services = state(ctx).services
    require_initialised(services)
    evidence, profile_version = services.risk.add_finding(
        SYSTEM,
        reference,
        title=title,
        summary=summary,
        author=author,
        domain=domain,
        safeguard=safeguard,
        attachment=attachment,
        level=level,
    )
    if as_json:
        print_json({"evidence": evidence.to_dict(), "profile_version": profile_version})
    else:
        out_console.print(f"attached finding {evidence.id}; risk profile version {profile_version}")


@app.command("tamper")
@command_errors
def tamper(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    grid: str = typer.Option("default", "--grid", help="Attack grid: " + ", ".join(ATTACK_GRIDS)),
    suite: list[str] = typer.Option(["wmdp-bio", "strongreject"], "--suite", "-s", help="Suites re-run per attack."),
    limit: int | None = typer.Option(64, "--limit", help="Items per suite per attack (None: all)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, max=4096, help="Bound on generated answers."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Fine-tune copies of the weights over a declared attack grid and re-run suites on each."""
    services = state(ctx).services
    require_initialised(services)
    from aperture.risk.tamper import TamperRunner

    runner = TamperRunner(services.risk)
    with ItemProgress(quiet=as_json) as bar:
        evidence, profile_version = runner.run(
            SYSTEM, reference, grid, suite, limit=limit, max_new_tokens=max_new_tokens, progress=bar
        )
    if as_json:
        print_json({"evidence": evidence.to_dict(), "profile_version": profile_version})
        return
    for name, row in evidence.summary["suites"].items():
        verdict = "BROKEN" if row["broken"] else "held"
        out_console.print(
            f"[bold]{name}[/]: {verdict}, held in {row['cells_held']}/{row['cells']} cells; "
            f"worst {headline_text(row['worst'])} at {row['worst_cell']}",
            highlight=False,
            soft_wrap=True,
        )
    out_console.print(f"risk profile version {profile_version}")


@app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="MODEL:VERSION"),
    profile_version: int | None = typer.Option(None, "--profile-version", help="An earlier profile version."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a version's risk profile: per domain and safeguard, headline with 95% CI, crossings, gaps."""
    services = state(ctx).services
    require_initialised(services)
    profile = services.risk.profile(reference, profile_version, caller=SYSTEM)
    if as_json:
        print_json(profile)
        return
    out_console.print(
        f"[bold]risk profile of {profile['model']}[/] (version {profile['profile_version']})", highlight=False
    )
    table = Table("domain / safeguard", "headline (95% CI)", "evidence", "crosses", "missing")
    for row in [*profile["domains"], *profile["safeguards"]]:
        headline = row["headline"]
        table.add_row(
            row["subject"],
            headline_text(headline["headline"]) if headline else "-",
            str(len(row["evidence"])),
            ", ".join(c["label"] for c in row["crossed"]) or "-",
            row["missing"] or "",
        )
    out_console.print(table)
    out_console.print(profile["caveat"], style="dim", highlight=False)
