"""Defect 7 of issue 14, through the real server: one administrator passed the two-person rule
alone by issuing keys as both the requester and the approver.

Keys for a person now come from that person (signed in, for themself) or from two administrators
(one asks, a second approves); every key records who issued it, every act done with it carries
that, and an approval is a second person's only when neither party issued the other's key."""

from __future__ import annotations

from typing import Any

import pytest

from aperture.access.domain import SYSTEM, PrincipalKind, Role, SecurityLevel, Vetting
from aperture.core.errors import InvalidInput
from tests.security.desk import PASSWORD, Desk, _csrf, _sign_in, refused

GRANT = {"model": "frontier-7b:1.0", "action": "download", "reason": "evaluation", "hours": 2}


def _root(desk: Desk, name: str) -> dict[str, str]:
    """An administrator who is also a cleared researcher (so they may request a grant themself)."""
    desk.services.access.add_principal(
        SYSTEM,
        name,
        kind=PrincipalKind.PERSON,
        organisation="institute",
        clearance=SecurityLevel.SL4,
        vetting=Vetting.ENHANCED,
        roles=(Role.ADMINISTRATOR, Role.RESEARCHER),
        programmes=("frontier",),
    )
    return desk.key(name)


def _bearer(issued: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued['key']}"}


def test_one_administrator_cannot_issue_the_keys_for_both_sides_of_a_grant(desk: Desk) -> None:
    root = _root(desk, "root")
    # The attack: one administrator issues a key for a requester and one for an approver, then acts
    # with both. Neither key is issued any more: a key for someone else takes two administrators.
    for principal, role in (("alice", "researcher"), ("bob", "programme_director")):
        alone = desk.api("POST", "/keys", root, json={"name": "k", "principal": principal, "roles": [role]})
        refused(alone, 403, "forbidden")
        assert "two administrators" in alone.json()["error"]["hint"]
    assert not [key for key in desk.services.access.list_keys(SYSTEM) if key.principal in ("alice", "bob")]
    denied = [e for e in desk.events("access.instance.denied") if e.actor.startswith("root")]
    assert [e.details["action"] for e in denied] == ["issue_key", "issue_key"]


def test_a_key_request_is_approved_by_a_second_administrator_and_every_act_names_both(desk: Desk) -> None:
    root, second = _root(desk, "root"), _root(desk, "other")
    body = {"name": "bob's key", "principal": "bob", "roles": ["programme_director"]}
    asked = desk.api("POST", "/key-requests", root, json=body)
    assert asked.status_code == 201, asked.text
    approve = f"/key-requests/{asked.json()['id']}/approve"
    own = desk.api("POST", approve, root)
    refused(own, 403, "forbidden", "second administrator")
    issued = desk.api("POST", approve, second)
    assert issued.status_code == 201, issued.text
    assert issued.json()["issued_by"] == ["root", "system", "other"]
    refused(desk.api("POST", approve, second), 409, "conflict", "approved")
    bob = _bearer(issued.json())
    assert desk.api("GET", "/whoami", bob).json()["issued_by"] == ["root", "system", "other"]
    # The approving administrator holds bob's key text. Used to approve their own grant, it is
    # not a second person's: the approving key was issued by the requester.
    grant = desk.api("POST", "/grants", second, json=GRANT).json()
    refused(desk.api("POST", f"/grants/{grant['id']}/approve", bob), 403, "forbidden", "not a second person")
    assert desk.api("GET", f"/grants/{grant['id']}", second).json()["state"] == "pending"
    (refusal,) = [e for e in desk.events("security.grant.approval_refused") if e.details["grant_id"] == grant["id"]]
    assert refusal.actor.startswith("bob (key ") and "issued by root+system+other" in refusal.actor
    assert "approval-by-a-second-person" in refusal.details["reasons"]
    # The same holds the other way round: the requester acting with a key the approver issued.
    asked = desk.api("POST", "/key-requests", second, json={"name": "a", "principal": "alice", "roles": ["researcher"]})
    alice = _bearer(desk.api("POST", f"/key-requests/{asked.json()['id']}/approve", root).json())
    theirs = desk.api("POST", "/grants", alice, json=GRANT).json()
    refused(desk.api("POST", f"/grants/{theirs['id']}/approve", root), 403, "forbidden", "not a second person")


def test_a_person_issues_their_own_key_signed_in_and_approves_as_a_second_person(desk: Desk) -> None:
    root = _root(desk, "root")
    desk.services.access.set_password(SYSTEM, "bob", PASSWORD)
    grant = desk.api("POST", "/grants", root, json=GRANT).json()
    with desk.browser() as client:
        _sign_in(client, "bob", PASSWORD, "/account")
        page = client.get("/account")
        assert page.status_code == 200
        made = client.post("/account/keys", data={"name": "laptop", "csrf": _csrf(page)})
        assert made.status_code == 201 and 'data-issued="' in made.text
        text = made.text.split('<code class="secret">')[1].split("</code>")[0]
    bob = {"Authorization": f"Bearer {text}"}
    assert desk.api("GET", "/whoami", bob).json() == {
        "principal": "bob",
        "roles": ["programme_director"],
        "key_id": text.split("_")[1],
        "issued_by": [],
    }
    approved = desk.api("POST", f"/grants/{grant['id']}/approve", bob)
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    (event,) = [e for e in desk.events("security.grant.approved") if e.details["grant_id"] == grant["id"]]
    assert event.actor == f"bob (key {text.split('_')[1]})"
    # A key of one's own never does more than the key it is issued with.
    scoped = desk.api("POST", "/keys", bob, json={"name": "ro", "scopes": ["view"]}).json()
    wider = desk.api("POST", "/keys", _bearer(scoped), json={"name": "rw"})
    refused(wider, 403, "forbidden")  # a view-scoped key issues nothing
    refused(desk.api("POST", "/keys", bob, json={"name": "x", "roles": ["administrator"]}), 422, "invalid_input")


def test_no_key_acts_as_the_operator(desk: Desk) -> None:
    """A key for the principal `system` carried the local operator's clearance (SL5, every
    programme): an administrator could read every upper-tier asset with it."""
    admin = desk.admin
    for principal in ("system", "anonymous"):
        refused(desk.api("POST", "/keys", admin, json={"name": "x", "principal": principal}), 403, "forbidden")
        made = desk.api("POST", "/key-requests", admin, json={"name": "x", "principal": principal})
        refused(made, 422, "invalid_input", "reserved")
    hidden = desk.api("GET", "/models/frontier-7b/versions/1.0", admin)
    assert hidden.status_code == 404
    with pytest.raises(InvalidInput, match="reserved"):  # nor from the operator's CLI
        desk.services.access.issue_key(SYSTEM, name="x", principal="system", roles=(Role.ADMINISTRATOR,))
