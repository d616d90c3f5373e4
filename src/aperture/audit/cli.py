"""`aperture audit ...`: read the transparency log, sign tree heads, print and check proofs; and
`aperture verify-release`, which checks a release from a running instance's public material.

The CLI is the local operator: it reads the private view (every withheld field, with the salt
that proves it)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aperture.audit.domain import (
    Checkpoint,
    SignedTreeHead,
    VerificationReport,
    check_bundle,
    full_event,
    shown_member,
    tree_head_json,
    verify_signed_note,
)
from aperture.cli_support import command_errors, errors_to_exit, out_console, print_json, require_initialised, state
from aperture.core.errors import IntegrityFailure, InvalidInput, TooLarge

app = typer.Typer(
    help="The transparency log: events, signed tree heads, inclusion and consistency proofs.",
    no_args_is_help=True,
)

MAX_BUNDLE_BYTES = 4 * 1024 * 1024  # a proof at 2**64 leaves is ~4 KB; anything near this is not ours
MAX_KEY_BYTES = 16 * 1024
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"no {what} file at {path}", hint="give the path of an existing file")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"the {what} file {path} is larger than {limit} bytes", hint=f"is {path} really a {what}?")
    return data


def _print_head(head: SignedTreeHead) -> None:
    out_console.print(f"tree size {head.tree_size}", highlight=False)
    out_console.print(f"root      {head.root_hash.hex()}", highlight=False, soft_wrap=True)
    out_console.print(f"issued    {head.issued_at} by key {head.key_id}", highlight=False)
    out_console.print("signed checkpoint:", highlight=False)
    out_console.print(head.signed_note, end="", highlight=False, markup=False, soft_wrap=True)


@app.command("list")
@command_errors
def list_events(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=500, help="How many events (newest first)."),
    before: int | None = typer.Option(None, min=0, help="Only events with a leaf index below this (paging)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the newest events of the log."""
    services = state(ctx).services
    require_initialised(services)
    records = services.audit.list_records(limit=limit, before=before)
    events = [services.audit.event_json(record) for record in records]
    if as_json:
        print_json({"tree_size": services.audit.tree_size(), "events": events})
        return
    table = Table("leaf", "time (UTC)", "actor", "action", "resource", "details")
    for record, event in zip(records, events, strict=True):
        details = json.dumps(full_event(record).details, ensure_ascii=False, sort_keys=True)
        table.add_row(
            str(event["leaf_index"]),
            event["occurred_at"],
            shown_member(event, "actor"),
            event["action"],
            shown_member(event, "resource"),
            details if len(details) <= 60 else details[:57] + "...",
        )
    out_console.print(table)


