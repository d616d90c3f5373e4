"""Security tiers end to end through the services, on the real database: classification, Cedar
decisions, sealed storage, the seal's custody, two-person grants, single-use tokens, canaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM, Action, SecurityLevel
from aperture.bootstrap import Services, build_services
from aperture.core.errors import Conflict, Forbidden, IntegrityFailure, InvalidInput, NotFound, Unavailable
from aperture.registry.service import version_asset
from tests.conftest import Instance
from tests.registry.builders import write_hf_directory
from tests.security.world import World, build_world


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    return build_world(services, tmp_path)


def _events(services: Services, action: str) -> list[dict[str, object]]:
    return [
        e.details | {"resource": e.resource, "actor": e.actor}
        for e in services.audit.list_events(limit=500)
        if e.action == action
    ]


def test_lower_tier_is_open_and_upper_tier_needs_clearance_and_programme(world: World) -> None:
    registry = world.services.registry
    assert [m.name for m in registry.list_models(world.caller("alice"))] == ["frontier-7b", "open-1b"]
    for name in ("lena", "nora", "pat"):  # SL2; not in the programme; a partner state with assurance SL4 (allowed)
        visible = [m.name for m in registry.list_models(world.caller(name))]
        assert visible == (["frontier-7b", "open-1b"] if name == "pat" else ["open-1b"]), name
    with pytest.raises(NotFound) as caught:
        registry.get_version("frontier-7b", "1.0", world.caller("nora"))
    with pytest.raises(NotFound) as missing:
        registry.get_version("frontier-7b", "9.9", world.caller("nora"))
    assert caught.value.message.replace("1.0", "X") == missing.value.message.replace("9.9", "X")


def test_a_partner_state_org_below_the_conditions_never_reaches_the_upper_tier(world: World) -> None:
    quinn = world.caller("quinn")  # eastco, state XX: rule of law conditional, assurance SL2
    with pytest.raises(NotFound):
        world.services.registry.get_version("frontier-7b", "1.0", quinn)
    with pytest.raises(NotFound):
        world.services.security.request_grant(quinn, "frontier-7b:1.0", Action.DOWNLOAD, reason="x")
    decision = world.services.access.explain(SYSTEM, "quinn", Action.VIEW, version_asset(world.sealed.id))
    assert not decision.allowed and "partner-upper-tier-conditions" in decision.reasons
    denials = [e for e in _events(world.services, "access.decision") if e["actor"].startswith("quinn")]
    assert denials and all(e["allowed"] is False for e in denials)
    assert all(str(e["resource"]).startswith("asset:model_version:") for e in denials)


def test_every_upper_tier_decision_is_audited_without_the_assets_name(world: World) -> None:
    services = world.services
    services.registry.get_version("frontier-7b", "1.0", world.caller("alice"))
    services.registry.get_version("open-1b", "1.0", world.caller("alice"))
    decisions = _events(services, "access.decision")
    assert any(e["allowed"] is True and e["level"] == "SL4" for e in decisions)
    assert all(e["level"] in ("SL3", "SL4", "SL5") for e in decisions)
    text = " ".join(str(e) for e in services.audit.list_events(limit=500))
    assert "frontier-7b" not in text


def test_upper_tier_files_are_sealed_at_rest_and_need_the_custodians(world: World) -> None:
    services = world.services
    plain = (write_hf_directory(Path(services.settings.home).parent / "copy") / "model.safetensors").read_bytes()
    sealed_files = list(services.settings.sealed_dir.rglob("*-*"))
    assert sealed_files and all(plain[64:128] not in f.read_bytes() for f in sealed_files)
    from sqlalchemy import func, select

    from aperture.vault.store import vault_blob_refs

    owner = f"registry.version:{world.sealed.id}"
    with services.database.read() as connection:
        plain_refs = connection.execute(
            select(func.count()).select_from(vault_blob_refs).where(vault_blob_refs.c.owner == owner)
        ).scalar()
    assert plain_refs == 0, "no plaintext copy of an upper-tier file"
    assert set(services.vault.sealed_copies(owner)) == {f.sha256 for f in world.sealed.files}
    with pytest.raises(Unavailable):
        services.registry.verify_version("frontier-7b", "1.0")
    world.unseal()
    report = services.registry.verify_version("frontier-7b", "1.0")
    assert report.files_checked == len(world.sealed.files)


def test_the_seal_survives_a_restart_sealed_and_refuses_wrong_or_repeated_shares(
    world: World, instance: Instance
) -> None:
    world.unseal()
    assert not world.services.security.seal_status(SYSTEM).sealed
    restarted = build_services(world.services.settings)
    try:
        security = restarted.security
        assert security.seal_status(SYSTEM).sealed
        carol = world.caller("carol")
        with pytest.raises(InvalidInput):  # dave's share presented by carol
            security.present_share(carol, world.shares["dave"])
        with pytest.raises(InvalidInput):  # a made-up share
            security.present_share(carol, world.shares["carol"][:-4] + "beef")
        assert security.seal_status(SYSTEM).presented == 0
        security.present_share(carol, world.shares["carol"])
        with pytest.raises(Conflict):
            security.present_share(carol, world.shares["carol"])
        assert security.seal_status(SYSTEM).presented == 1 and security.seal_status(SYSTEM).sealed
        with pytest.raises(Forbidden):  # not a custodian
            security.present_share(world.caller("alice"), world.shares["erin"])
        security.present_share(world.caller("erin"), world.shares["erin"])
        assert not security.seal_status(SYSTEM).sealed
        kinds = [a.kind.value for a in security.alerts(world.caller("sam"))]
        assert kinds.count("bad_unseal_share") == 2
    finally:
        restarted.close()


def test_tampered_ciphertext_is_detected_and_nothing_of_it_released(world: World) -> None:
    services = world.services
    world.unseal()
    target = max(services.settings.sealed_dir.rglob("*-*"), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.chmod(0o600)
    target.write_bytes(bytes(data))
    with pytest.raises(IntegrityFailure):
        services.registry.verify_version("frontier-7b", "1.0")


def test_two_person_grant_single_use_token_and_revocation(world: World) -> None:
    security = world.services.security
    alice, bob = world.caller("alice"), world.caller("bob")
    world.unseal()
    grant = security.request_grant(alice, "frontier-7b:1.0", Action.DOWNLOAD, reason="evaluation", hours=2)
    with pytest.raises(Forbidden, match="own request"):
        security.approve_grant(alice, grant.id)
    with pytest.raises(NotFound):  # nora approves grants, but is not in the programme: she cannot see it
        security.approve_grant(world.caller("nora"), grant.id)
    with pytest.raises(Forbidden):
        security.issue_token(alice, grant.id, "model.safetensors")  # still pending
    approved = security.approve_grant(bob, grant.id)
    assert approved.state(world.services.clock.now()) == "approved"
    with pytest.raises(NotFound):  # path traversal names no file of the version
        security.issue_token(alice, grant.id, "../../keys/instance-ed25519.pem")
    token = security.issue_token(alice, grant.id, "model.safetensors")
    with pytest.raises(NotFound):  # a token is the requester's alone
        security.redeem(bob, token.token)
    body = b"".join(security.redeem(alice, token.token).chunks)
    expected = next(f for f in world.sealed.files if f.path == "model.safetensors")
    assert len(body) == expected.size
    with pytest.raises(NotFound):
        security.redeem(alice, token.token)  # replay
    second = security.issue_token(alice, grant.id, "model.safetensors")
    security.revoke_grant(alice, grant.id)
    with pytest.raises(Forbidden):
        security.redeem(alice, second.token)  # issued before the revocation, used after
    with pytest.raises(Forbidden):
        security.issue_token(alice, grant.id, "model.safetensors")
    actions = [e.action for e in world.services.audit.list_events(limit=500)]
    assert "security.weights.download" in actions and "security.download.refused" in actions


def test_bulk_export_above_sl3_needs_the_security_officer_too(world: World) -> None:
    security = world.services.security
    alice = world.caller("alice")
    world.unseal()
    grant = security.request_grant(alice, "frontier-7b:1.0", Action.EXPORT, reason="hand-over", hours=1)
    first = security.approve_grant(world.caller("bob"), grant.id)
    assert first.status.value == "pending"
    with pytest.raises(Forbidden):
        security.issue_token(alice, grant.id)
    done = security.approve_grant(world.caller("sam"), grant.id)
    assert done.status.value == "approved" and done.officer == "sam"
    token = security.issue_token(alice, grant.id)
    tar = b"".join(security.redeem(alice, token.token).chunks)
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        assert sorted(archive.getnames()) == sorted(f.path for f in world.sealed.files)


def test_lower_tier_needs_no_grant_and_unclassified_assets_are_denied(world: World) -> None:
    security = world.services.security
    with pytest.raises(InvalidInput, match="need no grant"):
        security.request_grant(world.caller("alice"), "open-1b:1.0", Action.DOWNLOAD, reason="x")
    from aperture.access.domain import AssetKind, AssetRef

    decision = world.services.access.authorize(world.caller("alice"), Action.VIEW, AssetRef(AssetKind.DATASET, "nope"))
    assert not decision.allowed and decision.reasons == ("unclassified",)


def test_a_canary_read_raises_a_high_alert_with_who_what_when_where(world: World, tmp_path: Path) -> None:
    services = world.services
    services.registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "decoy"),
        "frontier-13b",
        "0.9",
        level=SecurityLevel.SL4,
        programme="frontier",
        canary=True,
    )
    alice = world.caller("alice")
    assert "frontier-13b" in [m.name for m in services.registry.list_models(alice)]  # a listing is no read
    assert services.security.alerts(world.caller("sam")) == []
    services.registry.get_version("frontier-13b", "0.9", alice)
    (alert,) = services.security.alerts(world.caller("sam"))
    assert alert.severity.value == "high" and alert.kind.value == "canary_touched"
    assert alert.principal.startswith("alice") and alert.origin == "192.0.2.7" and alert.raised_at
    assert "frontier-13b" not in str(services.audit.list_events(limit=500))
    with pytest.raises(Forbidden):
        services.security.alerts(alice)


def test_outside_programmes_and_download_surges_raise_alerts(world: World) -> None:
    services = world.services
    with pytest.raises(NotFound):
        services.registry.get_version("frontier-7b", "1.0", world.caller("nora"))
    world.unseal()
    alice = world.caller("alice")
    grant = services.security.request_grant(alice, "frontier-7b:1.0", Action.DOWNLOAD, reason="many", hours=1)
    services.security.approve_grant(world.caller("bob"), grant.id)
    for _ in range(services.security.config.anomaly_min_downloads + 1):
        token = services.security.issue_token(alice, grant.id, "config.json")
        b"".join(services.security.redeem(alice, token.token).chunks)
    kinds = [a.kind.value for a in services.security.alerts(world.caller("sam"))]
    assert "outside_programmes" in kinds and "download_surge" in kinds


def test_classification_rules(world: World) -> None:
    access = world.services.access
    asset = version_asset(world.open_version.id)
    with pytest.raises(InvalidInput, match="programme"):
        access.classify(SYSTEM, asset, label="open-1b:1.0", level=SecurityLevel.SL3)
    with pytest.raises(Forbidden):
        access.classify(world.caller("alice"), asset, label="open-1b:1.0", level=SecurityLevel.SL2)
    access.classify(world.caller("sam"), asset, label="open-1b:1.0", level=SecurityLevel.SL2)
    assert access.lookup(asset).level is SecurityLevel.SL2  # type: ignore[union-attr]
    assert not access.authorize(world.caller("carol"), Action.VIEW, asset).allowed  # SL1 clearance
