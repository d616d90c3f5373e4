"""`aperture raid ...` through the real Typer app on a real database: every read has --json, bad input
exits non-zero with the problem and a hint and changes nothing, and reporters' text is printed as
text (console markup and HTML inert)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from aperture.access.domain import SYSTEM, Role
from aperture.cli import app
from aperture.cli_support import CliState
from aperture.raid.service import shipped_table_text
from tests.raid.world import World

Invoke = Callable[..., Result]
TITLE = "[red]alarm[/red] <script>alert(1)</script>"


@pytest.fixture
def run(world: World) -> Iterator[Invoke]:
    states: list[CliState] = []

    def invoke(*args: str) -> Result:
        state = CliState(settings=world.services.settings)
        states.append(state)
        return CliRunner().invoke(app, list(args), obj=state)

    yield invoke
    for state in states:
        if state._services is not None:
            state._services.close()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def data(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def fails(result: Result, exit_code: int, code: str, *words: str) -> None:
    assert result.exit_code == exit_code, result.output
    stderr = " ".join(result.stderr.split())
    assert f"error ({code})" in stderr and "hint:" in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)


def key_for(world: World, name: str, *roles: Role) -> str:
    return world.services.access.issue_key(SYSTEM, name=f"{name}'s key", principal=name, roles=roles).text


def test_intake_triage_clocks_and_drafts(world: World, run: Invoke, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("what the caller said\n", encoding="utf-8")
    receipt = data(
        run("raid", "report", "--title", TITLE, "--description", "details", "--attach", str(notes), "--json")
    )
    item = receipt["incident"]
    assert receipt["receipt"].startswith("rct_")
    listed = data(run("raid", "list", "--json"))
    assert listed["total"] == 1 and listed["items"][0]["title"] == TITLE
    assert "[red]alarm" in ok(run("raid", "list")).stdout  # printed as text, not as console markup
    assert "[red]alarm[/red] <script>" in ok(run("raid", "show", item)).stdout
    raw = ok(run("raid", "list", "--json")).stdout
    assert "<script>" not in raw and "\\u003cscript\\u003e" in raw  # JSON escaped for any page
    shown = data(run("raid", "show", item, "--json"))
    assert shown["attachments"][0]["name"] == "notes.txt" and shown["timeline"][0]["kind"] == "received"

    fails(run("raid", "move", item, "triage"), 4, "conflict", "not assessed")
    fails(run("raid", "move", item, "resolve"), 4, "conflict", "cannot resolve")
    fails(run("raid", "move", item, "explode"), 2, "invalid_input", "not a move")
    fails(run("raid", "assess", item, "--severity", "apocalypse"), 2, "invalid_input", "OECD ladder")
    assessed = data(
        run(
            "raid",
            "assess",
            item,
            "--severity",
            "serious-incident",
            "--domain",
            "cyber-offence",
            "--sector",
            "digital-infrastructure",
            "--member-state",
            "FR",
            "--harm",
            "cyber-breach",
            "--causal-link",
            "established",
            "--regime",
            "gpai-systemic-risk",
            "--regime",
            "nis2-entity",
            "--provider-is-institution",
            "--json",
        )
    )
    assert any("Measure 9.3" in reason for reason in assessed["reasons"])
    assert data(run("raid", "move", item, "triage", "--json"))["status"] == "triaged"
    routes = data(run("raid", "route", item, "--json"))
    assert {r["rule"] for r in routes} == {"ai-office-gpai", "enisa-cyber", "nis2-csirt"}
    clocks = data(run("raid", "clocks", item, "--json"))
    kinds = {(o["clock"], o["kind"]) for o in clocks["obligations"]}
    assert ("nis2", "early-warning") in kinds and ("cop-9.3", "initial-report") in kinds
    due = data(run("raid", "due", "--within-hours", "30", "--json"))
    assert {o["kind"] for o in due} == {"early-warning", "forward"}
    warning = next(o for o in due if o["kind"] == "early-warning")
    assert data(run("raid", "met", warning["id"], "--json"))["met_at"]
    fails(run("raid", "met", warning["id"]), 4, "conflict", "already met")
    draft = data(run("raid", "draft", item, "cop-9.2-initial", "--json"))
    assert draft["missing"] == ["1", "2", "3", "4", "5", "6", "7"]  # nothing known yet: all marked missing
    ok(run("raid", "facts", item, "--set", "chain_of_events=posted on a forum"))
    assert "posted on a forum" in ok(run("raid", "draft", item, "cop-9.2-initial")).stdout
    fails(run("raid", "facts", item, "--set", "colour=red"), 2, "invalid_input", "unknown fact field")
    timeline = data(run("raid", "timeline", item, "--json"))
    assert [e["kind"] for e in timeline][:2] == ["received", "assessed"]


def test_acting_with_a_key_and_red(world: World, run: Invoke) -> None:
    ana = key_for(world, "ana", Role.RAID_ANALYST)
    ben = key_for(world, "ben", Role.RAID_ANALYST)
    red = data(
        run(
            "raid",
            "report",
            "--title",
            "Zeppelin",
            "--description",
            "d",
            "--tlp",
            "TLP:RED",
            "--recipient",
            "ana",
            "--key",
            ana,
            "--json",
        )
    )["incident"]
    assert data(run("raid", "list", "--json", "--key", ana))["total"] == 1
    assert data(run("raid", "list", "--json", "--key", ben))["total"] == 0
    assert data(run("raid", "list", "--json"))["total"] == 0  # the operator is not named on it
    fails(run("raid", "show", red, "--key", ben), 3, "not_found", "no RAID item")
    assert "Zeppelin" not in run("raid", "export", "--key", ben).stdout
    fails(run("raid", "list", "--key", "apk_00000000_" + "x" * 43), 5, "unauthenticated")
    shared = data(run("raid", "share", red, "--principal", "ben", "--key", ana, "--json"))
    assert shared["shared_with"]["principals"] == ["ana", "ben"]


def test_routing_contacts_advisories_stix_outbox_and_policy(world: World, run: Invoke, tmp_path: Path) -> None:
    table = data(run("raid", "routing", "show", "--json"))
    assert table["version"] == 1 and any(r["id"] == "nis2-csirt" for r in table["routes"])
    broken = tmp_path / "routing.yaml"
    broken.write_text(shipped_table_text().replace("[cop-9.3]", "[cop-9.9]"), encoding="utf-8")
    fails(run("raid", "routing", "check", str(broken)), 2, "invalid_input", "routes[0].clocks[0]", "cop-9.9")
    fails(run("raid", "routing", "adopt", str(broken)), 2, "invalid_input")
    newer = tmp_path / "routing-2.yaml"
    newer.write_text(shipped_table_text().replace("version: 1", "version: 2"), encoding="utf-8")
    ok(run("raid", "routing", "check", str(newer)))
    ok(run("raid", "routing", "adopt", str(newer)))
    assert data(run("raid", "routing", "show", "--json"))["version"] == 2

    (item,) = world.take(world.alert(title="Exported item"))
    ok(run("raid", "contact", "set", "northlab", "security@northlab.example"))
    assert data(run("raid", "contact", "list", "--json")) == {"northlab": "security@northlab.example"}
    fails(run("raid", "contact", "set", "eastco", "not an address"), 2, "invalid_input", "e-mail")
    advisory = data(
        run("raid", "advisory", "draft", item, "--title", "Bypass", "--summary", "s", "--party", "northlab", "--json")
    )
    assert advisory["embargo_policy"] == "cert-cc"
    assert data(run("raid", "advisory", "notify", advisory["id"], "--json"))["status"] == "embargoed"
    fails(run("raid", "advisory", "publish", advisory["id"]), 4, "conflict", "embargo runs until")
    fails(run("raid", "advisory", "decide-early", advisory["id"], "--reason", "now"), 6, "forbidden")
    assert data(run("raid", "advisory", "list", "--published", "--json")) == []
    assert [a["id"] for a in data(run("raid", "advisory", "list", "--json"))] == [advisory["id"]]
    fails(run("raid", "advisory", "csaf", advisory["id"]), 3, "not_found")

    bundle = tmp_path / "bundle.json"
    ok(run("raid", "export", "--out", str(bundle)))
    exported = json.loads(bundle.read_text(encoding="utf-8"))
    assert [o["name"] for o in exported["objects"] if o["type"] == "incident"] == ["Exported item"]
    pia = key_for(world, "pia", Role.RESEARCHER)
    assert len(data(run("raid", "import", str(bundle), "--key", pia, "--json"))["taken"]) == 1
    assert data(run("raid", "import", str(bundle), "--key", pia, "--json"))["skipped"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"type": "bundle", "id": "bundle--1", "objects": [{"type": "x-thing"}]}), encoding="utf-8"
    )
    fails(run("raid", "import", str(bad)), 2, "invalid_input", "does not define")

    messages = data(run("raid", "outbox", "--json"))
    assert [m["kind"] for m in messages] == ["advisory"] and messages[0]["status"] == "pending"
    fails(run("raid", "deliver"), 9, "unavailable", "no SMTP server")
    assert data(run("raid", "remind", "--json")) == {"queued": 0}
    assert data(run("raid", "policy", "--json"))["policy"] == "consent"
