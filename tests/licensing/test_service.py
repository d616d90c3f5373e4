"""Licensing use cases on a real instance: applications, screening and the two-person decision,
the licence lifecycle, traceable copies (sealed, self-tested, logged), single-use downloads cut by
suspension and revocation, tracing with a signed report, the reverse question, and diffusion."""

from __future__ import annotations

import io
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load, save_file

from aperture.access.domain import SYSTEM
from aperture.core.errors import Conflict, Forbidden, InvalidInput, NotFound, NotInitialised, Unavailable
from aperture.licensing import marking
from aperture.licensing.domain import ApplicationStatus, LicenceState
from aperture.release.domain import Tier
from aperture.testing.release import put_tier
from tests.licensing.world import (
    MODEL,
    REFERENCE,
    VERSION,
    World,
    board_decides,
    seat_the_board,
    tiny_llama_weights,
    write_tiny_model,
)
from tests.release.world import Board


def events(world: World, action: str) -> list[Any]:
    """Every audit event with this action, oldest first."""
    found: list[Any] = []
    before: int | None = None
    while page := world.services.audit.list_events(limit=500, before=before):
        found.extend(e for e in page if e.action == action)
        before = page[-1].leaf_index
    return found[::-1]


def apply(world: World, who: str = "alan", **extra: Any) -> Any:
    arguments: dict[str, Any] = {
        "intended_use": "Domain adaptation for medical triage research",
        "fields_of_use": ["research", "health"],
        "territories": ["FR", "DE"],
        "claimed_level": 3,
        "certifications": ["ISO 27001"],
        "fee_minor": 12_000_000,
        "currency": "EUR",
        "schedule": "annual",
        "term_months": 18,
    }
    arguments.update(extra)
    return world.services.licensing.apply(world.caller(who), REFERENCE, **arguments)


def approve(world: World, application_id: str) -> Any:
    licensing = world.services.licensing
    for question in licensing.checklist():
        licensing.screen(world.caller("olive"), application_id, question.id, "pass", "checked")
    decided = licensing.decide(world.caller("olive"), application_id, "approve", "meets every condition")
    if decided.status is ApplicationStatus.APPROVED:  # a lower-tier model: one officer decides
        return decided
    return licensing.second_approval(world.caller("oscar"), application_id)


def licensed(world: World, who: str = "alan") -> Any:
    application = approve(world, apply(world, who).id)
    licensing = world.services.licensing
    licence = licensing.grant_licence(world.caller("olive"), application.id)
    return licensing.change_licence(world.caller("olive"), licence.id, "activate")


def test_an_application_for_a_model_outside_the_licensed_tier_is_refused(world: World) -> None:
    put_tier(world.services, MODEL, VERSION, Tier.HOSTED)
    with pytest.raises(Conflict, match="hosted tier"):
        apply(world)
    with pytest.raises(NotFound):
        world.services.licensing.apply(
            world.caller("alan"), "nope:1", intended_use="x", fields_of_use=["a"], territories=["FR"], claimed_level=3
        )
    assert world.services.licensing.list_applications(world.caller("olive")) == []


def test_bad_applications_name_the_problem(world: World) -> None:
    with pytest.raises(InvalidInput, match="territories"):
        apply(world, territories=["France"])
    with pytest.raises(InvalidInput, match="currency"):
        apply(world, currency="euro")
    with pytest.raises(InvalidInput, match="field of use"):
        apply(world, fields_of_use=[])
    with pytest.raises(Forbidden, match="organisation"):
        world.services.licensing.apply(
            SYSTEM, REFERENCE, intended_use="x", fields_of_use=["a"], territories=["FR"], claimed_level=3
        )


def test_screening_and_a_second_approver_for_upper_tier_models(world: World) -> None:
    licensing = world.services.licensing
    application = apply(world)
    assert application.upper_tier and application.status is ApplicationStatus.SUBMITTED
    with pytest.raises(Forbidden, match="licensing officers"):
        licensing.screen(world.caller("alan"), application.id, "identity", "pass")
    with pytest.raises(Forbidden, match="licensing officers"):
        licensing.decide(world.caller("alan"), application.id, "approve")
    with pytest.raises(Conflict, match="not complete"):
        licensing.decide(world.caller("olive"), application.id, "approve")
    with pytest.raises(InvalidInput, match="no screening question"):
        licensing.screen(world.caller("olive"), application.id, "nope", "pass")
    for question in licensing.checklist():
        licensing.screen(world.caller("olive"), application.id, question.id, "pass")
    with pytest.raises(Forbidden, match="applying organisation"):
        licensing.decide(world.caller("otto"), application.id, "approve")
    waiting = licensing.decide(world.caller("olive"), application.id, "approve")
    assert waiting.status is ApplicationStatus.AWAITING_SECOND
    with pytest.raises(Forbidden, match="another person"):
        licensing.second_approval(world.caller("olive"), application.id)
    approved = licensing.second_approval(world.caller("oscar"), application.id)
    assert approved.status is ApplicationStatus.APPROVED and approved.decided_by == ("olive", "oscar")
    assert events(world, "licensing.application.approved")


