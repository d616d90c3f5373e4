"""`aperture backup` and `aperture restore`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from aperture.cli_support import ProgressBar, command_errors, err_console, out_console, print_json, state
from aperture.core.errors import IntegrityFailure

if TYPE_CHECKING:  # the service (and SQLAlchemy) load when a command runs, not for --help
    from aperture.backup.service import RestoreChecks

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
LINE_EVERY_S = 5.0


class CopyProgress(ProgressBar):
    """A rich bar on a terminal; elsewhere (logs, cron) a line every few seconds."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.label = label
        self.total = 0
        self.done = 0
        self.last_line = time.monotonic()
        self.lines = False

    def start(self, total_bytes: int, files: int) -> None:
        self.total, self.done = total_bytes, 0
        if self.quiet:
            return
        if err_console.is_terminal:
            self._add_task(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                description=f"{self.label} ({files} files)",
                total=total_bytes,
            )
        else:
            self.lines = True
            self.note(f"{self.label}: {files} files, {_size(total_bytes)}")

    def advance(self, count: int) -> None:
        super().advance(count)
        self.done += count
        if self.lines and time.monotonic() - self.last_line >= LINE_EVERY_S:
            self.last_line = time.monotonic()
            percent = 100 * self.done / self.total if self.total else 100.0
            self.note(f"{self.label}: {_size(self.done)} of {_size(self.total)} ({percent:.0f}%)")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


@command_errors
def backup_command(
    ctx: typer.Context,
    destination: Path = typer.Argument(..., help="A new directory to write the backup to."),
    keys_to: Path | None = typer.Option(
        None, "--keys-to", help="A new directory, apart from the backup, to copy the instance keys to."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Back up the instance while it runs: a consistent database snapshot, the artifact and sealed
    stores and a manifest of SHA-256 digests. The keys are copied only with --keys-to, apart."""
    from aperture.backup.service import backup_source, create_backup
    from aperture.bootstrap import require_initialised

    services = state(ctx).services
    require_initialised(services)
    settings = services.settings
    source = backup_source(services)
    started = time.perf_counter()
    with CopyProgress("copying", quiet=as_json) as bar:
        result = create_backup(source, destination, keys_to=keys_to, progress=bar)
    elapsed = time.perf_counter() - started
    manifest = result.manifest
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "keys_path": str(result.keys_path) if result.keys_path else None,
                "database": manifest.database,
                "schema_revision": manifest.schema_revision,
                "tree_size": manifest.tree_size,
                "files": len(manifest.files),
                "bytes": manifest.total_bytes,
                "elapsed_s": round(elapsed, 3),
            }
        )
        return
    out_console.print(
        f"backup written to [bold]{result.path}[/]: {len(manifest.files)} files, {_size(manifest.total_bytes)}, "
        f"{manifest.database} database at schema {manifest.schema_revision}, log at {manifest.tree_size} events "
        f"({elapsed:.1f} s)",
        highlight=False,
        soft_wrap=True,
    )
    if result.keys_path:
        out_console.print(
            f"instance keys written apart to [bold]{result.keys_path}[/]: keep them on another medium than the backup",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out_console.print(
            f"[yellow]the backup holds no keys[/]: restoring it needs the instance keys ({settings.keys_dir}); "
            "save them apart with `--keys-to DIR`",
            highlight=False,
            soft_wrap=True,
        )


@command_errors
def restore_command(
    ctx: typer.Context,
    backup: Path = typer.Argument(..., help="The directory `aperture backup` wrote."),
    home: Path = typer.Option(..., "--home", help="A new (or empty) directory to restore the instance into."),
    keys_from: Path = typer.Option(
        ..., "--keys-from", help="The keys: the directory `backup --keys-to` wrote (or the instance's keys/)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="An empty PostgreSQL database, for a backup of a PostgreSQL instance."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Restore a backup into a new home, then check it as `audit verify` and `models verify` do.
    Refuses an incomplete or altered backup, naming the file; exits non-zero on any failure."""
    from aperture.backup.service import abandon_restore, check_restored, finish_restore, restore_files
    from aperture.bootstrap import build_services, require_initialised

    settings = state(ctx).settings
    started = time.perf_counter()
    with CopyProgress("restoring", quiet=as_json) as bar:
        restored = restore_files(backup, home, keys_from=keys_from, database_url=database_url, progress=bar)
    try:
        restored_settings = settings.model_copy(
            update={"home": restored.staging_home, "database_url": restored.database_url}
        )
        services = build_services(restored_settings)
        try:
            require_initialised(services)
            checks = check_restored(services, restored.manifest, CopyProgress("checking", quiet=as_json))
        finally:
            services.close()
    except BaseException:
        abandon_restore(restored)
        raise
    if not checks.ok:
        abandon_restore(restored)
    else:
        finish_restore(restored)
    elapsed = time.perf_counter() - started
    if as_json:
        print_json({"home": str(restored.home), **_checks_json(checks), "elapsed_s": round(elapsed, 3)})
    else:
        _print_checks(checks)
    if not checks.ok:
        raise IntegrityFailure(
            "the restored copy does not verify; it was removed",
            hint="use another backup (and the keys saved with it); the problems are listed above",
        )
    if not as_json:
        out_console.print(f"restored into [bold]{restored.home}[/] ({elapsed:.1f} s)", highlight=False)
        if restored.database_url:
            out_console.print("set APERTURE_DATABASE_URL to the restored database to use it", highlight=False)
        out_console.print(f"use it with APERTURE_HOME={restored.home}", highlight=False, soft_wrap=True)


def _checks_json(checks: RestoreChecks) -> dict[str, Any]:
    return {
        "ok": checks.ok,
        "audit": {
            "ok": checks.audit_ok,
            "tree_size": checks.tree_size,
            "expected_tree_size": checks.expected_tree_size,
            "problems": list(checks.audit_problems),
            "warnings": list(checks.audit_warnings),
        },
        "models": [
            {"reference": v.reference, "ok": v.ok, "skipped": v.skipped, "detail": v.detail} for v in checks.versions
        ],
    }


def _print_checks(checks: RestoreChecks) -> None:
    if checks.audit_ok and checks.tree_size == checks.expected_tree_size:
        out_console.print(f"audit verify: OK ({checks.tree_size} events, every signed head matches)", highlight=False)
    else:
        out_console.print(
            f"[red]audit verify: FAILED[/] ({checks.tree_size} events, the backup recorded "
            f"{checks.expected_tree_size})",
            highlight=False,
        )
    for problem in checks.audit_problems[:20]:
        out_console.print(f"  problem: {problem}", highlight=False, soft_wrap=True)
    for warning in checks.audit_warnings[:5]:
        out_console.print(f"  [yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
    if not checks.versions:
        out_console.print("models verify: no versions registered", highlight=False)
    for version in checks.versions:
        if version.ok:
            status = "[green]OK[/]"
        elif version.skipped:
            status = "[yellow]skipped[/]"
        else:
            status = "[red]FAILED[/]"
        out_console.print(
            f"models verify {version.reference}: {status} ({version.detail})", highlight=False, soft_wrap=True
        )
