"""`aperture assess ...` through the real Typer app: output, JSON, exit codes, errors that change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from aperture.registry.domain import ModelVersion
from tests.registry.test_cli import run

__all__ = ["run"]  # the registry's CLI fixture: the real Typer app on this test's instance
from tests.risk.test_service import _inspect_log

Invoke = Callable[..., Result]


def test_run_show_runs_results(run: Invoke, tiny_version: ModelVersion) -> None:
    ref = tiny_version.reference
    result = run("assess", "run", ref, "--suite", "wmdp-bio", "--limit", "8", "--json")
    assert result.exit_code == 0, result.output
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "completed" and outcome["evidence"]["headline"]["n"] == 8
    shown = run("assess", "show", ref)
    assert shown.exit_code == 0 and "accuracy" in shown.stdout and "missing" in shown.stdout
    listed = run("assess", "runs", ref, "--json")
    assert json.loads(listed.stdout)[0]["status"] == "completed"
    details = run("assess", "results", outcome["run"])
    assert len(json.loads(details.stdout)["results"]) == 8
    assert run("assess", "suites").exit_code == 0


def test_bad_input_exits_non_zero_and_changes_nothing(run: Invoke, tiny_version: ModelVersion, tmp_path: Path) -> None:
    ref = tiny_version.reference
    unknown = run("assess", "run", ref, "--suite", "wmdp-biology")
    assert unknown.exit_code == 2 and "no suite named 'wmdp-biology'" in unknown.stderr
    judge = run("assess", "run", ref, "--suite", "strongreject", "--judge", "gpt4")
    assert judge.exit_code == 2 and "openai:" in judge.stderr
    assert run("assess", "run", "ghost:1", "--suite", "wmdp-bio").exit_code == 3
    assert run("assess", "import", str(tmp_path / "none.eval"), "--model", ref).exit_code == 2
    other = _inspect_log(tmp_path / "other.eval", "e" * 64)
    refused = run("assess", "import", str(other), "--model", ref)
    assert refused.exit_code == 4 and "--override-reason" in refused.stderr
    assert json.loads(run("assess", "runs", "--json").stdout) == []
    assert json.loads(run("assess", "show", ref, "--json").stdout)["evidence"] == []
    accepted = run("assess", "import", str(other), "--model", ref, "--override-reason", "re-quantised copy", "--json")
    assert accepted.exit_code == 0, accepted.output


def test_finding_from_the_cli(run: Invoke, tiny_version: ModelVersion, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# Red team\nNo uplift found.")
    result = run(
        "assess",
        "finding",
        tiny_version.reference,
        "--title",
        "Cyber red team",
        "--author",
        "Team A",
        "--domain",
        "cyber-offence",
        "--attachment",
        str(report),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["evidence"]["provenance"]["attachment"] == "report.md"
    assert run("assess", "finding", tiny_version.reference, "--title", "t", "--author", "a").exit_code == 2
