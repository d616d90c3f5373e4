"""The security desk over HTTP, against the real app on a loopback port (uvicorn, real database):
people, states, organisations, programmes, explain, the seal, grants, single-use downloads,
alerts, sign-in with lock-out, CSRF and signed session cookies.

Every refusal is checked three ways: a JSON error naming the problem (or, for forms, the error
page), an audit event, and the state left as it was."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from itsdangerous import URLSafeTimedSerializer

from aperture.access.domain import SYSTEM, Action, Role
from aperture.web.sessions import COOKIE
from tests.security.desk import PASSWORD, Desk, _csrf, _sign_in, refused

# --- people, states, organisations, programmes, explain ----------------------------------------


def test_people_states_organisations_and_programmes(desk: Desk) -> None:
    admin = desk.admin
    names = [p["name"] for p in desk.api("GET", "/principals", admin).json()]
    assert {"alice", "carol", "quinn"} <= set(names)
    created = desk.api(
        "POST",
        "/principals",
        admin,
        json={
            "name": "zoe",
            "organisation": "institute",
            "clearance": "SL3",
            "vetting": "enhanced",
            "roles": ["researcher"],
            "programmes": ["frontier"],
        },
    )
    assert created.status_code == 201 and created.json()["clearance"] == "SL3"
    patched = desk.api("PATCH", "/principals/zoe", admin, json={"clearance": "SL2", "roles": ["licensee"]})
    assert (
        patched.status_code == 200 and patched.json()["clearance"] == "SL2" and patched.json()["roles"] == ["licensee"]
    )
    state = {"name": "Germany", "kind": "member", "eu": True, "cyber_assurance": "SL4", "rule_of_law": "adequate"}
    assert desk.api("PUT", "/states/DE", admin, json=state).json()["code"] == "DE"
    assert "DE" in [s["code"] for s in desk.api("GET", "/states", admin).json()]
    lab = {"title": "Berlin Lab", "kind": "academic", "state": "DE"}
    assert desk.api("PUT", "/organisations/berlinlab", admin, json=lab).status_code == 200
    assert "berlinlab" in [o["name"] for o in desk.api("GET", "/organisations", admin).json()]
    assert desk.api("POST", "/programmes", admin, json={"name": "bio", "title": "Biology"}).status_code == 201
    assert {"bio", "frontier"} <= {p["name"] for p in desk.api("GET", "/programmes", admin).json()}


def test_bad_people_and_organisations_are_refused_and_nothing_is_created(desk: Desk) -> None:
    admin = desk.admin
    before = desk.api("GET", "/principals", admin).json()
    refused(desk.api("POST", "/principals", admin, json={"name": "Zoe Smith"}), 422, "invalid_input", "Zoe Smith")
    refused(desk.api("POST", "/principals", admin, json={"name": "zoe", "clearance": "SL9"}), 422, "invalid_input")
    refused(
        desk.api("POST", "/principals", admin, json={"name": "zoe", "organisation": "nowhere"}),
        404,
        "not_found",
        "nowhere",
    )
    refused(desk.api("PATCH", "/principals/ghost", admin, json={"clearance": "SL2"}), 404, "not_found", "ghost")
    refused(
        desk.api("PUT", "/organisations/x", admin, json={"title": "X", "kind": "company", "state": "ZZ"}),
        404,
        "not_found",
        "ZZ",
    )
    bad_state = {"name": "Nowhere", "kind": "member", "eu": True, "cyber_assurance": "SL4", "rule_of_law": "adequate"}
    refused(desk.api("PUT", "/states/nowhere", admin, json=bad_state), 422, "invalid_input", "state code")
    assert desk.api("GET", "/principals", admin).json() == before
    assert "x" not in [o["name"] for o in desk.api("GET", "/organisations", admin).json()]
    assert "nowhere" not in [s["code"] for s in desk.api("GET", "/states", admin).json()]


def test_only_managers_manage_people_and_a_refusal_is_audited(desk: Desk) -> None:
    alice = desk.key("alice")
    before = desk.api("GET", "/principals", desk.admin).json()
    refused(desk.api("GET", "/principals", alice), 403, "forbidden", "view principals")
    refused(
        desk.api("POST", "/principals", alice, json={"name": "mallory", "roles": ["administrator"]}), 403, "forbidden"
    )
    refused(desk.api("PATCH", "/principals/alice", alice, json={"clearance": "SL5"}), 403, "forbidden")
    refused(desk.api("POST", "/principals", json={"name": "mallory"}), 401, "unauthenticated")
    assert desk.api("GET", "/principals", desk.admin).json() == before
    denied = [e for e in desk.events("access.instance.denied") if e.actor.startswith("alice")]
    assert [e.details["action"] for e in denied] == ["view_principals", "manage_principals", "manage_principals"]


def test_explain_says_why_and_only_the_desk_explains_others(desk: Desk) -> None:
    sealed = f"model_version:{desk.world.sealed.id}"
    sam, alice = desk.key("sam"), desk.key("alice")
    params = {"principal": "quinn", "action": "view", "resource": sealed}
    explained = desk.api("GET", "/access/explain", sam, params=params).json()
    assert explained["allowed"] is False and "partner-upper-tier-conditions" in explained["reasons"]
    assert explained["explanation"] and explained["policy_version"]
    own = desk.api("GET", "/access/explain", alice, params=params | {"principal": "alice"}).json()
    assert own["allowed"] is True
    refused(desk.api("GET", "/access/explain", alice, params=params), 403, "forbidden")
    refused(desk.api("GET", "/access/explain", sam, params=params | {"resource": "weights:1"}), 422, "invalid_input")
    refused(desk.api("GET", "/access/explain", sam, params=params | {"action": "steal"}), 422, "invalid_input")


# --- keys ---------------------------------------------------------------------------------------


def test_wrong_expired_and_revoked_keys_get_401_and_are_audited(desk: Desk) -> None:
    good = desk.key("alice", expires_at=desk.clock.now() + timedelta(hours=1))
    assert desk.api("GET", "/whoami", good).json()["principal"] == "alice"
    text = good["Authorization"].removeprefix("Bearer ")
    key_id = text.split("_")[1]
    wrong = {"Authorization": f"Bearer {text[:-4]}AAAA"}
    refused(desk.api("GET", "/seal", wrong), 401, "unauthenticated", "not known")
    refused(desk.api("GET", "/seal", {"Authorization": "Bearer apk_nonsense"}), 401, "unauthenticated", "malformed")
    desk.clock.advance(timedelta(hours=2))
    refused(desk.api("GET", "/seal", good), 401, "unauthenticated", "expired")
    revoked = desk.key("bob")
    desk.services.access.revoke_key(SYSTEM, revoked["Authorization"].split("_")[1])
    refused(
        desk.api("POST", "/grants", revoked, json={"model": "frontier-7b:1.0", "action": "download", "reason": "x"}),
        401,
        "unauthenticated",
    )
    # Counted per window, summed into audit.refusals events when a window closes (docs/audit.md).
    desk.clock.advance(timedelta(seconds=desk.services.audit.refusal_window_s))
    desk.services.audit.sum_refusals()
    summaries = [e for e in desk.events("audit.refusals") if e.resource == "refusals:access.key.refused"]
    reasons = {reason for e in summaries for reason in e.details["by_reason"]}
    assert {"wrong secret", "expired", "malformed", "revoked"} <= reasons
    assert sum(e.details["by_subject"].get(f"api-key:{key_id}", 0) for e in summaries) == 2
    assert all(text not in str(e.details) for e in summaries)
    assert desk.services.security.list_grants(desk.world.caller("sam")) == []


# --- 404, not 403 ---------------------------------------------------------------------------------


def test_uncleared_callers_get_the_same_404_as_for_nothing_and_it_is_audited(desk: Desk) -> None:
    for name in ("nora", "lena", "quinn"):  # outside the programme; SL2; partner state below the conditions
        who = desk.key(name)
        hidden = desk.api("GET", "/models/frontier-7b/versions/1.0", who)
        missing = desk.api("GET", "/models/frontier-7b/versions/9.9", who)
        assert hidden.status_code == missing.status_code == 404, name
        assert hidden.json()["error"]["message"].replace("1.0", "V") == missing.json()["error"]["message"].replace(
            "9.9", "V"
        )
        assert "frontier-7b" not in str(desk.api("GET", "/models", who).json())
        grant = {"model": "frontier-7b:1.0", "action": "download", "reason": "curious"}
        refused(desk.api("POST", "/grants", who, json=grant), 404, "not_found")
        denials = [e for e in desk.events("access.decision") if e.actor.startswith(name) and not e.details["allowed"]]
        assert denials, name
    assert desk.services.security.list_grants(desk.world.caller("sam")) == []


# --- the seal -------------------------------------------------------------------------------------


def test_custodians_unseal_over_http_and_wrong_or_repeated_shares_change_nothing(desk: Desk) -> None:
    shares = desk.world.shares
    carol, dave, alice, sam = desk.key("carol"), desk.key("dave"), desk.key("alice"), desk.key("sam")
    status = desk.api("GET", "/seal", alice).json()
    assert status["sealed"] is True and status["threshold"] == 2 and status["custodians"] == ["carol", "dave", "erin"]
    refused(desk.api("POST", "/seal/shares", carol, json={"share": shares["dave"]}), 422, "invalid_input", "carol")
    refused(desk.api("POST", "/seal/shares", carol, json={"share": "aps1-nonsense"}), 422, "invalid_input")
    refused(desk.api("POST", "/seal/shares", alice, json={"share": shares["erin"]}), 403, "forbidden")
    assert desk.api("GET", "/seal", alice).json()["presented"] == 0
    assert desk.api("POST", "/seal/shares", carol, json={"share": shares["carol"]}).json()["presented"] == 1
    refused(desk.api("POST", "/seal/shares", carol, json={"share": shares["carol"]}), 409, "conflict", "already")
    assert desk.api("GET", "/seal", alice).json() | {"custodians": []} == status | {"presented": 1, "custodians": []}
    assert desk.api("POST", "/seal/shares", dave, json={"share": shares["dave"]}).json()["sealed"] is False
    refused(desk.api("POST", "/seal/seal", alice), 403, "forbidden")
    assert desk.api("GET", "/seal", alice).json()["sealed"] is False
    assert desk.api("POST", "/seal/seal", sam).json()["sealed"] is True
    assert len(desk.events("security.seal.share_refused")) == 3  # two wrong shares, one repeated
    assert [a["kind"] for a in desk.api("GET", "/security/alerts", sam).json()].count("bad_unseal_share") == 2


# --- grants and downloads -------------------------------------------------------------------------


def _grant(desk: Desk, who: dict[str, str], action: str = "download") -> dict[str, Any]:
    body = {"model": "frontier-7b:1.0", "action": action, "reason": "evaluation", "hours": 2}
    created = desk.api("POST", "/grants", who, json=body)
    assert created.status_code == 201, created.text
    grant: dict[str, Any] = created.json()
    return grant


def test_two_person_grant_single_use_download_and_the_attacks_on_it(desk: Desk) -> None:
    desk.world.unseal()
    alice, bob, nora, sam = desk.key("alice"), desk.key("bob"), desk.key("nora"), desk.key("sam")
    grant = _grant(desk, alice)
    assert grant["state"] == "pending" and grant["requester"] == "alice"
    gid = grant["id"]
    # A person approving their own request.
    refused(desk.api("POST", f"/grants/{gid}/approve", alice), 403, "forbidden", "own request")
    assert desk.api("GET", f"/grants/{gid}", alice).json() == grant
    assert any(e.details["grant_id"] == gid for e in desk.events("security.grant.approval_refused"))
    # An approver who is not cleared for the asset does not learn that it exists.
    refused(desk.api("POST", f"/grants/{gid}/approve", nora), 404, "not_found")
    refused(
        desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "model.safetensors"}),
        403,
        "forbidden",
        "pending",
    )
    approved = desk.api("POST", f"/grants/{gid}/approve", bob).json()
    assert approved["state"] == "approved" and approved["approver"] == "bob"
    assert gid in [g["id"] for g in desk.api("GET", "/grants", sam).json()]
    # Path traversal names no file of the version.
    refused(
        desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "../../keys/instance-ed25519.pem"}),
        404,
        "not_found",
    )
    refused(desk.api("POST", f"/grants/{gid}/tokens", bob, json={"path": "model.safetensors"}), 403, "forbidden")
    issued = desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "model.safetensors"})
    assert issued.status_code == 201
    token = issued.json()["token"]
    assert issued.json()["url"] == f"/api/v1/downloads/{token}"
    refused(desk.api("GET", f"/downloads/{token}", bob), 404, "not_found")  # not bob's token
    body = desk.api("GET", f"/downloads/{token}", alice)
    assert body.status_code == 200 and 'filename="model.safetensors"' in body.headers["content-disposition"]
    expected = next(f for f in desk.world.sealed.files if f.path == "model.safetensors")
    assert hashlib.sha256(body.content).hexdigest() == expected.sha256
    # A replayed token.
    downloads = len(desk.events("security.weights.download"))
    refused(desk.api("GET", f"/downloads/{token}", alice), 404, "not_found", "no usable download token")
    assert len(desk.events("security.weights.download")) == downloads == 1
    assert any(e.details["why"] == "replayed" for e in desk.events("security.download.refused"))
    assert "token_replay" in [a["kind"] for a in desk.api("GET", "/security/alerts", sam).json()]
    refused(desk.api("GET", "/downloads/dlt_short", alice), 422, "invalid_input", "download token")
    # A revoked grant used again: a token issued before the revocation, and a new one.
    second = desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "config.json"}).json()["token"]
    assert desk.api("POST", f"/grants/{gid}/revoke", alice).json()["state"] == "revoked"
    refused(desk.api("GET", f"/downloads/{second}", alice), 403, "forbidden", "revoked")
    refused(desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "config.json"}), 403, "forbidden", "revoked")
    refused(desk.api("POST", f"/grants/{gid}/approve", sam), 409, "conflict", "revoked")
    refused(desk.api("POST", f"/grants/{gid}/revoke", alice), 409, "conflict", "already revoked")
    assert desk.api("GET", f"/grants/{gid}", alice).json()["state"] == "revoked"
    assert len(desk.events("security.weights.download")) == 1
    assert {"revoked"} <= {e.details["why"] for e in desk.events("security.download.refused")}
    assert {"revoked"} <= {e.details["why"] for e in desk.events("security.token.refused")}


def test_an_expired_grant_and_an_expired_token_are_refused(desk: Desk) -> None:
    desk.world.unseal()
    alice, bob = desk.key("alice"), desk.key("bob")
    gid = _grant(desk, alice)["id"]
    desk.api("POST", f"/grants/{gid}/approve", bob)
    token = desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "config.json"}).json()["token"]
    desk.clock.advance(timedelta(minutes=10))  # past the token's five minutes
    refused(desk.api("GET", f"/downloads/{token}", alice), 404, "not_found")
    assert any(e.details["why"] == "expired" for e in desk.events("security.download.refused"))
    desk.clock.advance(timedelta(hours=2))  # past the grant's two hours
    assert desk.api("GET", f"/grants/{gid}", alice).json()["state"] == "expired"
    refused(desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "config.json"}), 403, "forbidden", "expired")
    assert desk.events("security.weights.download") == []


def test_a_sealed_tier_serves_no_weights(desk: Desk) -> None:
    alice, bob = desk.key("alice"), desk.key("bob")
    gid = _grant(desk, alice)["id"]
    desk.api("POST", f"/grants/{gid}/approve", bob)
    token = desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "config.json"}).json()["token"]
    refused(desk.api("GET", f"/downloads/{token}", alice), 503, "unavailable", "sealed")
    desk.world.unseal()
    assert desk.api("GET", f"/downloads/{token}", alice).status_code == 200  # not used up by the refusal


def test_bad_grant_requests_are_refused_with_the_problem_named(desk: Desk) -> None:
    alice = desk.key("alice")
    base = {"model": "frontier-7b:1.0", "action": "download", "reason": "evaluation"}
    refused(desk.api("POST", "/grants", alice, json=base | {"hours": 500}), 422, "invalid_input", "hours")
    refused(desk.api("POST", "/grants", alice, json=base | {"action": "view"}), 422, "invalid_input", "weight access")
    refused(desk.api("POST", "/grants", alice, json=base | {"model": "open-1b:1.0"}), 422, "invalid_input", "no grant")
    refused(desk.api("POST", "/grants", alice, json=base | {"action": "copy_to_hub"}), 422, "invalid_input", "hub")
    refused(desk.api("POST", "/grants", alice, json=base | {"reason": ""}), 422, "invalid_input")
    refused(desk.api("GET", "/grants/no-such-grant", alice), 404, "not_found")
    assert desk.api("GET", "/grants", alice).json() == []


# --- alerts ---------------------------------------------------------------------------------------


def test_alerts_are_for_the_security_desk(desk: Desk) -> None:
    carol, sam, alice = desk.key("carol"), desk.key("sam"), desk.key("alice")
    desk.api("POST", "/seal/shares", carol, json={"share": desk.world.shares["dave"]})
    (alert,) = desk.api("GET", "/security/alerts", sam).json()
    assert (
        alert["kind"] == "bad_unseal_share" and alert["severity"] == "high" and alert["principal"].startswith("carol")
    )
    assert alert["origin"] == "127.0.0.1"
    refused(desk.api("GET", "/security/alerts", alice), 403, "forbidden")
    refused(desk.api("POST", f"/security/alerts/{alert['id']}/acknowledge", alice), 403, "forbidden")
    assert desk.api("GET", "/security/alerts", sam, params={"open_only": True}).json() == [alert]
    assert desk.api("POST", f"/security/alerts/{alert['id']}/acknowledge", sam).status_code == 204
    refused(desk.api("POST", f"/security/alerts/{alert['id']}/acknowledge", sam), 404, "not_found")
    assert desk.api("GET", "/security/alerts", sam, params={"open_only": True}).json() == []
    (seen,) = desk.api("GET", "/security/alerts", sam).json()
    assert seen["acknowledged_by"].startswith("sam")


# --- sign-in, lock-out, CSRF, session cookies -----------------------------------------------------


def test_sign_in_with_an_argon2_password_and_a_signed_session(desk: Desk) -> None:
    desk.services.access.set_password(SYSTEM, "sam", PASSWORD)
    with desk.browser() as client:
        assert client.get("/security").headers["location"] == "/login?next=/security"
        signed_in = _sign_in(client, "sam", PASSWORD)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/security"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        page = client.get("/security")
        assert page.status_code == 200 and "Custodians (2 of 3)" in page.text and "sam" in page.text
        people = client.get("/people")
        assert people.status_code == 200 and "quinn" in people.text and "East Co" in people.text
        client.post("/logout", data={"csrf": _csrf(page)})
        assert client.get("/security").status_code == 303
    stored = desk.services.database
    from sqlalchemy import text

    with stored.read() as connection:
        hashed = connection.execute(text("SELECT password_hash FROM access_principals WHERE name = 'sam'")).scalar()
    assert str(hashed).startswith("$argon2id$") and PASSWORD not in str(hashed)
    assert [e.actor for e in desk.events("access.login.succeeded")] == ["sam"]


def test_repeated_failures_lock_the_account_and_each_is_audited(desk: Desk) -> None:
    desk.services.access.set_password(SYSTEM, "alice", PASSWORD)
    with desk.browser() as client:
        for _ in range(5):
            failed = _sign_in(client, "alice", "not the password at all")
            assert failed.status_code == 401 and "wrong, or the account is locked" in failed.text
        locked = _sign_in(client, "alice", PASSWORD)  # the right password, while locked
        assert locked.status_code == 401
        assert client.get("/security").status_code == 303
        unknown = _sign_in(client, "nobody", PASSWORD)
        assert unknown.status_code == 401 and unknown.text.count("wrong, or the account is locked") == 1
    # The lockout is its own event; the failures are counted per window (docs/audit.md, "Refusals").
    assert [e.actor for e in desk.events("access.login.locked_out")] == ["alice"]
    desk.clock.advance(timedelta(seconds=desk.services.audit.refusal_window_s))
    desk.services.audit.sum_refusals()
    (summary,) = [e for e in desk.events("audit.refusals") if e.resource == "refusals:access.login.failed"]
    assert summary.details["by_reason"] == {"wrong password": 4, "locked": 1, "unknown principal": 1}
    assert desk.events("access.login.succeeded") == []
    desk.clock.advance(timedelta(minutes=16))  # past the 15-minute lock-out
    with desk.browser() as client:
        assert _sign_in(client, "alice", PASSWORD).status_code == 303


def test_forms_without_or_with_a_wrong_csrf_token_are_refused(desk: Desk) -> None:
    desk.services.access.set_password(SYSTEM, "carol", PASSWORD)
    with desk.browser() as client:
        page = client.get("/login")
        no_token = client.post("/login", data={"name": "carol", "password": PASSWORD})
        assert no_token.status_code == 403 and "security token" in no_token.text
        wrong = client.post("/login", data={"name": "carol", "password": PASSWORD, "csrf": _csrf(page) + "x"})
        assert wrong.status_code == 403
        assert desk.events("access.login.succeeded") == []
        assert _sign_in(client, "carol", PASSWORD).status_code == 303
        share = desk.world.shares["carol"]
        for token in ("", "forged-token"):
            posted = client.post("/security/shares", data={"share": share, "csrf": token})
            assert posted.status_code == 403 and "security token" in posted.text
        assert desk.services.security.seal_status(SYSTEM).presented == 0
        presented = client.post("/security/shares", data={"share": share, "csrf": _csrf(client.get("/security"))})
        assert presented.status_code == 303
        assert desk.services.security.seal_status(SYSTEM).presented == 1
    with desk.browser() as stranger:  # a token from another session is not this session's
        other = _csrf(stranger.get("/login"))
    with desk.browser() as client:
        assert _sign_in(client, "carol", PASSWORD).status_code == 303
        refused_page = client.post("/security/shares", data={"share": desk.world.shares["carol"], "csrf": other})
        assert refused_page.status_code == 403
    assert desk.services.security.seal_status(SYSTEM).presented == 1


def test_a_forged_or_foreign_session_cookie_signs_nobody_in(desk: Desk) -> None:
    desk.services.access.set_password(SYSTEM, "sam", PASSWORD)
    with desk.browser() as client:
        _sign_in(client, "sam", PASSWORD)
        real = client.cookies[COOKIE]
    payload, _, signature = real.rpartition(".")
    foreign = URLSafeTimedSerializer(b"another instance's secret", salt="aperture.session.v1")
    forged = foreign.dumps({"csrf": "x", "principal": "sam", "epoch": 0})
    for cookie in (payload + "." + signature[::-1], forged, real[:-3]):
        with desk.browser() as client:
            client.cookies.set(COOKIE, cookie)
            assert client.get("/security").status_code == 303, cookie
            assert client.get("/people").status_code == 303
    with desk.browser() as client:
        client.cookies.set(COOKIE, real)
        assert client.get("/security").status_code == 200  # the real one still works
        desk.services.access.set_password(SYSTEM, "sam", PASSWORD + " changed")
        assert client.get("/security").status_code == 303  # a password change ends old sessions


def test_pages_refuse_what_the_viewer_may_not_do(desk: Desk) -> None:
    desk.services.access.set_password(SYSTEM, "alice", PASSWORD)
    desk.services.access.set_password(SYSTEM, "bob", PASSWORD)
    gid = desk.services.security.request_grant(
        desk.world.caller("alice"), "frontier-7b:1.0", Action.DOWNLOAD, reason="evaluation"
    ).id
    with desk.browser() as client:
        _sign_in(client, "alice", PASSWORD)
        page = client.get("/security")
        assert f'data-grant="{gid}"' in page.text and f"/security/grants/{gid}/approve" not in page.text
        own = client.post(f"/security/grants/{gid}/approve", data={"csrf": _csrf(page)})
        assert own.status_code == 403 and "own request" in own.text
        assert client.get("/people").status_code == 403  # a researcher is not the security desk
    assert desk.services.security.get_grant(desk.world.caller("bob"), gid).state == "pending"
    with desk.browser() as client:
        _sign_in(client, "bob", PASSWORD)
        page = client.get("/security")
        approved = client.post(f"/security/grants/{gid}/approve", data={"csrf": _csrf(page)})
        assert approved.status_code == 303
    assert desk.services.security.get_grant(desk.world.caller("bob"), gid).state == "approved"


def test_a_scoped_key_does_only_its_scopes(desk: Desk) -> None:
    principal = desk.services.access.get_principal("alice")
    issued = desk.services.access.issue_key(
        SYSTEM, name="read-only", principal="alice", roles=principal.roles, scopes=["view"]
    )
    scoped = {"Authorization": f"Bearer {issued.text}"}
    assert desk.api("GET", "/models/frontier-7b/versions/1.0", scoped).status_code == 200
    grant = {"model": "frontier-7b:1.0", "action": "download", "reason": "x"}
    refused(desk.api("POST", "/grants", scoped, json=grant), 403, "forbidden")
    assert desk.services.security.list_grants(desk.world.caller("sam")) == []


def test_a_view_scoped_key_can_do_nothing_else_on_any_path(desk: Desk) -> None:
    """Before, only Cedar-checked actions looked at a key's scopes: a view-scoped key issued
    download tokens, revoked grants, issued keys and signed tree heads."""
    desk.world.unseal()
    alice, bob = desk.key("alice"), desk.key("bob")
    gid = _grant(desk, alice)["id"]
    assert desk.api("POST", f"/grants/{gid}/approve", bob).status_code == 200
    viewer = desk.key("alice", scopes=["view"])
    admin = desk.services.access.issue_key(
        SYSTEM, name="admin read-only", principal="root", roles=(Role.ADMINISTRATOR,), scopes=["view"]
    )
    root = {"Authorization": f"Bearer {admin.text}"}
    tokens = len(desk.events("security.token.issued"))
    refused(desk.api("POST", f"/grants/{gid}/tokens", viewer, json={"path": "config.json"}), 403, "forbidden")
    refused(desk.api("POST", f"/grants/{gid}/revoke", viewer), 403, "forbidden")
    refused(desk.api("POST", "/audit/tree-head", root), 403, "forbidden")
    refused(desk.api("POST", "/keys", root, json={"name": "x", "principal": "root"}), 403, "forbidden")
    refused(desk.api("POST", "/models/open-1b/versions/1.0/verify", root), 403, "forbidden")
    assert len(desk.events("security.token.issued")) == tokens
    assert desk.api("GET", f"/grants/{gid}", alice).json()["state"] == "approved"
    assert [k.principal for k in desk.services.access.list_keys(SYSTEM)].count("root") == 1


def test_refusals_are_audited_the_same_way_on_every_path(desk: Desk) -> None:
    """Before, a refusal decided by a role check in a handler or a service left no trace."""
    researcher = desk.key("alice")
    finding = {"title": "t", "author": "a", "domain": "bio"}
    desk.services.access.update_principal(SYSTEM, "pat", roles=[Role.LICENSEE])
    licensee = desk.key("pat")
    refused(desk.api("POST", "/audit/tree-head", researcher), 403, "forbidden")
    refused(desk.api("GET", "/keys", researcher), 403, "forbidden")
    refused(desk.api("POST", "/models/open-1b/versions/1.0/verify", researcher), 403, "forbidden")
    refused(desk.api("POST", "/models/open-1b/versions/1.0/findings", licensee, data=finding), 403, "forbidden")
    instance = [e.details["action"] for e in desk.events("access.instance.denied") if e.actor.startswith("alice")]
    assert instance == ["sign_tree_head", "manage_keys"]
    on_assets = [(e.actor.split(" ")[0], e.details["action"]) for e in desk.events("access.decision")]
    assert ("alice", "verify") in on_assets and ("pat", "assess") in on_assets
    assert all(
        e.resource == f"asset:model_version:{desk.world.open_version.id}"
        for e in desk.events("access.decision")
        if e.details["action"] in ("verify", "assess")
    )


def test_a_token_raced_by_two_requests_serves_exactly_one(desk: Desk) -> None:
    desk.world.unseal()
    alice, bob = desk.key("alice"), desk.key("bob")
    gid = _grant(desk, alice)["id"]
    desk.api("POST", f"/grants/{gid}/approve", bob)
    token = desk.api("POST", f"/grants/{gid}/tokens", alice, json={"path": "model.safetensors"}).json()["token"]
    start = threading.Barrier(4)

    def redeem(_: int) -> int:
        start.wait()
        return desk.api("GET", f"/downloads/{token}", alice).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(redeem, range(4)))
    assert statuses == [200, 404, 404, 404]
    assert len(desk.events("security.weights.download")) == 1
    assert [e.details["why"] for e in desk.events("security.download.refused")] == ["replayed"] * 3
