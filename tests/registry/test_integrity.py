"""A version's signature is bound to it, and the facts that drive release decisions are signed.

Each test edits the database the way an insider with write access to it would, then checks that
`verify_version` (what `aperture models verify` and the verify route call) fails and names what
was changed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from aperture.access.domain import SYSTEM, Caller, Role, SecurityLevel
from aperture.bootstrap import Services
from aperture.core.errors import Conflict, Forbidden, IntegrityFailure
from aperture.registry.domain import SIGNATURE_IGNORE_PATHS, FactsStatus, ModelVersion, manifest_entries
from tests.registry.builders import write_hf_directory
from tests.registry.test_service import model_signing_verify

FACTS_FILE = "aperture-facts.json"  # written beside model.sig on export


def execute(services: Services, statement: str, **params: object) -> None:
    with services.database.transaction() as connection:
        connection.execute(text(statement), params)


def logged_details(services: Services, leaf: int | None) -> dict[str, object]:
    with services.database.read() as connection:
        row = connection.execute(text("SELECT details FROM audit_events WHERE leaf_index = :i"), {"i": leaf})
        return dict(json.loads(row.scalar_one()))


def version_id(services: Services, reference: str) -> str:
    return services.registry.find_version(reference).id


def two_versions(services: Services, tmp_path: Path) -> tuple[str, str]:
    first = write_hf_directory(tmp_path / "one")
    second = write_hf_directory(tmp_path / "two")
    (second / "README.md").write_text("# tiny\n\nThe second version.\n")
    one = services.registry.register(SYSTEM, first, "m", "1", licence="Apache-2.0", training_flop="1e21").version
    two = services.registry.register(SYSTEM, second, "m", "2", licence="Apache-2.0", training_flop="1e21").version
    return one.id, two.id


def swap_files(services: Services, source_id: str, target_id: str) -> None:
    """Give `target` the file rows of `source` (the same paths, sizes and digests)."""
    execute(services, "DELETE FROM registry_version_files WHERE version_id = :t", t=target_id)
    execute(
        services,
        "INSERT INTO registry_version_files (version_id, path, size, sha256, kind, schema_version) "
        "SELECT :t, path, size, sha256, kind, schema_version FROM registry_version_files WHERE version_id = :s",
        s=source_id,
        t=target_id,
    )


def test_another_versions_signature_and_files_do_not_pass(services: Services, tmp_path: Path) -> None:
    one, two = two_versions(services, tmp_path)
    services.registry.verify_version("m", "2")
    # The bundle and file rows of m:1 moved into m:2: a valid signature over files that are stored.
    execute(
        services,
        "UPDATE registry_versions SET signature = (SELECT signature FROM registry_versions WHERE id = :s) "
        "WHERE id = :t",
        s=one,
        t=two,
    )
    swap_files(services, one, two)
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "2")
    assert "the signature belongs to m:1, not to m:2" in caught.value.message
    assert "another version" in caught.value.hint or "restore" in caught.value.hint
    # Moving every signed column of m:1 (bundle, digest, facts) still names the other version.
    for column in ("manifest_digest", "signed_facts"):
        execute(
            services,
            f"UPDATE registry_versions SET {column} = (SELECT {column} FROM registry_versions WHERE id = :s) "
            "WHERE id = :t",
            s=one,
            t=two,
        )
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "2")
    assert f"the signed facts belong to version id {one} (m:1), not to m:2" in caught.value.message
    assert "binding" in caught.value.details["fields"]


@pytest.mark.parametrize(
    ("table", "column", "value", "field"),
    [
        ("registry_versions", "training_flop", "99000000000000000000000000", "training_flop"),
        ("registry_versions", "parameter_count", 7, "parameter_count"),
        ("registry_versions", "licence", "MIT", "licence"),
        ("registry_versions", "manifest_digest", "0" * 64, "manifest_digest"),
        ("registry_versions", "base_model", "org/other", "lineage.base_model"),
        ("registry_versions", "base_licence", "LicenseRef-Proprietary", "lineage.base_licence"),
        ("access_classifications", "level", 2, "security.level"),
        ("registry_versions", "registered_by", "someone else", "registered_by"),
        ("registry_versions", "signing_key_id", "0123456789abcdef", "signing_key_id"),
        ("registry_versions", "description", "edited", "description"),
    ],
)
def test_an_edited_fact_is_named(
    services: Services, tmp_path: Path, table: str, column: str, value: object, field: str
) -> None:
    services.registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "hf"),
        "m",
        "1",
        licence="Apache-2.0",
        training_flop="3.2e21",
        base_model="org/upstream",
        base_licence="Apache-2.0",
    )
    services.registry.verify_version("m", "1")
    key = "id" if table == "registry_versions" else "asset_id"
    execute(services, f"UPDATE {table} SET {column} = :v WHERE {key} = :i", v=value, i=version_id(services, "m:1"))
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "1")
    assert field in caught.value.message, caught.value.message
    assert field in caught.value.details["fields"]
    with services.database.read() as connection:
        last = connection.execute(text("SELECT action FROM audit_events ORDER BY leaf_index DESC")).scalar()
    assert last == "registry.version.verification_failed"


def test_a_downgraded_upper_tier_version_is_caught(services: Services, tmp_path: Path) -> None:
    services.access.add_programme(SYSTEM, "frontier", "Frontier models")
    shares = services.vault.init_seal  # the tier needs a key before SL4 can be sealed
    with services.database.transaction() as connection:
        _, handed = shares(connection, ["carol", "dave"], 2, services.clock.now())
    services.registry.register(
        SYSTEM, write_hf_directory(tmp_path / "hf"), "frontier", "1", level=SecurityLevel.SL4, programme="frontier"
    )
    for custodian, share in handed:
        services.vault.present_share(custodian, share.text)
    services.registry.verify_version("frontier", "1")
    execute(
        services,
        "UPDATE access_classifications SET level = 1, programme = NULL WHERE asset_id = :i",
        i=version_id(services, "frontier:1"),
    )
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("frontier", "1")
    assert "security.level" in caught.value.details["fields"]
    assert "security.programme" in caught.value.details["fields"]


def test_a_changed_registration_event_is_caught(services: Services, tmp_path: Path) -> None:
    version = services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1").version
    assert version.facts_event is not None
    details = logged_details(services, version.facts_event)
    assert details["facts_digest"] == version.facts_digest
    details["facts_digest"] = "0" * 64
    execute(
        services,
        "UPDATE audit_events SET details = :d WHERE leaf_index = :i",
        d=json.dumps(details),
        i=version.facts_event,
    )
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "1")
    assert "registration event" in caught.value.message
    assert "registration_event" in caught.value.details["fields"]


def test_the_signed_facts_travel_with_an_export_and_model_signing_checks_them(
    services: Services, tmp_path: Path
) -> None:
    version = services.registry.register(
        SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1", licence="Apache-2.0", training_flop="3.2e21"
    ).version
    result = services.registry.export_version("m", "1", tmp_path / "export")
    facts = json.loads((result.directory / FACTS_FILE).read_text(encoding="utf-8"))
    assert facts["version_id"] == version.id and facts["model"] == "m" and facts["version"] == "1"
    assert facts["training_flop"] == str(3_200_000_000_000_000_000_000) and facts["licence"] == "Apache-2.0"
    done = model_signing_verify(services, result.directory)
    assert done.returncode == 0, done.stdout + done.stderr
    facts["training_flop"] = "1"
    (result.directory / FACTS_FILE).write_text(json.dumps(facts), encoding="utf-8")
    done = model_signing_verify(services, result.directory)
    assert done.returncode != 0 and FACTS_FILE in done.stderr


def test_removing_the_signed_facts_is_caught(services: Services, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1", licence="MIT")
    execute(services, "UPDATE registry_versions SET signed_facts = NULL, licence = 'Apache-2.0'")
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("m", "1")
    assert "signed_facts" in caught.value.details["fields"]
    assert "the signature covers signed facts that the database no longer holds" in caught.value.message


def _legacy_signing(monkeypatch: pytest.MonkeyPatch, services: Services) -> None:
    """Register as before revision 0007: the manifest lists the files only, no facts document."""

    def files_only(draft: ModelVersion, level: object, programme: object) -> ModelVersion:
        signed = services.vault.sign(draft.reference, manifest_entries(draft.files), SIGNATURE_IGNORE_PATHS)
        return replace(
            draft, manifest_digest=signed.root_digest, signing_key_id=signed.key_id, signature=signed.bundle_json
        )

    monkeypatch.setattr(services.registry, "_signed", files_only)


def test_a_version_registered_before_facts_were_signed(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _legacy_signing(patch, services)
        old = services.registry.register(
            SYSTEM, write_hf_directory(tmp_path / "hf"), "old", "1", licence="Apache-2.0", training_flop="1e21"
        ).version
    execute(services, "UPDATE registry_versions SET facts_event = NULL")
    assert old.signed_facts is None
    report = services.registry.verify_version("old", "1")
    assert report.facts is FactsStatus.UNSIGNED and report.facts_digest is None
    # Its registration event recorded the licence and compute: an edit is still named.
    execute(services, "UPDATE registry_versions SET training_flop = '1'")
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("old", "1")
    assert caught.value.details["fields"] == ["training_flop"]
    with pytest.raises(IntegrityFailure, match="training_flop"):
        services.registry.sign_facts(SYSTEM, "old", "1")
    execute(services, "UPDATE registry_versions SET training_flop = :f", f=str(10**21))
    with pytest.raises(Forbidden):
        services.registry.sign_facts(Caller("rob", (Role.RESEARCHER,), "abcd0001"), "old", "1")
    signed = services.registry.sign_facts(SYSTEM, "old", "1")
    assert signed.signed_facts is not None and signed.manifest_digest != old.manifest_digest
    report = services.registry.verify_version("old", "1")
    assert report.facts is FactsStatus.SIGNED and report.facts_event == signed.facts_event
    details = logged_details(services, signed.facts_event)
    assert details["previous_manifest_digest"] == old.manifest_digest
    assert details["facts_digest"] == signed.facts_digest
    with pytest.raises(Conflict, match="already signed"):
        services.registry.sign_facts(SYSTEM, "old", "1")
    exported = services.registry.export_version("old", "1", tmp_path / "export")
    done = model_signing_verify(services, exported.directory)
    assert done.returncode == 0, done.stdout + done.stderr
    # Putting the older signature back (to edit the facts freely) is caught: the log saw the signing.
    execute(
        services,
        "UPDATE registry_versions SET signature = :s, manifest_digest = :d, signed_facts = NULL, facts_event = NULL",
        s=old.signature,
        d=old.manifest_digest,
    )
    with pytest.raises(IntegrityFailure) as caught:
        services.registry.verify_version("old", "1")
    assert f"the facts were signed (log leaf {signed.facts_event}) but the database holds none" in caught.value.message


def test_a_reclassification_in_the_log_explains_a_new_level(services: Services, tmp_path: Path) -> None:
    version = services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "m", "1").version
    from aperture.registry.service import version_asset

    services.access.classify(SYSTEM, version_asset(version.id), label="m:1", level=SecurityLevel.SL2)
    report = services.registry.verify_version("m", "1")
    assert report.notes and "reclassified from SL1 to SL2" in report.notes[0]
