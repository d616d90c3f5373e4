"""What every area's CLI shares: the lazily built services, error mapping, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Self, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.progress import Progress, TaskID
from rich.style import Style
from rich.text import Text

from aperture.core.errors import ApertureError, InvalidInput, Unavailable

if TYPE_CHECKING:
    from aperture.bootstrap import Services
    from aperture.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

#: The width Rich lays out to when the output is not a terminal: wide enough that no table cell
#: is cut and no line is wrapped, so what goes into a pipe or a file is complete.
PIPE_WIDTH = 100_000
#: A rule (a section line) has no content to keep whole: in a pipe it is drawn this wide.
PIPE_RULE_WIDTH = 80


class PipeAwareConsole(Console):
    """A Rich console that renders for the terminal's width on a terminal, and without a width
    limit (nothing truncated, nothing wrapped, no styles) when its output goes to a pipe or a file."""

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = Console.size.fget(self)  # type: ignore[attr-defined]
        if self.is_terminal:
            return dimensions  # type: ignore[no-any-return]
        return ConsoleDimensions(PIPE_WIDTH, dimensions.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def rule(
        self,
        title: str | Text = "",
        *,
        characters: str = "─",
        style: str | Style = "rule.line",
        align: Literal["left", "center", "right"] = "center",
    ) -> None:
        """A section line: the terminal's width on a terminal, PIPE_RULE_WIDTH in a pipe (a rule
        as wide as the unbounded layout would be a line of 100,000 characters)."""
        if self.is_terminal:
            super().rule(title, characters=characters, style=style, align=align)
            return
        from rich.rule import Rule

        self.print(Rule(title, characters=characters, style=style, align=align), width=PIPE_RULE_WIDTH)


err_console = PipeAwareConsole(stderr=True)
out_console = PipeAwareConsole()


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


def require_initialised(services: Services) -> None:
    """The instance exists and its schema is current (bootstrap is imported only when a command runs)."""
    from aperture.bootstrap import require_initialised as check

    check(services)


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
    except Exception as error:
        # SQLAlchemy is not imported for commands that never open the database (`--help`, a
        # command's usage error): an error of its kind can only come once it has been.
        exc = sys.modules.get("sqlalchemy.exc")
        if exc is None or not isinstance(error, exc.OperationalError):
            raise
        raise fail(
            Unavailable(
                f"the database cannot be used: {error.orig}",
                hint="check APERTURE_DATABASE_URL and that the server is running",
            )
        ) from None


def parse_expiry(text: str | None) -> datetime | None:
    """An `--expires` option: ISO 8601 with a time zone (Z for UTC), or None for no expiry."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a time", hint="give ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{text!r} has no time zone", hint="end it with Z (UTC), e.g. 2027-01-01T00:00:00Z")
    return moment


#: `--json` for commands that print only JSON: accepted, so that every read command takes it.
ALWAYS_JSON: Any = typer.Option(False, "--json", help="Print JSON (this command always does).")


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


class ProgressBar:
    """What every long command's progress shares: notes on stderr, one rich bar that subclasses
    start (only on a terminal), advancing it, and stopping it however the block ends."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def note(self, message: str) -> None:
        if not self.quiet:
            err_console.print(message, highlight=False)

    def _add_task(self, *columns: Any, description: str, total: int, completed: int = 0) -> None:
        if self.progress is None:
            self.progress = Progress(*columns, console=err_console, transient=True)
            self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed)

    def advance(self, count: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, count)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