def test_an_applicant_never_approves_their_own_application(world: World) -> None:
    licensing = world.services.licensing
    application = apply(world, who="otto")  # an officer of acme applies
    with pytest.raises(Forbidden, match="own application"):
        licensing.screen(world.caller("otto"), application.id, "identity", "pass")
    for question in licensing.checklist():
        licensing.screen(world.caller("olive"), application.id, question.id, "pass")
    with pytest.raises(Forbidden, match="own application"):
        licensing.decide(world.caller("otto"), application.id, "approve")
    licensing.decide(world.caller("olive"), application.id, "approve")
    with pytest.raises(Forbidden, match="own application"):
        licensing.second_approval(world.caller("otto"), application.id)


def test_rejection_and_requests_for_information_carry_reasons_the_applicant_sees(world: World) -> None:
    licensing = world.services.licensing
    application = apply(world)
    licensing.screen(world.caller("olive"), application.id, "security", "fail", "no audit report")
    with pytest.raises(InvalidInput, match="reasons"):
        licensing.decide(world.caller("olive"), application.id, "request_information")
    asked = licensing.decide(world.caller("olive"), application.id, "request_information", "send the SL3 audit")
    assert asked.status is ApplicationStatus.MORE_INFORMATION
    seen = licensing.get_application(world.caller("alan"), application.id)
    assert seen.reasons == "send the SL3 audit"
    with pytest.raises(NotFound):
        licensing.get_application(world.caller("bea"), application.id)  # another company sees nothing
    licensing.answer_request(world.caller("alan"), application.id, "audit attached to our portal, ref 42")
    rejected = licensing.decide(world.caller("olive"), application.id, "reject", "the audit is out of date")
    assert rejected.status is ApplicationStatus.REJECTED
    assert licensing.get_application(world.caller("alan"), application.id).reasons == "the audit is out of date"


def test_evidence_is_kept_with_the_screening_answer(world: World, tmp_path: Path) -> None:
    evidence = tmp_path / "audit.pdf"
    evidence.write_bytes(b"%PDF-1.4 audit report")
    application = apply(world)
    after = world.services.licensing.screen(
        world.caller("olive"), application.id, "security", "pass", evidence=[evidence]
    )
    assert after.screening[0].evidence and len(after.screening[0].evidence[0]) == 64


def test_licence_lifecycle_receivables_and_automatic_expiry(world: World) -> None:
    licensing = world.services.licensing
    licence = licensed(world)
    assert licence.state is LicenceState.ACTIVE
    receivables = licensing.receivables(world.caller("olive"), licence.id)
    assert [r.amount_minor for r in receivables] == [12_000_000, 6_000_000]  # 18 months, annual: one year + pro rata
    assert licensing.active_licence("acme", MODEL, VERSION) is not None
    assert licensing.active_licence("beta", MODEL, VERSION) is None
    assert licensing.licensees_in_force(MODEL, VERSION) == {"acme"}  # what the gateway serves
    with pytest.raises(Conflict, match="it cannot activate"):
        licensing.change_licence(world.caller("olive"), licence.id, "activate")
    with pytest.raises(InvalidInput, match="reason"):
        licensing.change_licence(world.caller("olive"), licence.id, "suspend")
    with pytest.raises(Forbidden):
        licensing.change_licence(world.caller("alan"), licence.id, "suspend", "x")
    suspended = licensing.change_licence(world.caller("olive"), licence.id, "suspend", "audit overdue")
    assert suspended.state is LicenceState.SUSPENDED and licensing.active_licence("acme", MODEL, VERSION) is None
    assert licensing.licensees_in_force(MODEL, VERSION) == frozenset()
    licensing.change_licence(world.caller("olive"), licence.id, "reinstate")
    world.clock.advance(timedelta(days=600))
    assert licensing.active_licence("acme", MODEL, VERSION) is None
    assert licensing.get_licence(world.caller("alan"), licence.id).state is LicenceState.EXPIRED
    assert [e.actor for e in events(world, "licensing.licence.expire")] == ["licensing-clock"]
    with pytest.raises(Conflict, match="expired: it cannot reinstate"):
        licensing.change_licence(world.caller("olive"), licence.id, "reinstate")


def test_copies_need_the_seal(world: World) -> None:
    licence = licensed(world)
    with pytest.raises(Unavailable, match="sealed"):
        world.services.licensing.issue_copy(world.caller("olive"), licence.id)


