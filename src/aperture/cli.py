"""The Typer root: mounts each area's commands. Settings are read here, once."""

from __future__ import annotations

import typer

from aperture import __version__
from aperture.cli_support import CliState, command_errors, err_console, out_console, print_json, state
from aperture.core.errors import ApertureError

app = typer.Typer(
    name="aperture",
    help="Decide, enforce and audit how openly each AI model is released.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(ctx: typer.Context) -> None:
    from aperture.settings import load_settings

    if ctx.obj is None:
        ctx.obj = CliState(settings=load_settings())
    if ctx.obj._services is not None:  # services handed in (tests): count only this command's writes
        ctx.obj._services.audit.appended = False
    ctx.call_on_close(lambda: sign_after_writes(ctx.obj))


def sign_after_writes(cli_state: CliState) -> None:
    """Every command that appended to the log signs a tree head before it exits, so what the
    command did is committed to at once (and not only at the server's next periodic head)."""
    services = cli_state._services
    if services is None or not services.audit.appended:
        return
    from sqlalchemy.exc import OperationalError

    try:
        services.audit.issue_tree_head()
    except ApertureError as error:
        err_console.print(f"[yellow]warning[/]: no tree head was signed after this command: {error.message}")
    except OperationalError:  # the database went away: the command itself reported what it could
        err_console.print("[yellow]warning[/]: no tree head was signed after this command (database unavailable)")
    else:
        services.audit.appended = False


@app.command()
def version(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the version."""
    if as_json:
        print_json({"version": __version__})
        return
    out_console.print(__version__)


@app.command()
@command_errors
def init(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an instance in APERTURE_HOME: schema, signing keys, first administrator key."""
    from aperture.bootstrap import init_instance

    services = state(ctx).services
    issued = init_instance(services)
    if as_json:
        print_json(
            {
                "home": str(services.settings.home),
                "admin_key": issued.text,
                "signing_key_id": services.keys.key_id,
            }
        )
        return
    out_console.print(f"Created an Aperture instance in [bold]{services.settings.home}[/]")
    out_console.print(f"instance signing key: {services.keys.key_id}")
    out_console.print("administrator API key (shown once, store it now):")
    out_console.print(issued.text, soft_wrap=True, highlight=False)


@app.command()
@command_errors
def migrate(ctx: typer.Context) -> None:
    """Upgrade the database schema of an existing instance to this release."""
    from aperture.core import db

    services = state(ctx).services
    db.upgrade(services.database)
    out_console.print(f"schema at {db.current_revision(services.database)}")


def _mount() -> None:
    from aperture.access.cli import access_app
    from aperture.access.cli import app as keys_app
    from aperture.audit.cli import app as audit_app
    from aperture.audit.cli import verify_release_command
    from aperture.gateway.cli import app as gateway_app
    from aperture.licensing.cli import app as licensing_app
    from aperture.raid.cli import app as raid_app
    from aperture.registry.cli import app as models_app
    from aperture.release.cli import policy_app, release_app
    from aperture.risk.cli import app as assess_app
    from aperture.security.cli import seal_app, security_app
    from aperture.web.cli import demo, run_gateway, serve

    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.add_typer(models_app, name="models")
    app.add_typer(assess_app, name="assess")
    app.add_typer(access_app, name="access")
    app.add_typer(seal_app, name="seal")
    app.add_typer(security_app, name="security")
    app.add_typer(policy_app, name="policy")
    app.add_typer(release_app, name="release")
    # `aperture gateway` alone serves the gateway; its subcommands manage it.
    gateway_app.callback(invoke_without_command=True)(run_gateway)
    app.add_typer(gateway_app, name="gateway")
    app.add_typer(licensing_app, name="licensing")
    app.add_typer(raid_app, name="raid")
    app.command()(serve)
    app.command()(demo)
    app.command("verify-release")(verify_release_command)


_mount()


def main() -> None:
    app()
