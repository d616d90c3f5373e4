"""The RAID desk's pure rules: the record, the lifecycle, the serious-incident tests, the clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.access.domain import Action
from aperture.core.errors import Conflict, InvalidInput, TooLarge
from aperture.raid import clocks
from aperture.raid.checks import check_receipt, check_text, receipt_hash
from aperture.raid.clocks import ClockName, Party
from aperture.raid.domain import (
    MOVE_ACTIONS,
    TRANSITIONS,
    Assessment,
    Binding,
    BindingKind,
    Detection,
    Facts,
    IntakeItem,
    Move,
    Reporter,
    Source,
    SourceKind,
    Status,
    check_intake,
    new_incident,
    transition,
)
from aperture.raid.serious import CausalLink, Harm, Limb, Regime, SeriousnessFacts, assess_seriousness
from aperture.raid.taxonomy import AVID, Severity, check_avid, check_member_state, parse_severity
from aperture.raid.tlp import Audience, Tlp

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def item(**changes: object) -> IntakeItem:
    base: dict[str, object] = {
        "source": Source(SourceKind.PUBLIC),
        "title": "Refusal bypass",
        "summary": "The model answers after a role-play prompt.",
        "tlp": Tlp.AMBER_STRICT,
        "aware_at": NOW,
        "detection": Detection.USER_REPORTING,
    }
    base.update(changes)
    return IntakeItem(**base)  # type: ignore[arg-type]


def incident(status: Status = Status.NEW, severity: Severity | None = Severity.INCIDENT):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    found = new_incident(item(), id="0192f1c2-0000-7000-8000-000000000001", now=NOW)
    if severity is not None:
        found = replace(found, assessment=Assessment(severity=severity, at=NOW))
    return replace(found, status=status)


# --- the record -------------------------------------------------------------------------------


def test_html_and_script_stay_text_and_control_characters_are_refused() -> None:
    title = '<script>alert("x")</script> <img src=x onerror=alert(1)>'
    assert new_incident(item(title=title), id="a", now=NOW).title == title
    with pytest.raises(InvalidInput, match="control characters"):
        check_text("bell\x07", "title", 200)
    with pytest.raises(InvalidInput, match="empty"):
        check_text("   ", "title", 200)


def test_oversized_fields_are_refused_with_their_limit() -> None:
    with pytest.raises(TooLarge, match="at most 200"):
        check_intake(item(title="x" * 201))
    with pytest.raises(TooLarge, match="at most 20000"):
        check_intake(item(summary="x" * 20_001))
    with pytest.raises(TooLarge, match="bindings"):
        check_intake(item(bindings=tuple(Binding(BindingKind.ORGANISATION, f"org{i}") for i in range(51))))


def test_automatic_items_need_their_source_id_and_red_needs_recipients() -> None:
    with pytest.raises(InvalidInput, match="source id"):
        check_intake(item(source=Source(SourceKind.GATEWAY_ALERT)))
    with pytest.raises(InvalidInput, match="names its recipients"):
        check_intake(item(tlp=Tlp.RED))
    with pytest.raises(InvalidInput, match="names its recipients"):  # the reporter alone is not a recipient
        check_intake(item(tlp=Tlp.RED, reporter=Reporter("pia", "northlab")))
    checked = check_intake(
        item(tlp=Tlp.RED, reporter=Reporter("pia", "northlab"), audience=Audience(frozenset({"ana"})))
    )
    assert checked.audience.principals == {"ana", "pia"} and checked.audience.organisations == frozenset()


def test_a_partner_organisation_shares_what_it_reported_below_red() -> None:
    checked = check_intake(item(reporter=Reporter("pia", "northlab")))
    assert checked.audience == Audience(frozenset({"pia"}), frozenset({"northlab"}))


def test_receipts_are_kept_only_as_hashes_and_checked_for_shape() -> None:
    receipt = "rct_" + "A" * 43
    assert check_receipt(receipt) == receipt and len(receipt_hash(receipt)) == 32
    with pytest.raises(InvalidInput, match="receipt"):
        check_receipt("rct_short")


def test_facts_are_the_recipients_fields_and_nothing_else() -> None:
    facts = Facts().with_values({"harm": "data of 20 people exposed", "root_cause": ""})
    assert facts.get("harm") == "data of 20 people exposed" and facts.get("root_cause") is None
    with pytest.raises(InvalidInput, match="unknown fact field"):
        facts.with_values({"colour": "red"})


def test_taxonomy_parsers() -> None:
    assert check_avid(["avid-effect:security:S0403", "E0301", "S0403"]) == ("S0403", "E0301")
    assert len(AVID) == 48
    with pytest.raises(InvalidInput, match="AVID"):
        check_avid(["X0001"])
    assert check_member_state("el") == "GR" and check_member_state("fr") == "FR"
    with pytest.raises(InvalidInput, match="member state"):
        check_member_state("NO")
    assert parse_severity("Serious incident") is Severity.SERIOUS_INCIDENT
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4, 5]


# --- the lifecycle ----------------------------------------------------------------------------


def test_the_lifecycle_walks_new_to_closed_and_back() -> None:
    found = incident()
    for move, status in (
        (Move.TRIAGE, Status.TRIAGED),
        (Move.INVESTIGATE, Status.INVESTIGATING),
        (Move.MITIGATE, Status.MITIGATING),
        (Move.RESOLVE, Status.RESOLVED),
        (Move.CLOSE, Status.CLOSED),
    ):
        found = transition(found, move, NOW)
        assert found.status is status
    assert found.resolved_at == NOW and found.closed_at == NOW
    reopened = transition(found, Move.REOPEN, NOW, reason="the leak continues")
    assert reopened.status is Status.INVESTIGATING and reopened.resolved_at is None and reopened.closed_at is None


def test_a_move_outside_the_table_is_refused_and_says_what_is_allowed() -> None:
    with pytest.raises(Conflict) as caught:
        transition(incident(Status.NEW), Move.RESOLVE, NOW)
    assert "cannot resolve" in caught.value.message and "triage" in caught.value.hint


def test_triage_needs_a_severity_and_declines_need_reasons_and_merges_a_target() -> None:
    with pytest.raises(Conflict, match="not assessed"):
        transition(incident(severity=None), Move.TRIAGE, NOW)
    with pytest.raises(Conflict, match="not assessed"):
        transition(incident(severity=Severity.UNDETERMINED), Move.TRIAGE, NOW)
    with pytest.raises(InvalidInput, match="reason"):
        transition(incident(), Move.DECLINE, NOW)
    with pytest.raises(InvalidInput, match="name the incident"):
        transition(incident(), Move.MERGE, NOW, reason="same actor")
    with pytest.raises(InvalidInput, match="into itself"):
        transition(incident(), Move.DUPLICATE, NOW, reason="same", target="0192f1c2-0000-7000-8000-000000000001")
    merged = transition(incident(), Move.MERGE, NOW, reason="same actor", target="0192f1c2-0000-7000-8000-000000000002")
    assert merged.status is Status.MERGED and merged.merged_into.endswith("0002")  # type: ignore[union-attr]


def test_every_move_names_the_action_that_decides_who_may_make_it() -> None:
    assert set(MOVE_ACTIONS) == set(Move)
    assert all(action.value.startswith("raid_") for action in MOVE_ACTIONS.values())
    assert MOVE_ACTIONS[Move.CLOSE] is Action.RAID_CLOSE and MOVE_ACTIONS[Move.TRIAGE] is Action.RAID_TRIAGE
    ends = {Status.CLOSED, Status.DECLINED, Status.MERGED, Status.DUPLICATE, Status.RESOLVED}
    assert all((end, Move.REOPEN) in TRANSITIONS for end in ends)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(Move)), max_size=25))
def test_any_sequence_of_moves_stays_inside_the_table(moves: list[Move]) -> None:
    found = incident()
    for move in moves:
        before = found
        try:
            found = transition(found, move, NOW, reason="because", target="0192f1c2-0000-7000-8000-00000000000f")
        except Conflict:
            assert (before.status, move) not in TRANSITIONS
            assert found == before  # refused: nothing changed
            continue
        assert TRANSITIONS[(before.status, move)] is found.status


# --- serious incidents ------------------------------------------------------------------------


def test_a_death_by_a_high_risk_system_with_a_suspected_link_is_reportable_under_article_73() -> None:
    result = assess_seriousness(
        SeriousnessFacts(frozenset({Harm.DEATH}), CausalLink.SUSPECTED, frozenset({Regime.HIGH_RISK_SYSTEM}))
    )
    assert result.serious and result.reportable and result.ai_act.applies
    assert Limb.AIA_DEATH in result.ai_act.limbs
    assert any("3(49)(a)" in r for r in result.reasons) and any("73(4)" in r for r in result.reasons)
    assert not result.code_of_practice.applies


def test_serious_harm_needs_an_established_or_likely_link_except_for_a_death() -> None:
    facts = SeriousnessFacts(
        frozenset({Harm.SERIOUS_HEALTH_HARM}), CausalLink.SUSPECTED, frozenset({Regime.HIGH_RISK_SYSTEM})
    )
    result = assess_seriousness(facts)
    assert result.serious and not result.reportable
    assert "causal link is suspected" in result.ai_act.reasons[0]


def test_the_code_of_practice_limbs_and_the_cyber_breach() -> None:
    facts = SeriousnessFacts(
        frozenset({Harm.CYBER_BREACH, Harm.PROPERTY_OR_ENVIRONMENT}),
        CausalLink.REASONABLY_LIKELY,
        frozenset({Regime.GPAI_SYSTEMIC_RISK}),
    )
    result = assess_seriousness(facts)
    assert result.code_of_practice.applies and set(result.code_of_practice.limbs) == {
        Limb.COP_CYBER_BREACH,
        Limb.COP_OTHER_SERIOUS_HARM,
    }
    assert not result.ai_act.applies and "no high-risk AI system" in result.ai_act.reasons[0]


def test_no_harm_is_no_serious_incident_and_says_why() -> None:
    result = assess_seriousness(SeriousnessFacts(frozenset(), CausalLink.ESTABLISHED, frozenset(Regime)))
    assert not result.serious and not result.reportable
    assert "none of the harms" in result.definition.reasons[0]


# --- clocks -----------------------------------------------------------------------------------


def serious(harms: set[Harm], regimes: set[Regime]):  # type: ignore[no-untyped-def]
    return assess_seriousness(SeriousnessFacts(frozenset(harms), CausalLink.ESTABLISHED, frozenset(regimes)))


def test_no_clock_without_aware_at() -> None:
    with pytest.raises(InvalidInput, match="aware_at"):
        clocks.compute([ClockName.NIS2], serious({Harm.DEATH}, set()), None, recipient="CSIRT")
    with pytest.raises(InvalidInput, match="aware_at"):
        clocks.raid_forwarding(None, 24, "ENISA")


def test_article_73_takes_the_shortest_limb() -> None:
    (general,) = clocks.ai_act_73(serious({Harm.FUNDAMENTAL_RIGHTS}, {Regime.HIGH_RISK_SYSTEM}), NOW)
    assert general.due_at == NOW + timedelta(days=15) and "73(2)" in general.legal_basis
    (death,) = clocks.ai_act_73(serious({Harm.DEATH}, {Regime.HIGH_RISK_SYSTEM}), NOW)
    assert death.due_at == NOW + timedelta(days=10)
    (infra,) = clocks.ai_act_73(serious({Harm.DEATH, Harm.CRITICAL_INFRASTRUCTURE}, {Regime.HIGH_RISK_SYSTEM}), NOW)
    assert infra.due_at == NOW + timedelta(days=2) and "73(3)" in infra.legal_basis
    assert clocks.ai_act_73(serious({Harm.DEATH}, set()), NOW) == []


@pytest.mark.parametrize(
    ("harm", "days"),
    [
        (Harm.CRITICAL_INFRASTRUCTURE, 2),
        (Harm.CYBER_BREACH, 5),
        (Harm.DEATH, 10),
        (Harm.SERIOUS_HEALTH_HARM, 15),
        (Harm.FUNDAMENTAL_RIGHTS, 15),
        (Harm.PROPERTY_OR_ENVIRONMENT, 15),
    ],
)
def test_code_of_practice_initial_reports(harm: Harm, days: int) -> None:
    initial, intermediate = clocks.cop_9_3(serious({harm}, {Regime.GPAI_SYSTEMIC_RISK}), NOW)
    assert initial.kind == "initial-report" and initial.due_at == NOW + timedelta(days=days)
    assert intermediate.kind == "intermediate-report" and intermediate.due_at == initial.due_at + timedelta(weeks=4)
    assert initial.party is Party.REPORTER


def test_code_of_practice_intermediate_every_four_weeks_and_final_sixty_days_after_resolution() -> None:
    facts = serious({Harm.DEATH}, {Regime.GPAI_SYSTEMIC_RISK})
    reported = NOW + timedelta(days=9)
    _, following = clocks.cop_9_3(facts, NOW, last_report_at=reported)
    assert following.due_at == reported + timedelta(days=28) and following.counts_from == "last report"
    resolved = NOW + timedelta(days=40)
    _, final = clocks.cop_9_3(facts, NOW, resolved_at=resolved)
    assert final.kind == "final-report" and final.due_at == resolved + timedelta(days=60)


def test_nis2_early_warning_notification_and_final_report() -> None:
    warning, notification, final = clocks.nis2(NOW)
    assert warning.due_at == NOW + timedelta(hours=24) and notification.due_at == NOW + timedelta(hours=72)
    assert final.due_at == datetime(2026, 12, 27, 9, 0, tzinfo=UTC)  # one month after the 72-hour deadline
    notified = datetime(2027, 1, 31, 12, 0, tzinfo=UTC)
    assert clocks.nis2(NOW, notified_at=notified)[2].due_at == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)


def test_the_cra_applies_from_its_date_only() -> None:
    assert clocks.cra(datetime(2026, 9, 10, tzinfo=UTC)) == []
    warning, notification = clocks.cra(NOW)
    assert warning.due_at == NOW + timedelta(hours=24) and notification.due_at == NOW + timedelta(hours=72)


def test_add_months_keeps_the_end_of_month() -> None:
    assert clocks.add_months(datetime(2027, 1, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert clocks.add_months(datetime(2028, 1, 31, tzinfo=UTC), 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert clocks.add_months(datetime(2026, 12, 15, tzinfo=UTC), 1) == datetime(2027, 1, 15, tzinfo=UTC)


def test_compute_names_the_recipient_and_skips_regimes_that_do_not_apply() -> None:
    found = clocks.compute(
        [ClockName.AI_ACT_73, ClockName.COP_9_3],
        serious({Harm.DEATH}, {Regime.GPAI_SYSTEMIC_RISK}),
        NOW,
        recipient="AI Office",
    )
    assert [o.key for o in found] == ["cop-9.3/initial-report", "cop-9.3/intermediate-report"]
    assert {o.recipient for o in found} == {"AI Office"}
