"""What every area's CLI shares: the lazily built services, error mapping, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError

from aperture.core.errors import ApertureError, Unavailable

if TYPE_CHECKING:
    from aperture.bootstrap import Services
    from aperture.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True)
out_console = Console()


@dataclass
class CliState:
    """Settings are read once by the root callback; services are built on first use."""

    settings: Settings
    _services: Services | None = field(default=None)

    @property
    def services(self) -> Services:
        if self._services is None:
            from aperture.bootstrap import build_services

            self._services = build_services(self.settings)
        return self._services


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, CliState):  # pragma: no cover - the root callback always sets it
        raise RuntimeError("CLI state missing")
    return obj


def fail(error: ApertureError) -> typer.Exit:
    err_console.print(f"[bold red]error[/] ({error.code}): {error.message}", highlight=False)
    if error.hint:
        err_console.print(f"[yellow]hint[/]: {error.hint}", highlight=False)
    return typer.Exit(error.exit_code)


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Map the one error vocabulary to exit codes with the message and the hint on stderr."""
    try:
        yield
    except ApertureError as error:
        raise fail(error) from None
    except OperationalError as error:
        raise fail(
            Unavailable(
                f"the database cannot be used: {error.orig}",
                hint="check APERTURE_DATABASE_URL and that the server is running",
            )
        ) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def command_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `errors_to_exit` for command functions."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with errors_to_exit():
            return func(*args, **kwargs)

    return wrapper
