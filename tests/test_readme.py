"""README.md stays true: it opens with the two commands and names every setting, command and route."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from aperture.bootstrap import Services
from aperture.cli import app as cli_app
from aperture.settings import Settings
from aperture.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_opens_with_exactly_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None and README.index("```sh") < README.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, flags=re.MULTILINE) and re.search(r"^test:", makefile, flags=re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`APERTURE_{name.upper()}`" in README, name


def test_every_cli_command_is_documented() -> None:
    group = typer.main.get_group(cli_app)
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub in subcommands:
                assert f"`aperture {name} {sub}" in README, f"aperture {name} {sub}"
        else:
            assert f"`aperture {name}" in README, f"aperture {name}"


def test_every_route_and_page_is_documented(services: Services) -> None:
    app = create_app(services)
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in README, f"{method.upper()} {path}"
    for route in app.routes:
        path = getattr(route, "path", "")
        if getattr(route, "include_in_schema", True) is False and not path.startswith("/static"):
            assert f"`{path}`" in README, path
