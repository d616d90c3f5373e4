"""The release board end to end through the service: proposals, votes, quorum, dissent, conflicts,
cooling-off, challenges, stale decisions, stages, policy adoption and re-assessment triggers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aperture.access.domain import SYSTEM
from aperture.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from aperture.release.domain import Tier
from aperture.release.service import parse_stage
from tests.release.conftest import SteppingClock
from tests.release.world import Board

AT_CHANCE = {"bio": 0.25, "chem": 0.25, "cyber": 0.25}


def actions(board: Board) -> list[str]:
    return [event.action for event in board.services.audit.list_events(limit=200)]


def test_the_shipped_policy_is_adopted_and_signed_at_init(board: Board) -> None:
    [policy] = board.services.release.policies()
    assert policy["name"] == "aperture-default" and policy["active"] and policy["signature_valid"]


def test_no_evidence_decides_secured_then_evidence_opens(board: Board) -> None:
    release = board.services.release
    first = release.evaluate(SYSTEM, board.version.reference)
    assert first.tier is Tier.SECURED and "evidence for bio" in first.missing
    board.import_knowledge(AT_CHANCE)
    assert release.evaluate(SYSTEM, board.version.reference).tier is Tier.OPEN


def test_open_needs_the_higher_quorum_and_the_cooling_off(board: Board, clock: SteppingClock) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    proposal = release.propose(board.director, board.version.reference, Tier.OPEN, "small, at chance: open it")
    assert proposal["quorum"] == 3 and proposal["status"] == "voting"
    pid = proposal["id"]

    with pytest.raises(Forbidden, match="not a member of the release board"):
        release.vote(board.caller("rita"), pid, True, "I like it")
    release.declare_conflict(board.caller("dee"), pid, "I trained this model")
    with pytest.raises(Forbidden, match="conflict of interest"):
        release.vote(board.caller("dee"), pid, True, "mine")
    release.vote(board.caller("ada"), pid, True, "evidence at chance on all three domains")
    with pytest.raises(Conflict, match="already voted"):
        release.vote(board.caller("ada"), pid, False, "changed my mind")
    after = release.vote(board.caller("ben"), pid, True, "proportionate for a small model")
    assert after["status"] == "voting"
    # Only cy is left and two approvals are in: the quorum of 3 is still reachable.
    done = release.vote(board.caller("cy"), pid, True, "agree, note the tiny sample")
    assert done["status"] == "cooling-off" and done["cooling_off_until"]
    assert release.tier_of("small", "1.0") is None
    assert release.verify_decision(SYSTEM, pid)
    assert done["record"]["conflicts_declared"] == ["dee"]

    with pytest.raises(Conflict, match="cooling-off period runs until"):
        release.carry_out(board.director, pid)
    assert release.tier_of("small", "1.0") is None
    clock.advance(timedelta(days=15))
    assert release.carry_out(board.director, pid)["status"] == "effective"
    assert release.tier_of("small", "1.0") is Tier.OPEN
    log = actions(board)
    assert log.count("release.refused") >= 3 and "release.decided" in log and "release.take_effect" in log


def test_dissent_is_recorded_and_reversible_tiers_take_effect_at_once(board: Board) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    pid = release.propose(board.director, board.version.reference, Tier.HOSTED, "start hosted")["id"]
    release.vote(board.caller("ada"), pid, False, "should be open: it is at chance")
    release.vote(board.caller("ben"), pid, True, "start cautiously")
    decided = release.vote(board.caller("cy"), pid, True, "fine")
    assert decided["status"] == "effective"
    assert decided["dissent"] == [{"member": "ada", "reason": "should be open: it is at chance"}]
    assert release.tier_of("small", "1.0") is Tier.HOSTED
    public = next(e for e in release.public_registry() if e["model"] == "small:1.0")
    assert public["tier"] == "hosted" and public["decision"]["dissent"][0]["reason"].startswith("should be open")


def test_rejected_when_quorum_can_no_longer_be_reached(board: Board) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    pid = release.propose(board.director, board.version.reference, Tier.OPEN, "open")["id"]
    release.vote(board.caller("ada"), pid, False, "too early")
    assert release.vote(board.caller("ben"), pid, False, "no")["status"] == "rejected"
    assert release.tier_of("small", "1.0") is None


def test_challenge_during_cooling_off_stops_the_opening(board: Board, clock: SteppingClock) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    pid = release.propose(board.director, board.version.reference, Tier.OPEN, "open")["id"]
    for name in ("ada", "ben", "cy"):
        release.vote(board.caller(name), pid, True, "ok")
    assert release.challenge(board.caller("rita"), pid, "the cyber sample was 40 items")["status"] == "challenged"
    clock.advance(timedelta(days=30))
    with pytest.raises(Conflict, match="challenged"):
        release.carry_out(board.director, pid)
    assert release.tier_of("small", "1.0") is None


def test_more_open_than_the_policy_allows_is_refused_with_what_is_missing(board: Board) -> None:
    with pytest.raises(Forbidden) as error:
        board.services.release.propose(board.director, board.version.reference, Tier.OPEN, "open please")
    assert "at most secured" in error.value.message and "evidence for bio" in error.value.hint
    assert "release.refused" in actions(board)
    assert board.services.release.proposals(SYSTEM) == []


def test_evidence_changed_after_the_proposal_makes_it_stale(board: Board) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    pid = release.propose(board.director, board.version.reference, Tier.HOSTED, "hosted")["id"]
    release.vote(board.caller("ada"), pid, True, "ok")
    board.import_knowledge({"bio": 0.9})
    with pytest.raises(Conflict, match="stale: the risk profile changed"):
        release.vote(board.caller("ben"), pid, True, "ok")
    assert release.proposal(SYSTEM, pid)["status"] == "stale"
    assert release.tier_of("small", "1.0") is None


def test_only_directors_propose_and_bad_input_changes_nothing(board: Board) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    with pytest.raises(Forbidden, match="programme_director"):
        release.propose(board.caller("ada"), board.version.reference, Tier.HOSTED, "x")
    with pytest.raises(InvalidInput, match="rationale is empty"):
        release.propose(board.director, board.version.reference, Tier.HOSTED, "  ")
    with pytest.raises(NotFound):
        release.propose(board.director, "small:9.9", Tier.HOSTED, "x")
    with pytest.raises(InvalidInput, match="secured needs the weights stored at SL4 or above"):
        release.propose(board.director, board.version.reference, Tier.SECURED, "lock it away")
    pid = release.propose(board.director, board.version.reference, Tier.HOSTED, "x")["id"]
    with pytest.raises(Conflict, match="already has a proposal voting"):
        release.propose(board.director, board.version.reference, Tier.OPEN, "y")
    with pytest.raises(InvalidInput, match="reason is empty"):
        release.vote(board.caller("ada"), pid, True, "")
    with pytest.raises(Forbidden, match="not a member of the release board"):
        release.vote(board.director, pid, True, "mine")
    assert release.proposal(SYSTEM, pid)["votes"] == []


def test_stages_come_due_need_fresh_evidence_and_go_overdue(board: Board, clock: SteppingClock) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    stage = parse_stage("open@180:six months without serious incident")
    pid = release.propose(board.director, board.version.reference, Tier.HOSTED, "hosted first", stages=[stage])["id"]
    for name in ("ada", "ben"):
        release.vote(board.caller(name), pid, True, "ok")
    [planned] = release.timeline(SYSTEM, board.version.reference)["stages"]
    assert planned["state"] == "planned" and planned["tier"] == "open"
    with pytest.raises(Conflict, match="not due until"):
        release.propose(board.director, board.version.reference, Tier.OPEN, "early", stage_id=planned["id"])
    clock.advance(timedelta(days=181))
    assert [d["kind"] for d in release.due(SYSTEM)] == ["stage due"]
    with pytest.raises(Conflict, match="fresh assessment"):
        release.propose(board.director, board.version.reference, Tier.OPEN, "stage 2", stage_id=planned["id"])
    clock.advance(timedelta(days=40))
    assert release.timeline(SYSTEM, board.version.reference)["stages"][0]["state"] == "overdue"
    board.import_knowledge(AT_CHANCE)
    assert any(d["kind"] == "re-assessment" for d in release.due(SYSTEM))
    proposal = release.propose(board.director, board.version.reference, Tier.OPEN, "stage 2", stage_id=planned["id"])
    assert release.timeline(SYSTEM, board.version.reference)["stages"][0]["state"] == "proposed"
    assert proposal["status"] == "voting"
    with pytest.raises(InvalidInput, match="no date"):
        parse_stage("open")


def test_policy_change_and_incidents_trigger_reassessment(board: Board) -> None:
    release = board.services.release
    board.import_knowledge(AT_CHANCE)
    pid = release.propose(board.director, board.version.reference, Tier.HOSTED, "hosted")["id"]
    for name in ("ada", "ben"):
        release.vote(board.caller(name), pid, True, "ok")
    assert release.timeline(SYSTEM, board.version.reference)["reassessment"] == []
    text = release.shipped_policy_text()
    with pytest.raises(Conflict, match="already in force"):
        release.adopt_policy(SYSTEM, text, "again")
    with pytest.raises(InvalidInput, match="unknown rule type"):
        release.adopt_policy(SYSTEM, text.replace("type: legal_flag", "type: legal_flags"), "typo")
    with pytest.raises(Forbidden):
        release.adopt_policy(board.caller("ada"), text.replace("version: 1\n", "version: 2\n", 1), "mine")
    release.adopt_policy(
        SYSTEM,
        text.replace("version: 1\n", "version: 2\n", 1).replace("at_least: 0.80", "at_least: 0.85"),
        "stricter refusal",
    )
    release.trigger(board.caller("rita"), board.version.reference, "jailbreak reported through the gateway")
    reasons = release.timeline(SYSTEM, board.version.reference)["reassessment"]
    assert any("policy changed" in r for r in reasons) and any("incident: jailbreak" in r for r in reasons)
    assert [p["version"] for p in release.policies()] == ["2", "1"]
