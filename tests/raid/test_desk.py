"""Triage, the lifecycle by role, routing with legal clocks, forwarding, reminders, the table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aperture.access.domain import SYSTEM
from aperture.core.errors import Conflict, Forbidden, InvalidInput
from aperture.raid.clocks import Party
from aperture.raid.domain import Consent, Move, Status
from aperture.raid.drafts import Form
from aperture.raid.messages import MessageKind
from aperture.raid.serious import CausalLink, Harm, Regime
from aperture.raid.service import Submission, shipped_table_text
from aperture.raid.taxonomy import Sector, Severity
from aperture.raid.tlp import Tlp
from aperture.risk.domain import RiskDomain
from tests.raid.world import World


def serious_cyber(world: World, incident_id: str, *, institution: bool = True) -> None:
    world.services.raid.desk.assess(
        world.caller("ana"),
        incident_id,
        severity=Severity.SERIOUS_INCIDENT,
        risk_domain=RiskDomain.CYBER_OFFENCE,
        sector=Sector.DIGITAL_INFRASTRUCTURE,
        member_state="FR",
        dual_use=True,
        avid=["S0502"],
        harms=[Harm.CYBER_BREACH],
        causal_link=CausalLink.ESTABLISHED,
        regimes=[Regime.GPAI_SYSTEMIC_RISK, Regime.NIS2_ENTITY],
        provider_is_institution=institution,
    )


def test_the_lifecycle_by_role(world: World) -> None:
    raid = world.services.raid
    ana, carl, dora = world.caller("ana"), world.caller("carl"), world.caller("dora")
    (item,) = world.take(world.alert())
    with pytest.raises(Conflict, match="not assessed"):
        raid.desk.move(ana, item, Move.TRIAGE)
    raid.desk.assess(ana, item, severity=Severity.INCIDENT, risk_domain=RiskDomain.BIO)
    with pytest.raises(Forbidden):
        raid.desk.move(carl, item, Move.TRIAGE)  # a member delegate does not triage
    for move in (Move.TRIAGE, Move.INVESTIGATE, Move.RESOLVE):
        raid.desk.move(ana, item, move)
    with pytest.raises(Forbidden):
        raid.desk.move(world.caller("sol"), item, Move.CLOSE)
    closed = raid.desk.move(dora, item, Move.CLOSE)  # the chief scientist may close
    assert closed.status is Status.CLOSED and closed.resolved_at is not None
    with pytest.raises(Conflict, match="cannot resolve"):
        raid.desk.move(ana, item, Move.RESOLVE)
    assert raid.desk.get(ana, item).status is Status.CLOSED  # the refused move changed nothing
    reopened = raid.desk.move(ana, item, Move.REOPEN, reason="new evidence")
    assert reopened.status is Status.INVESTIGATING and reopened.reason == "new evidence"
    kinds = [e.kind for e in raid.desk.timeline(ana, item)]
    assert kinds[:2] == ["received", "assessed"] and kinds.count("moved") == 5
    moved = [e for e in world.services.audit.list_events(limit=500) if e.action == "raid.incident.moved"]
    assert [e.details["to"] for e in reversed(moved)] == [
        "triaged",
        "investigating",
        "resolved",
        "closed",
        "investigating",
    ]


def test_the_assessment_runs_the_serious_incident_tests(world: World) -> None:
    raid = world.services.raid
    (item,) = world.take(world.alert())
    serious_cyber(world, item)
    found = raid.desk.get(world.caller("ana"), item)
    assert found.severity is Severity.SERIOUS_INCIDENT and found.assessment.avid == ("S0502",)  # type: ignore[union-attr]
    (assessed,) = [e for e in raid.desk.timeline(world.caller("ana"), item) if e.kind == "assessed"]
    assert assessed.details["serious"] and assessed.details["reportable"]
    assert any("CoP Measure 9.3" in reason for reason in assessed.details["reasons"])  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="AVID"):
        raid.desk.assess(world.caller("ana"), item, severity=Severity.HAZARD, avid=["Z9"])
    with pytest.raises(InvalidInput, match="member state"):
        raid.desk.assess(world.caller("ana"), item, severity=Severity.HAZARD, member_state="US")


def test_merging_and_assigning(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    first, second = world.take(world.alert(), world.alert())
    merged = raid.desk.move(ana, second, Move.MERGE, reason="same key", into=first)
    assert merged.status is Status.MERGED and merged.merged_into == first
    assert raid.desk.assign(ana, first, "ben").assignee == "ben"
    with pytest.raises(InvalidInput, match="not a RAID analyst"):
        raid.desk.assign(ana, first, "carl")
    (sealed,) = world.take(world.alert(versions=[world.sealed.id]))
    with pytest.raises(Conflict, match="may not see this item"):
        raid.desk.assign(ana, sealed, "ben")  # ben is not cleared for the SL4 version
    (red,) = world.take(world.alert(tlp=Tlp.RED, named=["ana"]))
    with pytest.raises(Conflict, match="already named"):
        raid.desk.assign(ana, red, "ben")
    raid.sharing.share(ana, red, add_principals=["ben"])
    assert raid.desk.assign(ana, red, "ben").assignee == "ben"
    assert [i.id for i in raid.desk.mine(world.caller("ben"))] == [red, first]


def test_no_clock_without_aware_at_and_no_route_without_an_assessment(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    receipt = raid.intake.record(ana, Submission(title="t", description="d"))
    with pytest.raises(Conflict, match="not assessed"):
        raid.routing.route(ana, receipt.incident_id)


def test_routing_computes_every_clock_from_aware_at(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    (item,) = world.take(world.alert(versions=[world.sealed.id]))
    aware = world.clock.now() - timedelta(hours=30)
    raid.desk.set_aware(ana, item, aware)
    serious_cyber(world, item)
    routes = {r.match.rule_id: r for r in raid.routing.route(ana, item)}
    assert set(routes) == {"ai-office-gpai", "enisa-cyber", "nis2-csirt"}
    assert routes["ai-office-gpai"].required_by_law and routes["nis2-csirt"].required_by_law
    assert not routes["enisa-cyber"].required_by_law
    due = {(o.obligation.clock.value, o.obligation.kind): o for o in raid.routing.obligations(ana, item)}
    assert due[("cop-9.3", "initial-report")].obligation.due_at == aware + timedelta(days=5)
    assert due[("nis2", "early-warning")].obligation.due_at == aware + timedelta(hours=24)
    assert due[("raid-forwarding", "forward")].obligation.due_at == aware + timedelta(hours=24)
    assert due[("raid-forwarding", "forward")].obligation.party is Party.RAID
    dashboard = raid.routing.due(ana, within=timedelta(days=2))
    overdue = [d for d in dashboard if d.overdue]
    assert {d.obligation.obligation.kind for d in overdue} == {"early-warning", "forward"}
    assert all(d.obligation.obligation.due_at <= world.clock.now() + timedelta(days=2) for d in dashboard)
    assert raid.routing.due(world.caller("ben")) == []  # not cleared for the version: nothing shows
    with pytest.raises(Forbidden):
        raid.routing.due(world.caller("carl"))
    # awareness corrected: every open clock follows
    raid.desk.set_aware(ana, item, aware + timedelta(hours=10))
    moved = {(o.obligation.clock.value, o.obligation.kind): o for o in raid.routing.obligations(ana, item)}
    assert moved[("cop-9.3", "initial-report")].obligation.due_at == aware + timedelta(hours=10, days=5)


def test_meeting_reports_moves_the_intermediate_clock_and_resolution_brings_the_final_report(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    (item,) = world.take(world.alert())
    serious_cyber(world, item)
    raid.routing.route(ana, item)
    initial = next(o for o in raid.routing.obligations(ana, item) if o.obligation.key == "cop-9.3/initial-report")
    world.clock.advance(timedelta(days=3))
    met = raid.routing.meet(ana, initial.id)
    assert met.met_at is not None
    with pytest.raises(Conflict, match="already met"):
        raid.routing.meet(ana, initial.id)
    following = next(o for o in raid.routing.obligations(ana, item) if o.obligation.kind == "intermediate-report")
    assert following.obligation.due_at == met.met_at + timedelta(weeks=4)
    for move in (Move.TRIAGE, Move.INVESTIGATE, Move.RESOLVE):
        raid.desk.move(ana, item, move)
    resolved = raid.desk.get(ana, item).resolved_at
    open_ones = [o for o in raid.routing.obligations(ana, item) if o.met_at is None]
    final = next(o for o in open_ones if o.obligation.key == "cop-9.3/final-report")
    assert final.obligation.due_at == resolved + timedelta(days=60)  # type: ignore[operator]
    assert not any(o.obligation.kind == "intermediate-report" for o in open_ones)


def test_drafts_and_forwarding_follow_the_law_consent_and_policy(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    receipt = raid.intake.report(
        world.caller("pia"),
        Submission(title="Weights on a forum", description="d", tlp=Tlp.GREEN, contact="pia@northlab.example"),
    )
    item = receipt.incident_id
    serious_cyber(world, item, institution=False)  # someone else's model: not the institution's legal duty
    raid.desk.record_facts(ana, item, {"chain_of_events": "posted on a forum", "involvement": "hash match"})
    draft = raid.routing.draft(ana, item, Form.COP_INITIAL)
    assert draft.fields[2].value == "posted on a forum" and "4" in draft.missing
    routes = {r.match.rule_id: r for r in raid.routing.route(ana, item)}
    with pytest.raises(Conflict, match="consented to the legal minimum"):
        raid.routing.forward(ana, routes["enisa-cyber"].id)
    consented = raid.intake.report(
        world.caller("pia"),
        Submission(title="Same, with consent", description="d", consent=Consent.ANONYMISED, contact="pia@x.example"),
    )
    serious_cyber(world, consented.incident_id, institution=False)
    chosen = {r.match.rule_id: r for r in raid.routing.route(ana, consented.incident_id)}["enisa-cyber"]
    with pytest.raises(Conflict, match="no contact address"):
        raid.routing.forward(ana, chosen.id)
    raid.routing.save_contact(ana, "ENISA", "incidents@enisa.example")
    forwarded = raid.routing.forward(ana, chosen.id)
    assert forwarded.forwarded_at is not None
    (message,) = raid.outbox.messages(SYSTEM)
    assert message.kind is MessageKind.FORWARD and message.recipient == "incidents@enisa.example"
    assert message.subject.startswith("[TLP:AMBER+STRICT]") and message.body.startswith("TLP:AMBER+STRICT\n")
    assert "pia" not in message.body  # anonymised: the reporter's identity stays with RAID
    with pytest.raises(Conflict, match="forwarded already"):
        raid.routing.forward(ana, chosen.id)
    forward = next(o for o in raid.routing.obligations(ana, consented.incident_id) if o.route_id == chosen.id)
    assert forward.met_at is not None


def test_the_law_forwards_without_the_reporters_identity_unless_they_consent(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    receipt = raid.intake.report(
        world.caller("pia"), Submission(title="t", description="d", consent=Consent.FULL, contact="pia@x.example")
    )
    serious_cyber(world, receipt.incident_id)
    raid.routing.save_contact(ana, "AI Office (European Commission)", "ai-office@ec.example")
    route = {r.match.rule_id: r for r in raid.routing.route(ana, receipt.incident_id)}["ai-office-gpai"]
    raid.routing.forward(ana, route.id)
    (message,) = raid.outbox.messages(SYSTEM)
    assert "Reported by pia (pia@x.example)" in message.body
    (event,) = [e for e in world.services.audit.list_events(limit=500) if e.action == "raid.incident.forwarded"]
    assert event.details["required_by_law"] and event.details["with_identity"]
    assert "pia@x.example" not in repr(world.services.audit.list_events(limit=500))


def test_reporters_are_reminded_once_before_their_own_deadlines(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    receipt = raid.intake.report(
        world.caller("pia"), Submission(title="t", description="d", contact="pia@northlab.example")
    )
    serious_cyber(world, receipt.incident_id)
    raid.routing.route(ana, receipt.incident_id)
    assert raid.routing.remind(ana) == 1  # the NIS2 early warning (24 hours) is inside the 24-hour window
    assert raid.routing.remind(ana) == 0  # once only
    world.clock.advance(timedelta(days=4, hours=1))
    assert raid.routing.remind(ana) == 2  # the NIS2 notification (72 h) and the CoP initial report (5 days)
    messages = [m for m in raid.outbox.messages(SYSTEM) if m.kind is MessageKind.REMINDER]
    assert len(messages) == 3 and {m.recipient for m in messages} == {"pia@northlab.example"}
    assert any("Measure 9.3" in m.body for m in messages) and any("NIS2 Art. 23(4)(a)" in m.body for m in messages)


def test_the_routing_table_is_versioned_and_validated_before_it_is_adopted(world: World) -> None:
    raid = world.services.raid
    ana = world.caller("ana")
    assert raid.routing.table().version == 1
    with pytest.raises(Conflict, match="this one is 1"):
        raid.routing.adopt(ana, shipped_table_text())
    with pytest.raises(InvalidInput, match="unknown clock"):
        raid.routing.adopt(ana, shipped_table_text().replace("version: 1", "version: 2").replace("[nis2]", "[nis9]"))
    changed = shipped_table_text().replace("version: 1", "version: 2").replace("  incident: 72\n", "  incident: 48\n")
    with pytest.raises(Forbidden):
        raid.routing.adopt(world.caller("carl"), changed)
    assert raid.routing.adopt(ana, changed).version == 2
    assert raid.routing.table().forwarding_sla_hours[Severity.INCIDENT] == 48
    (event,) = [e for e in world.services.audit.list_events(limit=500) if e.action == "raid.routing.adopted"]
    assert event.details["version"] == 2
    assert raid.routing.sharing_policy()["policy"] == "consent"
