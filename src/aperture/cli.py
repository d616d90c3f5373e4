"""The Typer root: mounts each area's commands. Settings are read here, once.

`aperture AREA ...` imports only that area's commands (the entry point looks at the first word);
`aperture --help`, the tests and anything else that asks for `app` get the whole tree.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer

from aperture import __version__
from aperture.cli_support import CliState, command_errors, err_console, out_console, print_json, state
from aperture.core.errors import ApertureError


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


def version(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the version."""
    if as_json:
        print_json({"version": __version__})
        return
    out_console.print(__version__)


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


@command_errors
def migrate(ctx: typer.Context) -> None:
    """Upgrade the database schema of an existing instance to this release."""
    from aperture.core import db

    services = state(ctx).services
    db.upgrade(services.database)
    out_console.print(f"schema at {db.current_revision(services.database)}")


def _keys(app: typer.Typer) -> None:
    from aperture.access.cli import app as keys_app

    app.add_typer(keys_app, name="keys")


def _audit(app: typer.Typer) -> None:
    from aperture.audit.cli import app as audit_app

    app.add_typer(audit_app, name="audit")


def _models(app: typer.Typer) -> None:
    from aperture.registry.cli import app as models_app

    app.add_typer(models_app, name="models")


def _assess(app: typer.Typer) -> None:
    from aperture.risk.cli import app as assess_app

    app.add_typer(assess_app, name="assess")


def _access(app: typer.Typer) -> None:
    from aperture.access.cli import access_app

    app.add_typer(access_app, name="access")


def _seal(app: typer.Typer) -> None:
    from aperture.security.cli import seal_app

    app.add_typer(seal_app, name="seal")


def _security(app: typer.Typer) -> None:
    from aperture.security.cli import security_app

    app.add_typer(security_app, name="security")


def _policy(app: typer.Typer) -> None:
    from aperture.release.cli import policy_app

    app.add_typer(policy_app, name="policy")


def _release(app: typer.Typer) -> None:
    from aperture.release.cli import release_app

    app.add_typer(release_app, name="release")


def _gateway(app: typer.Typer) -> None:
    from aperture.gateway.cli import app as gateway_app
    from aperture.web.cli import run_gateway

    # `aperture gateway` alone serves the gateway; its subcommands manage it.
    gateway_app.callback(invoke_without_command=True)(run_gateway)
    app.add_typer(gateway_app, name="gateway")


def _licensing(app: typer.Typer) -> None:
    from aperture.licensing.cli import app as licensing_app

    app.add_typer(licensing_app, name="licensing")


def _raid(app: typer.Typer) -> None:
    from aperture.raid.cli import app as raid_app

    app.add_typer(raid_app, name="raid")


def _serve(app: typer.Typer) -> None:
    from aperture.web.cli import serve

    app.command()(serve)


def _demo(app: typer.Typer) -> None:
    from aperture.web.cli import demo

    app.command()(demo)


def _verify_release(app: typer.Typer) -> None:
    from aperture.audit.cli import verify_release_command

    app.command("verify-release")(verify_release_command)


def _backup(app: typer.Typer) -> None:
    from aperture.backup.cli import backup_command

    app.command("backup")(backup_command)


def _restore(app: typer.Typer) -> None:
    from aperture.backup.cli import restore_command

    app.command("restore")(restore_command)


#: Each top-level word and what mounts it, in the order `aperture --help` lists them.
AREAS: dict[str, Callable[[typer.Typer], None]] = {
    "keys": _keys,
    "audit": _audit,
    "models": _models,
    "assess": _assess,
    "access": _access,
    "seal": _seal,
    "security": _security,
    "policy": _policy,
    "release": _release,
    "gateway": _gateway,
    "licensing": _licensing,
    "raid": _raid,
    "serve": _serve,
    "demo": _demo,
    "verify-release": _verify_release,
    "backup": _backup,
    "restore": _restore,
}


def build(only: str | None = None) -> typer.Typer:
    """The root with the commands of every area, or of the one area `only` names."""
    app = typer.Typer(
        name="aperture",
        help="Decide, enforce and audit how openly each AI model is released.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    app.callback()(root)
    app.command()(version)
    app.command()(init)
    app.command()(migrate)
    for name, mount in AREAS.items():
        if only is None or name == only:
            mount(app)
    return app


@functools.cache
def full_app() -> typer.Typer:
    return build()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # built on first use: `from aperture.cli import app` gets the whole tree
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    first = next((word for word in sys.argv[1:] if not word.startswith("-")), None)
    known = first in AREAS or first in ("version", "init", "migrate")
    build(first if known else None)()  # an unknown word gets the whole tree, for its error
