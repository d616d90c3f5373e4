"""`aperture access ...`, `aperture seal ...`, `aperture security ...`, `models register --level
--programme --canary` and `keys issue --scope` through the real Typer app on a real database.

Bad input gets a non-zero exit, the problem and a hint on stderr, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from aperture.bootstrap import Services
from aperture.core.errors import InvalidInput
from tests.registry.builders import write_hf_directory
from tests.registry.test_cli import run

__all__ = ["run"]  # the registry's CLI fixture: the real Typer app on this test's instance

Invoke = Callable[..., Result]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def fails(result: Result, exit_code: int, code: str, *words: str) -> str:
    """A refusal: the exit code, `error (code): ...` naming the problem, and a hint."""
    assert result.exit_code == exit_code, result.output
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"error ({code})" in stderr and "hint:" in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)
    return stderr


def register(run: Invoke, source: Path, *options: str, name: str = "f7") -> Result:
    """`aperture models register SOURCE --name NAME --version 1 OPTIONS...`"""
    return run("models", "register", str(source), "--name", name, "--version", "1", *options)


def listing(run: Invoke) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(run("access", "list", "--json")).stdout)
    return found


@pytest.fixture
def people(run: Invoke) -> Invoke:
    """A member and a partner state, an organisation in each, a programme, a researcher, a
    security officer and three key custodians, all through the CLI."""
    ok(run("access", "add-state", "FR", "--name", "France", "--cyber-assurance", "SL4"))
    ok(
        run(
            "access",
            "add-state",
            "XX",
            "--name",
            "Far",
            "--kind",
            "partner",
            "--non-eu",
            "--rule-of-law",
            "conditional",
        )
    )
    ok(run("access", "add-organisation", "inst", "--title", "The Institute", "--kind", "public_body", "--state", "FR"))
    ok(run("access", "add-organisation", "eastco", "--title", "East Co", "--kind", "company", "--state", "XX"))
    ok(run("access", "add-programme", "frontier", "--title", "Frontier models"))
    common = ("--organisation", "inst", "--clearance", "SL4", "--vetting", "enhanced", "--programme", "frontier")
    ok(run("access", "add-person", "alice", *common, "--role", "researcher"))
    ok(run("access", "add-person", "sam", *common, "--role", "security_officer"))
    ok(run("access", "add-person", "quinn", "--organisation", "eastco", "--clearance", "SL4", "--vetting", "enhanced"))
    for name in ("carol", "dave", "erin"):
        ok(run("access", "add-person", name, "--organisation", "inst", "--role", "key_custodian"))
    return run


def test_access_commands_record_states_organisations_programmes_and_people(people: Invoke) -> None:
    found = listing(people)
    assert [s["code"] for s in found["states"]] == ["FR", "XX"]
    assert found["states"][1] | {"name": ""} == {
        "code": "XX",
        "name": "",
        "kind": "partner",
        "eu": False,
        "cyber_assurance": "SL2",
        "rule_of_law": "conditional",
    }
    assert {o["name"]: o["state"] for o in found["organisations"]} == {"eastco": "XX", "inst": "FR"}
    assert found["programmes"] == [{"name": "frontier", "title": "Frontier models"}]
    alice = next(p for p in found["principals"] if p["name"] == "alice")
    assert alice["clearance"] == "SL4" and alice["roles"] == ["researcher"] and alice["programmes"] == ["frontier"]
    ok(people("access", "update", "alice", "--clearance", "SL3", "--role", "researcher", "--role", "licensee"))
    alice = next(p for p in listing(people)["principals"] if p["name"] == "alice")
    assert alice["clearance"] == "SL3" and alice["roles"] == ["researcher", "licensee"]
    ok(people("access", "update", "alice", "--disable"))
    assert next(p for p in listing(people)["principals"] if p["name"] == "alice")["disabled"] is True
    ok(people("access", "set-password", "alice", "--password", "a long enough passphrase"))


@pytest.mark.parametrize(
    ("args", "exit_code", "code", "words"),
    [
        (("add-state", "fr", "--name", "France"), 2, "invalid_input", ("'fr'", "state code")),
        (("add-state", "DE", "--name", "Germany", "--kind", "enemy"), 2, "invalid_input", ("'enemy'", "state kind")),
        (("add-state", "DE", "--name", "Germany", "--cyber-assurance", "SL9"), 2, "invalid_input", ("SL9",)),
        (("add-organisation", "x", "--title", "X", "--kind", "bank", "--state", "FR"), 2, "invalid_input", ("bank",)),
        (("add-organisation", "x", "--title", "X", "--kind", "company", "--state", "ZZ"), 3, "not_found", ("ZZ",)),
        (("add-programme", "Frontier Two"), 2, "invalid_input", ("Frontier Two",)),
        (("add-programme", "frontier"), 4, "conflict", ("frontier",)),
        (("add-person", "alice"), 4, "conflict", ("alice",)),
        (("add-person", "Bob Smith"), 2, "invalid_input", ("Bob Smith",)),
        (("add-person", "bob", "--clearance", "SL9"), 2, "invalid_input", ("SL9",)),
        (("add-person", "bob", "--role", "king"), 2, "invalid_input", ("'king'", "role")),
        (("add-person", "bob", "--organisation", "nowhere"), 3, "not_found", ("nowhere",)),
        (("add-person", "bob", "--programme", "secret"), 3, "not_found", ("secret",)),
        (("add-person", "bob", "--clearance", "SL4", "--vetting", "none"), 2, "invalid_input", ("vetting",)),
        (("update", "ghost", "--clearance", "SL2"), 3, "not_found", ("ghost",)),
        (("update", "alice", "--vetting", "extreme"), 2, "invalid_input", ("extreme",)),
        (("set-password", "alice", "--password", "short"), 2, "invalid_input", ("12 characters",)),
        (("set-password", "ghost", "--password", "a long enough passphrase"), 3, "not_found", ("ghost",)),
    ],
)
def test_bad_access_input_names_the_problem_and_changes_nothing(
    people: Invoke, args: tuple[str, ...], exit_code: int, code: str, words: tuple[str, ...]
) -> None:
    before = listing(people)
    fails(people("access", *args), exit_code, code, *words)
    assert listing(people) == before


def test_explain_allows_denies_and_refuses_nonsense(people: Invoke, tmp_path: Path) -> None:
    ok(people("seal", "init", "--custodian", "carol", "--custodian", "dave", "--threshold", "2", "--json"))
    source = write_hf_directory(tmp_path / "hf")
    ok(register(people, source, "--level", "SL4", "--programme", "frontier"))
    allowed = ok(people("access", "explain", "alice", "view", "f7:1", "--json"))
    assert json.loads(allowed.stdout)["allowed"] is True
    denied = people("access", "explain", "quinn", "view", "f7:1", "--json")
    assert denied.exit_code == 6 and "partner-upper-tier-conditions" in json.loads(denied.stdout)["reasons"]
    text = people("access", "explain", "quinn", "view", "f7:1")
    assert text.exit_code == 6 and "DENY" in text.stdout
    fails(people("access", "explain", "alice", "fly", "f7:1"), 2, "invalid_input", "'fly'", "action")
    fails(people("access", "explain", "alice", "view", "f7:9"), 3, "not_found")
    fails(people("access", "explain", "alice", "view", "model_version:nope"), 3, "not_found")
    assets = json.loads(ok(people("access", "assets", "--json")).stdout)
    assert [(a["label"], a["level"], a["programme"], a["canary"]) for a in assets] == [
        ("f7:1", "SL4", "frontier", False)
    ]


def test_seal_init_hands_out_shares_once_and_refuses_bad_custody(people: Invoke) -> None:
    status = json.loads(ok(people("seal", "status", "--json")).stdout)
    assert status["initialised"] is False
    for custodians, threshold, exit_code, code, problem in (
        (("carol", "dave"), "1", 2, "invalid_input", "k-of-n"),  # nobody unseals alone
        (("carol", "dave"), "3", 2, "invalid_input", "k-of-n"),  # more shares needed than exist
        (("carol", "alice"), "2", 2, "invalid_input", "alice is not a key custodian"),
        (("carol", "carol"), "2", 2, "invalid_input", "twice"),
        (("carol", "ghost"), "2", 3, "not_found", "ghost"),
    ):
        named = [arg for name in custodians for arg in ("--custodian", name)]
        fails(people("seal", "init", *named, "--threshold", threshold), exit_code, code, problem)
    assert json.loads(ok(people("seal", "status", "--json")).stdout)["initialised"] is False
    created = json.loads(
        ok(
            people(
                "seal",
                "init",
                "--custodian",
                "carol",
                "--custodian",
                "dave",
                "--custodian",
                "erin",
                "--threshold",
                "2",
                "--json",
            )
        ).stdout
    )
    assert created["threshold"] == 2 and [s["custodian"] for s in created["shares"]] == ["carol", "dave", "erin"]
    assert all(s["share"].startswith("aps1-") for s in created["shares"])
    assert len({s["share"] for s in created["shares"]}) == 3
    status = json.loads(ok(people("seal", "status", "--json")).stdout)
    assert status == {"initialised": True, "threshold": 2, "shares": 3, "custodians": ["carol", "dave", "erin"]}
    fails(
        people("seal", "init", "--custodian", "carol", "--custodian", "dave", "--threshold", "2"),
        4,
        "conflict",
        "already has a key",
    )
    assert "2 of 3 custodians unseal" in " ".join(ok(people("seal", "status")).stdout.split())


def test_register_at_a_level_seals_and_classifies_and_refuses_bad_levels(
    people: Invoke, services: Services, tmp_path: Path
) -> None:
    source = write_hf_directory(tmp_path / "hf")
    upper = ("--level", "SL4", "--programme", "frontier")
    fails(register(people, source, *upper), 8, "not_initialised", "seal init")  # sealing needs the tier's key
    ok(people("seal", "init", "--custodian", "carol", "--custodian", "dave", "--threshold", "2"))
    for args, exit_code, code, word in (
        (("--level", "SL9"), 2, "invalid_input", "SL9"),
        (("--level", "SL4"), 2, "invalid_input", "programme"),
        (("--level", "SL4", "--programme", "nowhere"), 3, "not_found", "nowhere"),
    ):
        fails(register(people, source, *args), exit_code, code, word)
    assert json.loads(ok(people("access", "assets", "--json")).stdout) == []
    assert not [p for p in services.settings.sealed_dir.rglob("*") if p.is_file()]
    assert json.loads(ok(people("models", "list", "--json")).stdout) == []
    ok(register(people, source, *upper, "--json"))
    ok(register(people, source, "--level", "SL3", "--programme", "frontier", "--canary", name="decoy"))
    assets = {a["label"]: a for a in json.loads(ok(people("access", "assets", "--json")).stdout)}
    assert assets["f7:1"]["level"] == "SL4" and assets["decoy:1"]["canary"] is True
    sealed = [p for p in services.settings.sealed_dir.rglob("*-*") if p.is_file()]
    assert len(sealed) == 2 * len(list(p for p in source.rglob("*") if p.is_file()))
    plain = (source / "model.safetensors").read_bytes()
    assert all(plain[64:128] not in p.read_bytes() for p in sealed)


def test_scoped_keys_and_bad_scopes(people: Invoke) -> None:
    issued = json.loads(
        ok(
            people(
                "keys",
                "issue",
                "--name",
                "ro",
                "--principal",
                "alice",
                "--scope",
                "view",
                "--scope",
                "download",
                "--json",
            )
        ).stdout
    )
    assert issued["scopes"] == ["view", "download"] and issued["key"].startswith("apk_")
    keys_before = json.loads(ok(people("keys", "list", "--json")).stdout)
    fails(
        people("keys", "issue", "--name", "x", "--principal", "alice", "--scope", "steal"),
        2,
        "invalid_input",
        "steal",
        "scope",
    )
    fails(
        people("keys", "issue", "--name", "x", "--principal", "alice", "--role", "administrator"),
        2,
        "invalid_input",
        "administrator",
    )
    fails(
        people("keys", "issue", "--name", "x", "--principal", "alice", "--expires", "next tuesday"),
        2,
        "invalid_input",
        "next tuesday",
    )
    fails(
        people("keys", "issue", "--name", "x", "--principal", "alice", "--expires", "2020-01-01T00:00:00Z"),
        2,
        "invalid_input",
        "past",
    )
    fails(people("keys", "issue", "--name", "x", "--principal", "alice", "--role", "king"), 2, "invalid_input", "king")
    assert json.loads(ok(people("keys", "list", "--json")).stdout) == keys_before


def test_security_alerts_and_grants_for_the_operator(people: Invoke, services: Services, tmp_path: Path) -> None:
    from aperture.access.domain import Action
    from tests.security.world import World

    assert json.loads(ok(people("security", "alerts", "--json")).stdout) == []
    assert json.loads(ok(people("security", "grants", "--json")).stdout) == []
    shares = json.loads(
        ok(people("seal", "init", "--custodian", "carol", "--custodian", "dave", "--threshold", "2", "--json")).stdout
    )
    source = write_hf_directory(tmp_path / "hf")
    ok(register(people, source, "--level", "SL4", "--programme", "frontier"))
    world = World(
        services,
        {s["custodian"]: s["share"] for s in shares["shares"]},
        services.registry.get_version("f7", "1"),
        services.registry.get_version("f7", "1"),
    )
    with pytest.raises(InvalidInput):  # the wrong share: refused, and an alert
        services.security.present_share(world.caller("carol"), world.shares["dave"])
    services.security.request_grant(world.caller("alice"), "f7:1", Action.DOWNLOAD, reason="evaluation")
    (alert,) = json.loads(ok(people("security", "alerts", "--json")).stdout)
    assert alert["kind"] == "bad_unseal_share" and alert["severity"] == "high"
    assert json.loads(ok(people("security", "alerts", "--open", "--json")).stdout) == [alert]
    (grant,) = json.loads(ok(people("security", "grants", "--json")).stdout)
    assert grant["model"] == "f7:1" and grant["state"] == "pending" and grant["requester"] == "alice"
    assert "high" in ok(people("security", "alerts")).stdout  # a table: rich wraps the kind at 80 columns
    assert "pending" in ok(people("security", "grants")).stdout