def test_without_a_seal_the_error_names_seal_init(settings, tmp_path: Path) -> None:
    from aperture.bootstrap import build_services, init_instance
    from tests.licensing.world import SteppingClock, build_world

    services = build_services(settings, clock=SteppingClock())
    init_instance(services)
    try:
        bare = build_world(services, tmp_path, SteppingClock(), seal=False)
        licence = licensed(bare)
        with pytest.raises(NotInitialised, match="master secret") as caught:
            services.licensing.issue_copy(bare.caller("olive"), licence.id)
        assert "aperture seal init" in caught.value.hint
    finally:
        services.close()


def download(world: World, who: str, copy_id: str) -> dict[str, bytes]:
    token = world.services.licensing.issue_download_token(world.caller(who), copy_id)
    got = world.services.licensing.redeem(world.caller(who), token.token)
    data = b"".join(got.chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]


def test_copies_are_sealed_self_tested_logged_and_traced(world: World, tmp_path: Path) -> None:
    world.unseal()
    licensing = world.services.licensing
    acme, beta, gamma = licensed(world, "alan"), licensed(world, "bea"), licensed(world, "gus")
    copies = {
        lic.terms.organisation: licensing.issue_copy(world.caller("olive"), lic.id) for lic in (acme, beta, gamma)
    }
    copy = copies["acme"]
    assert copy.self_test_z > 50
    marked = [f for f in copy.files if f.marked]
    assert len(marked) == 1 and marked[0].artifact_id
    original = {f.path: f.sha256 for f in world.version.files}
    assert marked[0].sha256 != original["model.safetensors"]
    assert [f.sha256 for f in copy.files if not f.marked] == [original["config.json"]]
    # never unencrypted at rest: the sealed store holds no safetensors header of the copy
    sealed_file = world.services.vault.sealed_path(marked[0].artifact_id)
    assert b"model.layers" not in sealed_file.read_bytes()
    logged = events(world, "licensing.copy.issued")
    assert {e.details["commitment"] for e in logged} == {c.commitment for c in copies.values()}
    assert logged[0].details["shard_hashes"]

    files = download(world, "alan", copy.id)
    assert set(files) == {"config.json", "model.safetensors"}
    leaked = tmp_path / "leak.safetensors"
    leaked.write_bytes(files["model.safetensors"])
    result = licensing.trace(world.caller("olive"), leaked)
    report = result.report
    assert [a["organisation"] for a in report["accused"]] == ["acme"]
    assert report["verbatim_matches"][0]["organisation"] == "acme"
    innocent = [float(s["z"] or s["screen_z"]) for s in report["scores"] if s["organisation"] != "acme"]
    assert max(innocent) < 6 and report["null"]["screen"]["count"] == 50
    assert licensing.verify_report(report, result.signature)
    tampered = dict(report, verdict="nobody")
    assert not licensing.verify_report(tampered, result.signature)
    assert events(world, "licensing.trace.reported")

    # collusion: the average of three licensees' copies accuses all three
    mixed = {}
    for who, c in copies.items():
        other = download(world, {"acme": "alan", "beta": "bea", "gamma": "gus"}[who], c.id)["model.safetensors"]
        for name, value in load(other).items():
            mixed[name] = mixed.get(name, 0) + value / 3
    averaged = tmp_path / "average.safetensors"
    save_file({k: np.asarray(v, dtype=np.float32) for k, v in mixed.items()}, str(averaged))
    report = licensing.trace(world.caller("olive"), averaged).report
    assert sorted(a["organisation"] for a in report["accused"]) == ["acme", "beta", "gamma"]
    assert "collusion" in report["collusion"]

    # an unrelated model of the same shape accuses nobody
    unrelated = write_tiny_model(tmp_path / "unrelated", tiny_llama_weights(seed=1234))
    report = licensing.trace(world.caller("olive"), unrelated).report
    assert report["accused"] == [] and "no licensee accused" in report["verdict"]

    # the reverse question: the unmarked original is recognised by hash and by lineage
    source = tmp_path / "tiny-source" / "model.safetensors"
    found = licensing.identify(world.caller("olive"), source)
    assert any(m["match"].startswith("unmarked original") for m in found["hash_matches"])
    assert found["derived_from"] == [REFERENCE]
    assert licensing.identify(world.caller("olive"), unrelated)["derived_from"] == []


