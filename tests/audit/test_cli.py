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
from aperture.core.canonical import canonical_json


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
    assert domain.check_disclosed(shown) == [] and "actor" in shown["disclosed"]["internal"]["fields"]  # operator
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


def _root(services: Services, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), obj=CliState(settings=services.settings, _services=services))


def test_a_cli_command_that_writes_signs_a_tree_head(services: Services) -> None:
    assert services.audit.latest_tree_head() is None
    result = _root(services, "access", "add-programme", "frontier", "--title", "Frontier models")
    assert result.exit_code == 0, result.output
    head = services.audit.latest_tree_head()
    assert head is not None and head.tree_size == services.audit.tree_size()
    assert _root(services, "audit", "list").exit_code == 0  # a read signs nothing new
    assert services.audit.latest_tree_head() == head


def test_verify_reports_unsigned_events_and_strict_fails_on_them(run: Any, services: Services) -> None:
    services.audit.issue_tree_head()
    with services.database.transaction() as connection:
        services.audit.append(connection, actor="t", action="test.more", resource="r:1")
    report = run("verify", "--json")
    assert report.exit_code == 0
    assert [w["kind"] for w in json.loads(report.stdout)["warnings"]] == ["unsigned"]
    assert "1 event(s) after the latest signed tree head" in run("verify").stdout
    strict = run("verify", "--strict")
    assert strict.exit_code == 7 and "--strict" in strict.stderr


def test_verify_fails_after_every_signed_head_is_deleted(run: Any, services: Services) -> None:
    services.audit.issue_tree_head()
    with services.database.transaction() as connection:
        connection.execute(text("DELETE FROM audit_tree_heads"))
    deleted = run("verify")
    assert deleted.exit_code == 7
    assert "no signed tree head" in deleted.stdout


def _grow_and_checkpoint(run: Any, services: Services, tmp_path: Path) -> tuple[int, Path]:
    """A head at size N (kept), then more events signed by a second head, saved outside."""
    kept = services.audit.issue_tree_head().tree_size
    with services.database.transaction() as connection:
        for i in range(6):
            services.audit.append(connection, actor="t", action="test.more", resource=f"r:{i}")
    saved = tmp_path / "checkpoint.json"
    saved.write_text(run("head", "--json").stdout)
    return kept, saved


def test_a_saved_checkpoint_catches_a_deleted_tail(run: Any, services: Services, tmp_path: Path) -> None:
    kept, saved = _grow_and_checkpoint(run, services, tmp_path)
    # Everything after the first head goes, with the head and the hashes that covered it.
    with services.database.transaction() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE leaf_index >= :n"), {"n": kept})
        connection.execute(text("DELETE FROM audit_tree_heads WHERE tree_size > :n"), {"n": kept})
        connection.execute(text("DELETE FROM audit_tree_nodes"))
    assert run("verify").exit_code == 0  # nothing inside the instance remembers the deleted tail
    caught = run("verify", "--checkpoint", str(saved), "--json")
    assert caught.exit_code == 7
    assert [p["kind"] for p in json.loads(caught.stdout)["problems"]] == ["checkpoint"]
    assert "were deleted" in json.loads(caught.stdout)["problems"][0]["message"]


def test_a_saved_checkpoint_catches_a_rewritten_tail(run: Any, services: Services, tmp_path: Path) -> None:
    kept, saved = _grow_and_checkpoint(run, services, tmp_path)
    record = services.audit.get_record(kept + 2)
    leaf = domain.leaf_hash(
        domain.leaf_data_from_members(
            record.event_id,
            record.occurred_at,
            canonical_json(record.actor).decode(),
            "test.rewritten",
            canonical_json(record.resource).decode(),
            canonical_json(record.details).decode(),
            canonical_json(record.commitments).decode(),
        )
    )
    with services.database.transaction() as connection:  # rewritten with its leaf hash recomputed
        connection.execute(
            text("UPDATE audit_events SET action = 'test.rewritten', leaf_hash = :h WHERE leaf_index = :i"),
            {"h": leaf, "i": kept + 2},
        )
        connection.execute(text("DELETE FROM audit_tree_heads WHERE tree_size > :n"), {"n": kept})
        connection.execute(text("DELETE FROM audit_tree_nodes"))
    inside = run("verify")
    assert inside.exit_code == 0, inside.stdout  # unsigned again: only a warning from inside
    caught = run("verify", "--checkpoint", str(saved))
    assert caught.exit_code == 7
    assert "checkpoint at size" in caught.stdout and "rewritten" in caught.stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("not a checkpoint\n")
    refused = run("verify", "--checkpoint", str(bad))
    assert refused.exit_code == 2 and "not a checkpoint signed by this instance" in " ".join(refused.stderr.split())


def test_check_proof_takes_the_published_keys(run: Any, services: Services, tmp_path: Path) -> None:
    from aperture.audit.http import public_keys

    services.audit.issue_tree_head()
    keys = tmp_path / "keys.json"
    keys.write_text(public_keys(services).model_dump_json())
    bundle = tmp_path / "proof.json"
    bundle.write_text(run("prove", "1").stdout)
    assert run("check-proof", str(bundle), "--keys", str(keys)).exit_code == 0
    assert run("check-proof", str(bundle)).exit_code == 2  # which key: it must be told
