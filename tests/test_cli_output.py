"""The CLI in pipes and scripts: complete plain output when stdout is not a terminal, `--json` on
every read command, and a start-up that does not load what a command does not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from aperture.bootstrap import Services
from aperture.cli import app
from aperture.gateway import store as gateway_store
from aperture.gateway.domain import DailyUsage
from aperture.release.domain import CONTROLS, Tier

SRC = Path(__file__).resolve().parents[1] / "src"

#: The names of commands that only read: each must take `--json`.
READ_NAMES = {
    "alerts",
    "applications",
    "assets",
    "catalogue",
    "check",
    "check-proof",
    "clocks",
    "copies",
    "csaf",
    "due",
    "explain",
    "export",
    "grants",
    "head",
    "identify",
    "licences",
    "list",
    "outbox",
    "proposals",
    "prove",
    "receivables",
    "registry",
    "report",
    "results",
    "runs",
    "show",
    "status",
    "suites",
    "tiers",
    "timeline",
    "trace",
    "usage",
    "verify",
    "verify-release",
    "version",
}

#: Read commands without `--json`, and why.
NO_JSON = {
    "release report": "a document; `--format json` is its JSON form, beside md, html and pdf",
    "raid export": "a STIX 2.1 bundle, which is JSON already",
    "raid advisory csaf": "a CSAF 2.0 document, which is JSON already",
}


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every leaf command of the tree, by its path (the click objects Typer builds)."""
    if hasattr(command, "list_commands"):
        context = command.context_class(command)
        for name in command.list_commands(context):
            yield from _commands(command.get_command(context, name), (*path, name))
        return
    yield " ".join(path), command


def _cli(
    home: Path, database_url: str | None, *args: str, columns: str | None = "80"
) -> subprocess.CompletedProcess[str]:
    """The installed CLI as a script sees it: stdout and stderr are pipes, not a terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_") and k != "COLUMNS"}
    env |= {"APERTURE_HOME": str(home), "PYTHONPATH": str(SRC), "TERM": "xterm-256color"}
    if columns is not None:
        env["COLUMNS"] = columns
    if database_url:
        env["APERTURE_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-c", "from aperture.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_every_read_command_takes_json() -> None:
    commands = dict(_commands(typer.main.get_command(app)))
    assert set(NO_JSON) <= set(commands), "an exemption names a command that no longer exists"
    missing = []
    for path, command in commands.items():
        if path.split(" ")[-1] not in READ_NAMES or path in NO_JSON:
            continue
        options = {option for parameter in command.params for option in getattr(parameter, "opts", [])}
        if "--json" not in options:
            missing.append(path)
    assert missing == [], f"read commands without --json: {missing}"
    assert len([p for p in commands if p.split(" ")[-1] in READ_NAMES]) > 40  # the rule sees the tree


def test_policy_show_into_a_file_is_a_policy_that_checks(services: Services, tmp_path: Path) -> None:
    home, url = services.settings.home, services.settings.database_url
    shown = _cli(home, url, "policy", "show")
    assert shown.returncode == 0, shown.stderr
    saved = tmp_path / "p.yaml"
    saved.write_text(shown.stdout, encoding="utf-8")
    assert shown.stdout == services.release.policy_text()  # byte for byte, no wrapping or styling
    checked = _cli(home, url, "policy", "check", str(saved), "--json")
    assert checked.returncode == 0, checked.stderr
    document = json.loads(_cli(home, url, "policy", "show", "--json").stdout)
    assert json.loads(checked.stdout)["digest"] == document["digest"]
    assert document["text"] == shown.stdout and document["name"] == "aperture-default"


@pytest.mark.parametrize("columns", ["80", "40", None])
def test_tables_in_a_pipe_are_complete_whatever_the_terminal_width(services: Services, columns: str | None) -> None:
    home, url = services.settings.home, services.settings.database_url
    long_organisation = "the-national-institute-for-frontier-model-evaluation-safeguards"  # 63, the most
    long_model = "a-model-with-a-rather-long-name-for-a-narrow-terminal:2026.12.04-rc1"
    with services.database.transaction() as connection:
        gateway_store.add_usage(
            connection,
            [DailyUsage("2026-12-01", long_organisation, "c0ffee42", long_model, 12, 1, 3456, 7890, 1.25)],
        )
    usage = _cli(home, url, "gateway", "usage", columns=columns)
    assert usage.returncode == 0, usage.stderr
    for cell in ("2026-12-01", long_organisation, "c0ffee42", long_model, "3456", "7890", "1.25"):
        assert cell in usage.stdout
    assert "\x1b[" not in usage.stdout  # no styles in a pipe
    assert json.loads(_cli(home, url, "gateway", "usage", "--json").stdout)[0]["organisation"] == long_organisation
    tiers = _cli(home, url, "release", "tiers", columns=columns)
    assert tiers.returncode == 0, tiers.stderr
    for tier in Tier:
        assert CONTROLS[tier].as_dict()["weight_holders"] in tiers.stdout
    assert "…" not in tiers.stdout and "…" not in usage.stdout


#: What only some commands use: loading it for every command is what made each call take seconds.
HEAVY = (
    "numpy",
    "scipy",
    "jsonschema",
    "stix2",
    "stix2validator",
    "aiohttp",
    "torch",
    "transformers",
    "model_signing",
    "lm_eval",
)
#: And what `--help` and the commands that never open the database need not load either.
DATABASE = ("sqlalchemy", "aperture.bootstrap")


def _loaded(home: Path, database_url: str | None, *args: str) -> list[str]:
    code = (
        "import sys\n"
        "from aperture.cli import main\n"
        f"sys.argv = ['aperture', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        f"print('loaded:' + ','.join(m for m in {HEAVY + DATABASE!r} if m in sys.modules), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env |= {"APERTURE_HOME": str(home), "PYTHONPATH": str(SRC)}
    if database_url:
        env["APERTURE_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [name for name in done.stderr.splitlines()[-1].removeprefix("loaded:").split(",") if name]


def test_help_and_read_commands_load_only_what_they_use(services: Services) -> None:
    home, url = services.settings.home, services.settings.database_url
    assert _loaded(home, url, "--help") == []
    assert _loaded(home, url, "release", "tiers") == []
    for command in (("policy", "show"), ("models", "list"), ("gateway", "usage")):
        assert not set(_loaded(home, url, *command)) & set(HEAVY), command


def test_a_section_rule_in_a_pipe_is_a_line_of_ordinary_width() -> None:
    import io

    from aperture.cli_support import PIPE_RULE_WIDTH, PipeAwareConsole

    out = io.StringIO()
    console = PipeAwareConsole(file=out)  # not a terminal
    console.rule("2/8  import the bundled model")
    console.print("x" * 300)
    rule, text = out.getvalue().splitlines()
    assert len(rule) == PIPE_RULE_WIDTH and "2/8  import the bundled model" in rule
    assert text == "x" * 300  # text is still complete, never wrapped
