"""Pure licensing rules: the transition table, instalments, amounts, checklists."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from aperture.core.errors import Conflict, InvalidInput
from aperture.licensing.domain import (
    TRANSITIONS,
    Funding,
    Licence,
    LicenceEvent,
    LicenceState,
    Schedule,
    Terms,
    add_months,
    format_amount,
    instalments,
    parse_amount,
    parse_checklist,
    transition,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def terms(schedule: Schedule, months: int = 12, amount: int = 400_00) -> Terms:
    start = date(2026, 1, 31)
    return Terms(
        "v",
        "m:1",
        "acme",
        ("r",),
        ("FR",),
        start,
        add_months(start, months),
        Funding(amount, "EUR", schedule),
        3,
        False,
    )


def test_every_pair_outside_the_table_is_refused() -> None:
    licence = Licence("l", None, terms(Schedule.ONCE), LicenceState.DRAFT, NOW, NOW)
    for state in LicenceState:
        for event in LicenceEvent:
            current = Licence("l", None, licence.terms, state, NOW, NOW)
            if (state, event) in TRANSITIONS:
                assert transition(current, event, NOW, "why").state is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(Conflict):
                    transition(current, event, NOW, "why")
    for final in (LicenceState.EXPIRED, LicenceState.REVOKED):
        assert not any(state is final for state, _ in TRANSITIONS)


def test_activation_after_the_term_is_refused() -> None:
    licence = Licence("l", None, terms(Schedule.ONCE, months=1), LicenceState.DRAFT, NOW, NOW)
    with pytest.raises(Conflict, match="already ended"):
        transition(licence, LicenceEvent.ACTIVATE, datetime(2027, 1, 1, tzinfo=UTC))


def test_instalments_follow_the_schedule() -> None:
    assert instalments(terms(Schedule.ONCE)) == [(date(2026, 1, 31), 400_00)]
    assert [a for _, a in instalments(terms(Schedule.QUARTERLY))] == [100_00] * 4
    assert [d for d, _ in instalments(terms(Schedule.QUARTERLY))][1] == date(2026, 4, 30)
    assert [a for _, a in instalments(terms(Schedule.ANNUAL, months=30))] == [400_00, 400_00, 200_00]
    assert instalments(terms(Schedule.ANNUAL, amount=0)) == []


def test_amounts_and_checklists() -> None:
    assert parse_amount("250000.5") == 25_000_050 and parse_amount("7") == 700
    assert format_amount(25_000_050, "EUR") == "250,000.50 EUR"
    for bad in ("-1", "1.234", "1,000", "ten"):
        with pytest.raises(InvalidInput):
            parse_amount(bad)
    assert parse_checklist([{"id": "a", "text": "A?"}])[0].id == "a"
    for bad in ([], [{"id": "a"}], [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], {"id": "a"}):
        with pytest.raises(InvalidInput):
            parse_checklist(bad)