@app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    leaf_index: int = typer.Argument(..., min=0, help="The event's leaf index."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one event with its leaf hash: every field, and what the public view withholds."""
    services = state(ctx).services
    require_initialised(services)
    record = services.audit.get_record(leaf_index)
    body = services.audit.event_json(record)
    if as_json:
        print_json(body)
        return
    full = full_event(record)
    for key in ("leaf_index", "event_id", "occurred_at", "action", "leaf_hash", "schema_version"):
        out_console.print(f"{key:12} {body[key]}", highlight=False, markup=False)
    out_console.print(f"{'actor':12} {full.actor}", highlight=False, markup=False)
    out_console.print(f"{'resource':12} {full.resource}", highlight=False, markup=False)
    out_console.print(f"{'details':12} {json.dumps(full.details, ensure_ascii=False, sort_keys=True)}", markup=False)
    withheld = sorted(body.get("disclosed") or {})
    public = "nothing withheld" if not withheld else "withheld from the public: " + ", ".join(withheld)
    out_console.print(f"{'public view':12} {public}", highlight=False, markup=False)


@app.command("head")
@command_errors
def head(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Sign a tree head for the log at its current size (the latest is reused if nothing changed)."""
    services = state(ctx).services
    require_initialised(services)
    signed = services.audit.issue_tree_head()
    if as_json:
        print_json(tree_head_json(signed))
        return
    _print_head(signed)


def _print_report(report: VerificationReport, elapsed_s: float) -> None:
    out_console.print(
        f"read {report.tree_size} events in {elapsed_s:.2f} s; root {report.root_hash.hex()}; "
        f"{report.heads_checked} signed tree heads, {report.nodes_checked} stored subtree hashes, "
        f"{report.checkpoints_checked} external checkpoints and {report.private_checked} withheld fields checked; "
        f"the latest signed head covers {report.signed_size} of {report.tree_size} events",
        highlight=False,
    )
    for problem in report.problems:
        out_console.print(f"[red]{problem.kind.value}[/] at {problem.where}: {problem.message}", highlight=False)
    if report.problems_not_listed:
        out_console.print(f"... and {report.problems_not_listed} more problems", highlight=False)
    for warning in report.warnings:
        out_console.print(f"[yellow]warning[/] ({warning.kind.value}) at {warning.where}: {warning.message}")
    if report.ok:
        out_console.print(
            "[green]OK[/]: every row, withheld field, signed tree head, stored subtree hash and checkpoint matches"
            + (" (see the warnings)" if report.warnings else "")
        )


def checkpoint_text(path: Path) -> str:
    """A checkpoint saved earlier, as its signed-note text: the file holds the note itself
    (GET /api/v1/audit/checkpoint) or a tree head's JSON (`aperture audit head --json`)."""
    raw = _read_bounded(path, MAX_BUNDLE_BYTES, "checkpoint")
    hint = "save one with `curl URL/api/v1/audit/checkpoint > FILE` or `aperture audit head --json > FILE`"
    text: Any
    try:
        text = raw.decode("utf-8")
        if text.lstrip().startswith("{"):
            loaded = json.loads(text)
            text = loaded.get("checkpoint") if isinstance(loaded, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{path} is not a checkpoint: {error}", hint=hint) from None
    if not isinstance(text, str):
        raise InvalidInput(f"{path} is not a checkpoint: its JSON has no `checkpoint` text", hint=hint)
    return text


def read_checkpoint(path: Path, public_key_pem: str) -> Checkpoint:
    """A checkpoint saved earlier, which must be signed by the instance key."""
    try:
        return verify_signed_note(checkpoint_text(path), public_key_pem)
    except ValueError as error:
        raise InvalidInput(
            f"{path} is not a checkpoint signed by this instance's key: {error}",
            hint="give a checkpoint this instance signed (GET /api/v1/audit/checkpoint)",
        ) from None


def head_age_limit(interval_s: int) -> timedelta:
    """How old the latest head may be while events wait unsigned: an hour, or two periods of the
    server's signing interval if that is longer."""
    return timedelta(seconds=max(3600, 2 * interval_s))


@app.command("verify")
@command_errors
def verify(
    ctx: typer.Context,
    checkpoints: list[Path] = typer.Option(
        [],
        "--checkpoint",
        help="A signed checkpoint saved earlier (kept outside the instance): the log must still extend it. Repeatable.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 7 on warnings too (unsigned events, an old head)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recompute the whole tree from the rows; check every signed tree head, withheld field and
    checkpoint given. Exit 7 if tampered (or, with --strict, if anything is unsigned)."""
    services = state(ctx).services
    require_initialised(services)
    public_key_pem = services.keys.public_key_pem
    saved = [read_checkpoint(path, public_key_pem) for path in checkpoints]
    started = time.perf_counter()
    report = services.audit.verify(
        checkpoints=saved, max_head_age=head_age_limit(services.settings.tree_head_interval_s)
    )
    elapsed = time.perf_counter() - started
    if as_json:
        print_json({**report.to_json(), "elapsed_s": round(elapsed, 3)})
    else:
        _print_report(report, elapsed)
    if not report.ok:
        first = report.problems[0]
        raise IntegrityFailure(
            f"the transparency log does not verify: {len(report.problems) + report.problems_not_listed} "
            f"problem(s), the first at {first.where}",
            hint="the rows were changed outside Aperture; restore them from a backup and investigate",
            details=report.to_json(),
        )
    if strict and report.warnings:
        raise IntegrityFailure(
            f"the transparency log verifies but {len(report.warnings)} warning(s) stand (--strict): "
            f"{report.warnings[0].message}",
            hint="`aperture audit head` signs the events no head covers yet",
            details=report.to_json(),
        )


@app.command("prove")
@command_errors
def prove(
    ctx: typer.Context,
    leaf_index: int | None = typer.Argument(None, min=0, help="Leaf index of the event to prove."),
    size: int | None = typer.Option(
        None, "--size", min=0, help="Tree size to prove against (default: the latest signed tree head)."
    ),
    consistency: tuple[int, int] | None = typer.Option(
        None, "--consistency", metavar="M N", help="Prove that the tree of M leaves is a prefix of the tree of N."
    ),
    as_json: bool = typer.Option(True, "--json", help="Print JSON (always: the output is the proof bundle)."),
) -> None:
    """Print an inclusion proof (`prove N`) or a consistency proof (`prove --consistency M N`) as a
    JSON bundle that `aperture audit check-proof` verifies offline."""
    services = state(ctx).services
    require_initialised(services)
    bundle: dict[str, Any]
    if consistency is not None:
        if leaf_index is not None or size is not None:
            raise InvalidInput("give either a leaf index or --consistency M N", hint="not both")
        first, second = consistency
        bundle = services.audit.consistency_proof(first, second).to_json()
    elif leaf_index is not None:
        bundle = services.audit.inclusion_proof(leaf_index, size).to_json()
    else:
        raise InvalidInput(
            "nothing to prove", hint="`aperture audit prove N` or `aperture audit prove --consistency M N`"
        )
    print_json(bundle)


def instance_key_from(path: Path) -> str:
    """The instance's Ed25519 public key from a PEM file or a saved keys.json
    (GET /.well-known/aperture/keys.json)."""
    raw = _read_bounded(path, MAX_KEY_BYTES, "public key")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not a PEM key or a keys.json", hint="give instance-ed25519.pub") from None
    if not text.lstrip().startswith("{"):
        return text
    try:
        keys = json.loads(text)["keys"]
        return str(next(key["public_key_pem"] for key in keys if key["name"] == "instance"))
    except (json.JSONDecodeError, KeyError, TypeError, StopIteration):
        raise InvalidInput(
            f"{path} is not a keys.json with an instance key",
            hint="save it with `curl URL/.well-known/aperture/keys.json > keys.json`",
        ) from None


@app.command("check-proof")
@command_errors
def check_proof(
    file: Path = typer.Argument(..., help="A bundle printed by `aperture audit prove` (or the API)."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The instance's Ed25519 public key (PEM), or a saved keys.json."
    ),
    keys: Path | None = typer.Option(
        None, "--keys", help="The instance's keys.json (GET /.well-known/aperture/keys.json), saved."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify a saved proof bundle offline: needs only the bundle and the public key."""
    key_file = public_key or keys
    if key_file is None or (public_key is not None and keys is not None):
        raise InvalidInput(
            "give the instance's public key: --public-key PEM or --keys keys.json (one of them)",
            hint="`curl URL/.well-known/aperture/keys.json > keys.json` saves both keys of an instance",
        )
    try:
        bundle = json.loads(_read_bounded(file, MAX_BUNDLE_BYTES, "proof bundle"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInput(
            f"cannot read the input: {error}", hint="give the JSON printed by `aperture audit prove`"
        ) from None
    pem = instance_key_from(key_file)
    if not isinstance(bundle, dict):
        raise InvalidInput("the proof bundle is not a JSON object", hint="give the JSON printed by `audit prove`")
    try:
        result = check_bundle(bundle, pem)
    except ValueError as error:  # the key is not an Ed25519 public key
        raise InvalidInput(str(error), hint="give the instance key, HOME/keys/instance-ed25519.pub") from None
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "type": result.kind,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks],
            }
        )
    else:
        for check in result.checks:
            mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
            out_console.print(f"{mark} {check.name}: {check.detail}", highlight=False)
    if not result.ok:
        failed = [c.name for c in result.checks if not c.ok]
        raise IntegrityFailure(
            f"the proof bundle does not verify: {', '.join(failed)}",
            hint="the bundle, the log or the key is not what it claims to be",
        )


def verify_release_command(
    url: str = typer.Argument(..., help="The instance's base URL, e.g. https://aperture.example.org"),
    reference: str = typer.Argument(..., metavar="NAME:VERSION", help="The released model version."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A checkpoint of this instance's log saved earlier: the log must extend it."
    ),
    keys: Path | None = typer.Option(
        None, "--keys", help="A keys.json saved earlier, to pin the keys instead of fetching them."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="A local copy of the version's files, to check against the signed manifest."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a release end to end from public material alone: the decision's signature, its
    event's inclusion under a signed tree head, the signed manifest (and --weights). Exit 7 if
    anything fails. Needs no key and no local instance."""
    from aperture.audit.release_check import verify_release

    with errors_to_exit():
        pinned = None
        if keys is not None:
            try:
                pinned = json.loads(_read_bounded(keys, MAX_BUNDLE_BYTES, "keys.json"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InvalidInput(
                    f"{keys} is not JSON", hint="save it from URL/.well-known/aperture/keys.json"
                ) from None
        note = None if checkpoint is None else checkpoint_text(checkpoint)
        if weights is not None and not weights.is_dir():
            raise InvalidInput(f"no directory {weights}", hint="give the directory holding the version's files")
        result = verify_release(url, reference, keys=pinned, checkpoint=note, weights=weights)
        if as_json:
            print_json(result.to_json())
        else:
            for check in result.checks:
                mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
                out_console.print(f"{mark} {check.name}: {check.detail}", highlight=False)
        if not result.ok:
            failed = next(c for c in result.checks if not c.ok)
            raise IntegrityFailure(
                f"the release {reference} does not verify: {failed.name}",
                hint="what the instance publishes does not hold together; do not trust this release",
            )
        if not as_json:
            out_console.print(f"[green]OK[/]: {reference} verifies from public material alone")
