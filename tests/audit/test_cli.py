"""`aperture audit ...` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from aperture.audit import domain
from aperture.bootstrap import Services
from aperture.cli import app
from aperture.cli_support import CliState


@pytest.fixture
def run(services: Services) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["audit", *args], obj=CliState(settings=services.settings, _services=services))

    return invoke


def public_key(services: Services) -> Path:
    return services.settings.keys_dir / "instance-ed25519.pub"


def test_list_and_show(run: Any, services: Services) -> None:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["tree_size"] == services.audit.tree_size()
    assert body["events"][0]["action"] == "instance.initialised"
    assert run("list").exit_code == 0
    shown = json.loads(run("show", "0", "--json").stdout)
    assert shown["leaf_hash"] == domain.leaf_hash(domain.event_leaf_data(shown)).hex()
    assert domain.check_disclosed(shown) == [] and "actor" in shown["disclosed"]  # the operator's view
    missing = run("show", "99")
    assert missing.exit_code == 3
    assert "aperture audit list" in missing.stderr


def test_head_prove_and_check_proof_offline(run: Any, services: Services, tmp_path: Path) -> None:
    head = json.loads(run("head", "--json").stdout)
    assert domain.verify_signed_note(head["checkpoint"], services.keys.public_key_pem).tree_size == head["tree_size"]
    assert "signed checkpoint" in run("head").stdout

    bundle_file = tmp_path / "proof.json"
    proved = run("prove", "1")
    assert proved.exit_code == 0, proved.output
    bundle_file.write_text(proved.stdout)
    checked = run("check-proof", str(bundle_file), "--public-key", str(public_key(services)), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["ok"] is True

    bundle = json.loads(proved.stdout)
    bundle["event"]["actor"] = "someone else"
    bundle_file.write_text(json.dumps(bundle))
    refused = run("check-proof", str(bundle_file), "--public-key", str(public_key(services)))
    assert refused.exit_code == 7
    assert "event hashes to the leaf" in refused.stdout


def test_consistency_proofs_between_two_heads(run: Any, services: Services, tmp_path: Path) -> None:
    first = services.audit.issue_tree_head()
    with services.database.transaction() as connection:
        for i in range(5):
            services.audit.append(connection, actor="t", action="test.more", resource=f"r:{i}")
    second = services.audit.issue_tree_head()
    proved = run("prove", "--consistency", str(first.tree_size), str(second.tree_size))
    assert proved.exit_code == 0, proved.output
    bundle_file = tmp_path / "consistency.json"
    bundle_file.write_text(proved.stdout)
    checked = run("check-proof", str(bundle_file), "--public-key", str(public_key(services)))
    assert checked.exit_code == 0, checked.output
    assert run("prove").exit_code == 2
    assert run("prove", "1", "--consistency", "1", "2").exit_code == 2


def test_verify_passes_then_reports_tampering_with_exit_7(run: Any, services: Services) -> None:
    services.audit.issue_tree_head()
    clean = run("verify", "--json")
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["ok"] is True
    assert "OK" in run("verify").stdout
    with services.database.transaction() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE leaf_index = 1"))
    tampered = run("verify")
    assert tampered.exit_code == 7
    assert "leaf 1" in tampered.stdout
    assert "does not verify" in tampered.stderr
    report = json.loads(run("verify", "--json").stdout)
    assert report["ok"] is False
    assert report["problems"][0] == {
        "kind": "leaf",
        "where": "leaf 1",
        "message": report["problems"][0]["message"],
    }


def test_check_proof_refuses_bad_input(run: Any, services: Services, tmp_path: Path) -> None:
    missing = run("check-proof", str(tmp_path / "nope.json"), "--public-key", str(public_key(services)))
    assert missing.exit_code == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    assert run("check-proof", str(garbage), "--public-key", str(public_key(services))).exit_code == 2
    garbage.write_text("[]")
    assert run("check-proof", str(garbage), "--public-key", str(public_key(services))).exit_code == 2
