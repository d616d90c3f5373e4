"""The grant rules as pure functions: two distinct people, the security officer for bulk export
above SL3, expiry from approval, revocation, tokens, and the download-surge rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aperture.access.domain import Action, AssetKind, AssetRef, SecurityLevel
from aperture.core.errors import Conflict, Forbidden, InvalidInput
from aperture.security.domain import (
    Grant,
    GrantStatus,
    approve,
    check_token,
    download_surge,
    needs_security_officer,
    new_grant,
    revoke,
    token_hash,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ASSET = AssetRef(AssetKind.MODEL_VERSION, "0190a3c2-aaaa-7bbb-8ccc-000000000001")


def _grant(
    action: Action = Action.DOWNLOAD, level: SecurityLevel = SecurityLevel.SL4, hours: float = 2, **changes: Any
) -> Grant:
    fields: dict[str, Any] = {
        "id": "g1",
        "asset": ASSET,
        "action": action,
        "requester": "alice",
        "reason": "  evaluation  ",
        "hub": None,
        "hours": hours,
        "max_hours": 72,
        "level": level,
        "now": NOW,
    }
    fields.update(changes)
    return new_grant(**fields)


def test_a_request_is_pending_with_no_expiry_until_approved() -> None:
    grant = _grant()
    assert grant.status is GrantStatus.PENDING and grant.expires_at is None
    assert grant.reason == "evaluation"
    assert grant.state(NOW + timedelta(days=30)) == "pending" and not grant.usable(NOW)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"action": Action.VIEW}, "grants are for weight access"),
        ({"level": SecurityLevel.SL2}, "lower-tier weights need no grant"),
        ({"reason": "   "}, "needs a reason"),
        ({"hours": 0}, "at most 72 hours"),
        ({"hours": -1}, "at most 72 hours"),
        ({"hours": 72.5}, "at most 72 hours"),
        ({"action": Action.COPY_TO_HUB}, "names the hub"),
        ({"action": Action.COPY_TO_HUB, "hub": "  "}, "names the hub"),
    ],
)
def test_bad_requests_are_refused_with_the_problem_named(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as refused:
        _grant(**changes)
    assert refused.value.hint


def test_a_second_person_approves_and_the_clock_starts_then() -> None:
    grant = _grant(hours=2)
    later = NOW + timedelta(hours=5)
    approved = approve(grant, "bob", is_officer=False, level=SecurityLevel.SL4, now=later)
    assert approved.status is GrantStatus.APPROVED and approved.approver == "bob"
    assert approved.expires_at == later + timedelta(hours=2)
    assert approved.usable(later + timedelta(hours=1, minutes=59))
    assert approved.state(later + timedelta(hours=2)) == "expired" and not approved.usable(later + timedelta(hours=2))


def test_nobody_approves_their_own_request_even_as_security_officer() -> None:
    grant = _grant(Action.EXPORT)
    for officer in (False, True):
        with pytest.raises(Forbidden, match="own request"):
            approve(grant, "alice", is_officer=officer, level=SecurityLevel.SL4, now=NOW)


def test_bulk_export_above_sl3_needs_an_officer_distinct_from_requester_and_approver() -> None:
    assert needs_security_officer(Action.EXPORT, SecurityLevel.SL4)
    assert not needs_security_officer(Action.EXPORT, SecurityLevel.SL3)
    assert not needs_security_officer(Action.DOWNLOAD, SecurityLevel.SL5)
    grant = _grant(Action.EXPORT)
    first = approve(grant, "bob", is_officer=False, level=SecurityLevel.SL4, now=NOW)
    assert first.status is GrantStatus.PENDING and first.approver == "bob" and first.expires_at is None
    with pytest.raises(Conflict, match="already approved"):
        approve(first, "bob", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    with pytest.raises(Forbidden, match="still needs a security officer"):
        approve(first, "nora", is_officer=False, level=SecurityLevel.SL4, now=NOW)
    done = approve(first, "sam", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    assert done.status is GrantStatus.APPROVED and done.officer == "sam"
    # The officer may come first; a second officer then counts as the ordinary approver.
    officer_first = approve(grant, "sam", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    assert officer_first.status is GrantStatus.PENDING and officer_first.officer == "sam"
    with pytest.raises(Conflict, match="already approved"):
        approve(officer_first, "sam", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    both = approve(officer_first, "olga", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    assert both.status is GrantStatus.APPROVED and (both.officer, both.approver) == ("sam", "olga")


def test_an_export_at_sl3_needs_one_approver_only() -> None:
    grant = _grant(Action.EXPORT, level=SecurityLevel.SL3)
    assert approve(grant, "bob", is_officer=False, level=SecurityLevel.SL3, now=NOW).status is GrantStatus.APPROVED


def test_approved_revoked_or_expired_grants_take_no_more_approvals() -> None:
    approved = approve(_grant(), "bob", is_officer=False, level=SecurityLevel.SL4, now=NOW)
    with pytest.raises(Conflict, match="approved, not pending"):
        approve(approved, "sam", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    revoked = revoke(approved, "alice", NOW)
    assert revoked.status is GrantStatus.REVOKED and revoked.revoked_by == "alice" and revoked.revoked_at == NOW
    assert not revoked.usable(NOW) and revoked.state(NOW) == "revoked"
    with pytest.raises(Conflict, match="revoked, not pending"):
        approve(revoked, "sam", is_officer=True, level=SecurityLevel.SL4, now=NOW)
    with pytest.raises(Conflict, match="already revoked"):
        revoke(revoked, "sam", NOW)
    expired = NOW + timedelta(hours=3)
    with pytest.raises(Conflict, match="expired, not pending"):
        approve(approved, "sam", is_officer=True, level=SecurityLevel.SL4, now=expired)
    pending_revoked = revoke(_grant(), "alice", NOW)
    with pytest.raises(Conflict):
        approve(pending_revoked, "bob", is_officer=False, level=SecurityLevel.SL4, now=NOW)


@given(
    approvers=st.lists(st.sampled_from(["alice", "bob", "sam", "olga"]), max_size=4),
    officers=st.lists(st.booleans(), min_size=4, max_size=4),
    action=st.sampled_from([Action.DOWNLOAD, Action.EXPORT]),
)
def test_no_sequence_of_approvals_yields_a_grant_without_two_distinct_people(
    approvers: list[str], officers: list[bool], action: Action
) -> None:
    """Whatever order people approve in, an approved grant has an approver distinct from the
    requester, and (bulk export above SL3) an officer distinct from both."""
    grant = _grant(action)
    for who, is_officer in zip(approvers, officers, strict=False):
        try:
            grant = approve(
                grant, who, is_officer=is_officer and who in ("sam", "olga"), level=SecurityLevel.SL4, now=NOW
            )
        except (Forbidden, Conflict):
            continue
    if grant.status is GrantStatus.APPROVED:
        assert grant.approver not in (None, grant.requester)
        if action is Action.EXPORT:
            assert grant.officer not in (None, grant.requester, grant.approver)
    else:
        assert grant.expires_at is None


def test_tokens_are_checked_by_shape_and_stored_only_as_a_hash() -> None:
    token = "dlt_" + "A" * 43
    assert check_token(token) == token
    assert len(token_hash(token)) == 32 and token.encode() not in token_hash(token)
    for bad in ("", "dlt_", "dlt_" + "A" * 42, "apk_" + "A" * 43, "dlt_" + "A" * 42 + "/", "dlt_" + "A" * 43 + "\n"):
        with pytest.raises(InvalidInput, match="not a download token"):
            check_token(bad)


def test_a_download_surge_is_far_above_the_baseline_and_above_the_minimum() -> None:
    quiet = [0] * 14
    assert not download_surge(5, quiet, factor=3.0, minimum=5)  # the minimum is always allowed
    assert download_surge(6, quiet, factor=3.0, minimum=5)
    busy = [4] * 14
    assert not download_surge(12, busy, factor=3.0, minimum=5)  # 3x the baseline is not above it
    assert download_surge(13, busy, factor=3.0, minimum=5)
    assert download_surge(6, [], factor=3.0, minimum=5)


def test_a_grant_keeps_its_duration_until_approval() -> None:
    grant = replace(_grant(hours=0.5), requested_at=NOW - timedelta(days=3))
    approved = approve(grant, "bob", is_officer=False, level=SecurityLevel.SL4, now=NOW)
    assert approved.expires_at == NOW + timedelta(minutes=30)


def test_names_and_state_codes_are_matched_whole() -> None:
    """A trailing newline must not slip through `$` (which also matches before a final newline)."""
    from aperture.access.domain import RuleOfLaw, State, StateKind, check_name, check_state

    assert check_name("alice", "principal") == "alice"
    for bad in ("alice\n", "Alice", "-alice", "a" * 64, "", "al ice"):
        with pytest.raises(InvalidInput):
            check_name(bad, "principal")
    with pytest.raises(InvalidInput):
        check_state(State("FR\n", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
