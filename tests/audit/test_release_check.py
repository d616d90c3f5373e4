"""`aperture verify-release` against the real app on a loopback port, as a separate process with no
key and no instance of its own: a release checks end to end from public material, and a changed
byte anywhere along the chain makes it fail (defect 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from aperture.access.domain import SYSTEM, SecurityLevel
from aperture.audit import domain
from aperture.bootstrap import Services, build_services, init_instance
from aperture.core.canonical import canonical_json
from aperture.release.domain import Tier
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.registry.builders import write_hf_directory
from tests.release.world import BOARD, Board, build_board

APERTURE = str(Path(sys.executable).parent / "aperture")
AT_CHANCE = {"bio": 0.25, "chem": 0.25, "cyber": 0.25}


@dataclass
class Release:
    services: Services
    url: str
    weights: Path
    proposal: str


@pytest.fixture
def release(settings: Settings, tmp_path: Path) -> Iterator[Release]:
    services = build_services(settings)
    init_instance(services)
    board = build_board(services, tmp_path)
    weights = write_hf_directory(tmp_path / "open-weights")
    version = services.registry.register(
        SYSTEM,
        weights,
        "open",
        "1.0",
        licence="Apache-2.0",
        training_flop="1.6e21",
        modalities=["text"],
        intended_use="on-device text classification",
        level=SecurityLevel.SL1,
    ).version
    Board(services, version).import_knowledge(AT_CHANCE)
    proposal = services.release.propose(board.director, "open:1.0", Tier.HOSTED, "hosted first")["id"]
    for name in BOARD[:2]:
        services.release.vote(board.caller(name), proposal, True, f"{name} agrees")
    services.audit.issue_tree_head()
    try:
        with running_server(create_app(services)) as url:
            yield Release(services, url, weights, proposal)
    finally:
        services.close()


def verify_release(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process, an empty home, no key."""
    home = tmp_path / "nobody"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env["APERTURE_HOME"] = str(home)
    return subprocess.run(
        [APERTURE, "verify-release", *args, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, bool]:
    return {check["name"]: check["ok"] for check in json.loads(result.stdout)["checks"]}


def sql(services: Services, statement: str, **params: object) -> None:
    with services.database.transaction() as connection:
        connection.execute(text(statement), params)


def test_the_keys_are_published_at_a_well_known_route(release: Release) -> None:
    body = httpx.get(f"{release.url}/.well-known/aperture/keys.json").json()
    keys = {key["name"]: key for key in body["keys"]}
    assert keys["instance"]["algorithm"] == "Ed25519"
    assert keys["instance"]["public_key_pem"] == release.services.keys.public_key_pem
    assert keys["instance"]["log_origin"] == f"aperture/{release.services.keys.key_id}"
    assert keys["artifacts"]["algorithm"] == "ECDSA P-256 SHA-256"
    assert keys["artifacts"]["public_key_pem"] == release.services.keys.artifact_public_key_pem
    # The event page's proof checks with what the site publishes (it links the keys).
    head = httpx.get(f"{release.url}/api/v1/audit/tree-head").json()
    domain.verify_signed_note(head["checkpoint"], keys["instance"]["public_key_pem"])
    page = httpx.get(f"{release.url}/audit/events/0").text
    assert "/.well-known/aperture/keys.json" in page


def test_a_release_verifies_end_to_end_from_public_material(release: Release, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_text(httpx.get(f"{release.url}/api/v1/audit/checkpoint").text)
    result = verify_release(
        tmp_path, release.url, "open:1.0", "--checkpoint", str(checkpoint), "--weights", str(release.weights)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aperture-facts.json by its digest in the registration logged at leaf" in result.stdout
    assert checks(result) == dict.fromkeys(
        [
            "public keys",
            "public registry entry",
            "decision signature",
            "decision in the log",
            "decision included under a signed tree head",
            "consistent with your checkpoint",
            "registration in the log",
            "registration included under a signed tree head",
            "signed manifest",
            "weights",
        ],
        True,
    )
    # The home the command was given stays empty: it used nothing local.
    assert list((tmp_path / "nobody").iterdir()) == []


def test_a_changed_byte_of_the_weights_fails(release: Release, tmp_path: Path) -> None:
    target = next(path for path in sorted(release.weights.iterdir()) if path.suffix == ".safetensors")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    result = verify_release(tmp_path, release.url, "open:1.0", "--weights", str(release.weights))
    assert result.returncode == 7
    assert checks(result)["weights"] is False
    assert "SHA-256 differs" in result.stdout


def test_an_export_with_its_signed_facts_file_verifies_and_a_changed_facts_file_fails(
    release: Release, tmp_path: Path
) -> None:
    from aperture.audit.release_check import FACTS_FILE as CHECKED
    from aperture.registry.domain import FACTS_FILE

    assert CHECKED == FACTS_FILE
    exported = tmp_path / "export"
    release.services.registry.export_version("open", "1.0", exported, caller=SYSTEM)
    assert (exported / FACTS_FILE).is_file()
    result = verify_release(tmp_path, release.url, "open:1.0", "--weights", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "by its digest in the registration" not in result.stdout  # the file itself was hashed
    (exported / FACTS_FILE).write_text("{}")
    changed = verify_release(tmp_path, release.url, "open:1.0", "--weights", str(exported))
    assert changed.returncode == 7
    assert f"{FACTS_FILE}: the file's SHA-256 differs" in changed.stdout


def test_a_changed_byte_of_the_decision_signature_fails(release: Release, tmp_path: Path) -> None:
    services = release.services
    with services.database.read() as connection:
        signature = connection.execute(
            text("SELECT signature FROM release_proposals WHERE id = :id"), {"id": release.proposal}
        ).scalar_one()
    changed = ("B" if signature[0] != "B" else "C") + signature[1:]
    sql(services, "UPDATE release_proposals SET signature = :s WHERE id = :id", s=changed, id=release.proposal)
    result = verify_release(tmp_path, release.url, "open:1.0")
    assert result.returncode == 7
    assert checks(result)["decision signature"] is False


def test_a_changed_byte_of_the_logged_decision_fails(release: Release, tmp_path: Path) -> None:
    services = release.services
    record = next(r for r in services.audit.list_records(limit=500) if r.action == "release.decided")
    details = dict(record.details, dissent=1)  # the decision had no dissent
    sql(
        services,
        "UPDATE audit_events SET details = :d WHERE leaf_index = :i",
        d=domain.details_text(details),
        i=record.leaf_index,
    )
    result = verify_release(tmp_path, release.url, "open:1.0")
    assert result.returncode == 7
    assert checks(result)["decision included under a signed tree head"] is False


def test_history_rewritten_and_re_signed_fails_against_a_saved_checkpoint(release: Release, tmp_path: Path) -> None:
    """A rogue operator holds the key: they can rewrite a leaf, drop the old heads and sign anew.
    The public log then agrees with itself; only a checkpoint kept outside catches it."""
    services = release.services
    checkpoint = tmp_path / "checkpoint.txt"
    checkpoint.write_text(httpx.get(f"{release.url}/api/v1/audit/checkpoint").text)
    record = next(r for r in services.audit.list_records(limit=500) if r.action == "registry.version.registered")
    details = dict(record.details, files=99)
    leaf = domain.leaf_hash(
        domain.leaf_data_from_members(
            record.event_id,
            record.occurred_at,
            canonical_json(record.actor).decode(),
            record.action,
            canonical_json(record.resource).decode(),
            domain.details_text(details),
            canonical_json(record.commitments).decode() if record.commitments else None,
        )
    )
    sql(
        services,
        "UPDATE audit_events SET details = :d, leaf_hash = :h WHERE leaf_index = :i",
        d=domain.details_text(details),
        h=leaf,
        i=record.leaf_index,
    )
    sql(services, "DELETE FROM audit_tree_heads")
    sql(services, "DELETE FROM audit_tree_nodes")
    services.audit.issue_tree_head()
    self_consistent = verify_release(tmp_path, release.url, "open:1.0")
    assert self_consistent.returncode == 0, self_consistent.stdout
    caught = verify_release(tmp_path, release.url, "open:1.0", "--checkpoint", str(checkpoint))
    assert caught.returncode == 7
    assert checks(caught)["consistent with your checkpoint"] is False
