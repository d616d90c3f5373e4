"""`aperture licensing ...` through the real Typer app on the test's instance: listings, lifecycle
steps, a trace that asks the custodians for their shares, report verification, diffusion; bad
input exits non-zero naming the problem and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from aperture.cli import app
from aperture.cli_support import CliState
from aperture.release.domain import Tier
from tests.licensing.test_service import download, licensed
from tests.licensing.world import World, board_decides, seat_the_board
from tests.release.world import Board

Invoke = Callable[..., Result]


@pytest.fixture
def run(world: World) -> Iterator[Invoke]:
    states: list[CliState] = []

    def invoke(*args: str, input: str | None = None) -> Result:
        state = CliState(settings=world.services.settings)
        states.append(state)
        return CliRunner().invoke(app, list(args), obj=state, input=input)

    yield invoke
    for state in states:
        if state._services is not None:
            state._services.close()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def fails(result: Result, exit_code: int, *words: str) -> str:
    assert result.exit_code == exit_code, result.output
    text = " ".join(result.output.split())
    for word in words:
        assert word in text, (word, text)
    return text


def test_listings_lifecycle_and_diffusion(world: World, run: Invoke) -> None:
    licence = licensed(world)
    assert json.loads(ok(run("licensing", "catalogue", "--json")).stdout)[0]["model"] == "tiny-licensed"
    assert json.loads(ok(run("licensing", "applications", "--json")).stdout)[0]["status"] == "approved"
    assert json.loads(ok(run("licensing", "licences", "--json")).stdout)[0]["state"] == "active"
    assert json.loads(ok(run("licensing", "receivables", "--json")).stdout)[0]["amount_minor"] == 12_000_000
    fails(run("licensing", "suspend", licence.id), 2, "--reason")
    fails(run("licensing", "reinstate", licence.id), 4, "active: it cannot reinstate")
    ok(run("licensing", "suspend", licence.id, "--reason", "audit overdue"))
    ok(run("licensing", "reinstate", licence.id))
    assert "0 licence(s) expired" in ok(run("licensing", "expire")).stdout
    fails(run("licensing", "diffuse", "tiny-licensed:1.0", "--to", "open", "--decision", "b-1"), 4, "TRACEABILITY")
    acknowledged = ("--decision", "b-3", "--acknowledge-end-of-traceability")
    fails(run("licensing", "diffuse", "tiny-licensed:1.0", "--to", "open", *acknowledged), 3, "no release board")
    fails(run("licensing", "diffuse", "tiny-licensed:1.0", "--to", "partners", "--decision", "b-2"), 3, "b-2")
    assert world.services.release.tier_of("tiny-licensed", "1.0").value == "licensed"
    seat_the_board(world)
    Board(world.services, world.version).import_knowledge({"bio": 0.25, "chem": 0.25, "cyber": 0.25})
    decision = str(board_decides(world, Tier.LICENSED, votes=2)["id"])
    done = ok(run("licensing", "diffuse", "tiny-licensed:1.0", "--to", "partners", "--decision", decision))
    assert "diffusion to partners recorded" in " ".join(done.stdout.split())


def test_trace_asks_the_custodians_and_signs_a_report(world: World, run: Invoke, tmp_path: Path) -> None:
    world.unseal()
    licence = licensed(world)
    copy = world.services.licensing.issue_copy(world.caller("olive"), licence.id)
    leak = tmp_path / "leak.safetensors"
    leak.write_bytes(download(world, "alan", copy.id)["model.safetensors"])
    assert json.loads(ok(run("licensing", "copies", "--json")).stdout)[0]["organisation"] == "acme"

    fails(run("licensing", "trace", str(leak)), 9, "sealed")  # the CLI process starts sealed
    report = tmp_path / "report.json"
    shares = f"{world.shares['carol']}\n{world.shares['dave']}\n"
    result = ok(
        run(
            "licensing",
            "trace",
            str(leak),
            "--custodian",
            "carol",
            "--custodian",
            "dave",
            "--out",
            str(report),
            input=shares,
        )
    )
    assert "accused at z >= 6: acme" in " ".join(result.stdout.split())
    assert world.shares["carol"] not in result.stdout  # hidden input
    assert "signature valid" in ok(run("licensing", "verify", str(report))).stdout
    signed = json.loads(report.read_text())
    signed["report"]["accused"] = []
    report.write_text(json.dumps(signed))
    fails(run("licensing", "verify", str(report)), 7, "INVALID")
    fails(run("licensing", "verify", str(tmp_path / "missing.json")), 2, "not a signed trace report")

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    fails(run("licensing", "trace", str(notes)), 2, "not a model")
    sealed = json.loads(ok(run("licensing", "identify", str(tmp_path / "tiny-source"), "--json")).stdout)
    assert sealed["derived_from"] == [] and sealed["lineage"][0]["similarity"].startswith("unchecked")
    found = json.loads(
        ok(
            run(
                "licensing",
                "identify",
                str(tmp_path / "tiny-source"),
                "--custodian",
                "carol",
                "--custodian",
                "dave",
                "--json",
                input=shares,
            )
        ).stdout.split("\n", 2)[-1]
    )
    assert found["derived_from"] == ["tiny-licensed:1.0"]