def test_tokens_are_single_use_expire_and_die_with_the_licence(world: World) -> None:
    world.unseal()
    licensing = world.services.licensing
    licence = licensed(world)
    copy = licensing.issue_copy(world.caller("olive"), licence.id)
    with pytest.raises(NotFound):
        licensing.issue_download_token(world.caller("bea"), copy.id)  # another licensee
    token = licensing.issue_download_token(world.caller("alan"), copy.id)
    with pytest.raises(NotFound):
        licensing.redeem(world.caller("bea"), token.token)
    b"".join(licensing.redeem(world.caller("alan"), token.token).chunks)
    with pytest.raises(NotFound, match="no usable download token"):
        licensing.redeem(world.caller("alan"), token.token)  # replay
    late = licensing.issue_download_token(world.caller("alan"), copy.id)
    world.clock.advance(timedelta(minutes=11))
    with pytest.raises(NotFound):
        licensing.redeem(world.caller("alan"), late.token)  # expired
    pending = licensing.issue_download_token(world.caller("alan"), copy.id)
    licensing.change_licence(world.caller("olive"), licence.id, "revoke", "leaked copy traced to the licensee")
    with pytest.raises(Forbidden, match="suspended or revoked"):
        licensing.redeem(world.caller("alan"), pending.token)  # revoked licensee's token
    with pytest.raises(Forbidden, match="revoked"):
        licensing.issue_download_token(world.caller("alan"), copy.id)
    assert licensing.active_licence("acme", MODEL, VERSION) is None
    revoked = events(world, "licensing.licence.revoke")
    assert revoked[0].details["tokens_cancelled"] == 1
    assert all(r.status == "cancelled" for r in licensing.receivables(world.caller("olive"), licence.id)[1:])
    with pytest.raises(InvalidInput):
        licensing.redeem(world.caller("alan"), "not-a-token")


def test_diffusion_needs_the_boards_decision_and_warns_that_traceability_ends(world: World) -> None:
    licensing, release = world.services.licensing, world.services.release
    seat_the_board(world)
    Board(world.services, world.version).import_knowledge({"bio": 0.25, "chem": 0.25, "cyber": 0.25})
    licensed_decision = str(board_decides(world, Tier.LICENSED, votes=2)["id"])
    assert release.tier_of(MODEL, VERSION) is Tier.LICENSED

    with pytest.raises(NotFound, match="no release board decision board-8"):
        licensing.diffuse(SYSTEM, REFERENCE, "partners", decision_id="board-8")
    partners = licensing.diffuse(SYSTEM, REFERENCE, "partners", decision_id=licensed_decision)
    assert partners["target"] == "partners" and not partners["warning"]

    with pytest.raises(Conflict, match="ENDS TRACEABILITY"):
        licensing.diffuse(SYSTEM, REFERENCE, "open", decision_id=licensed_decision)
    with pytest.raises(Conflict, match=r"not tiny-licensed:1\.0 under open"):
        licensing.diffuse(SYSTEM, REFERENCE, "open", decision_id=licensed_decision, acknowledge=True)

    opening = board_decides(world, Tier.OPEN, votes=3)
    assert opening["status"] == "cooling-off"
    with pytest.raises(Conflict, match="cooling-off period runs until"):
        licensing.diffuse(SYSTEM, REFERENCE, "open", decision_id=str(opening["id"]), acknowledge=True)
    world.clock.advance(timedelta(days=15))
    with pytest.raises(Forbidden, match="carrying out a release decision"):
        licensing.diffuse(world.caller("olive"), REFERENCE, "open", decision_id=str(opening["id"]), acknowledge=True)
    assert release.tier_of(MODEL, VERSION) is Tier.LICENSED
    assert [d["target"] for d in licensing.diffusions(SYSTEM)] == ["partners"]  # the refusals recorded nothing

    done = licensing.diffuse(SYSTEM, REFERENCE, "open", decision_id=str(opening["id"]), acknowledge=True)
    assert "ENDS TRACEABILITY" in done["warning"]
    assert release.tier_of(MODEL, VERSION) is Tier.OPEN
    assert release.proposal(SYSTEM, str(opening["id"]))["status"] == "effective"
    assert events(world, "licensing.diffusion.open") and events(world, "release.take_effect")
    with pytest.raises(Conflict, match="not in the licensed tier"):
        licensing.diffuse(SYSTEM, REFERENCE, "partners", decision_id=licensed_decision)


def test_catalogue_lists_licensed_models_with_their_terms(world: World) -> None:
    licensed(world)
    entries = world.services.licensing.catalogue(SYSTEM)
    assert [(e.model, e.version, e.minimum_security_level, e.active_licences) for e in entries] == [
        (MODEL, VERSION, "SL3", 1)
    ]


def test_a_trace_needs_issued_copies_and_a_model_file(world: World, tmp_path: Path) -> None:
    world.unseal()
    licensing = world.services.licensing
    junk = tmp_path / "junk.bin.txt"
    junk.write_text("not weights")
    with pytest.raises(InvalidInput, match="not a model"):
        licensing.trace(world.caller("olive"), junk)
    model = tmp_path / "tiny-source" / "model.safetensors"
    with pytest.raises(NotFound, match="no traceable copies"):
        licensing.trace(world.caller("olive"), model)
    with pytest.raises(Forbidden):
        licensing.trace(world.caller("alan"), model)
    assert marking.THRESHOLD == 6.0
