"""The public and the private view of the log, through the real server: the public view names no
person, no address and no upper-tier asset, yet every event in it hashes to its signed leaf; the
private view proves each withheld field to those allowed; page views leave nothing in the log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from aperture.access.domain import SYSTEM, Caller, Role
from aperture.audit import domain
from aperture.bootstrap import Services
from aperture.core.clock import isoformat
from aperture.risk.domain import RiskDomain
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance
from tests.security.world import World, build_world

SECRETS = ("frontier-7b", "192.0.2.7", "alice", "sam", "bob", "carol", "dave", "evil-name")


def leaked(text: str) -> list[str]:
    """The secrets (a name as a word, an address, an upper-tier model) found in a text."""
    return [secret for secret in SECRETS if re.search(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", text)]


@dataclass
class Site:
    world: World
    url: str
    admin: dict[str, str]

    def key(self, name: str) -> dict[str, str]:
        roles = self.world.services.access.get_principal(name).roles
        issued = self.world.services.access.issue_key(SYSTEM, name=f"{name} key", principal=name, roles=roles)
        return {"Authorization": f"Bearer {issued.text}"}

    def events(self, who: dict[str, str] | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        before = None
        while True:
            params: dict[str, Any] = {"limit": 500} | ({"before": before} if before is not None else {})
            page = httpx.get(f"{self.url}/api/v1/audit/events", params=params, headers=who or {}).json()
            found.extend(page["events"])
            if page["next_before"] is None:
                return found
            before = page["next_before"]


@pytest.fixture
def site(instance: Instance, tmp_path: Path) -> Iterator[Site]:
    world = build_world(instance.services, tmp_path)
    services = world.services
    alice = world.caller("alice")
    services.registry.get_version("frontier-7b", "1.0", alice)  # an audited upper-tier read, from 192.0.2.7
    services.risk.add_finding(
        alice, "frontier-7b:1.0", title="uplift found", summary="serious", author="alice", domain=RiskDomain.BIO
    )
    with pytest.raises(Exception):
        services.access.login("evil-name<script>", "not the password", origin="192.0.2.7")
    services.audit.issue_tree_head()
    with running_server(create_app(services)) as url:
        yield Site(world, url, {"Authorization": f"Bearer {instance.admin_key}"})


def test_the_public_view_names_no_person_address_or_upper_tier_model(site: Site) -> None:
    events = site.events()
    assert {"access.decision", "risk.finding.attached", "access.principal.added"} <= {e["action"] for e in events}
    assert leaked(json.dumps(events)) == []
    for page in ("/", "/audit"):
        assert leaked(httpx.get(site.url + page).text) == [], page
    decision = next(e for e in events if e["action"] == "access.decision")
    assert decision["actor"] == decision["details"]["origin"] == {"withheld": "internal"}
    assert set(decision["withheld"]) == {"internal", "upper-tier"}  # one commitment per label
    assert decision["resource"]["withheld"] == "upper-tier"
    assert decision["details"]["allowed"] is True and decision["details"]["level"] == "SL4"  # what happened is public
    finding = next(e for e in events if e["action"] == "risk.finding.attached")
    assert finding["resource"]["withheld"] == "upper-tier" and finding["details"]["title"]["withheld"] == "upper-tier"


def test_every_public_event_is_its_leaf_and_proves_against_the_signed_head(site: Site) -> None:
    keys = httpx.get(f"{site.url}/.well-known/aperture/keys.json").json()["keys"]
    pem = next(k["public_key_pem"] for k in keys if k["name"] == "instance")
    head = httpx.get(f"{site.url}/api/v1/audit/tree-head").json()
    for event in site.events():
        assert "disclosed" not in event
        assert domain.leaf_hash(domain.event_leaf_data(event)).hex() == event["leaf_hash"]
        if event["leaf_index"] < head["tree_size"] and event["leaf_index"] % 7 == 0:
            bundle = httpx.get(f"{site.url}/api/v1/audit/proofs/inclusion/{event['leaf_index']}").json()
            assert domain.check_bundle(bundle, pem).ok, bundle


def test_the_private_view_needs_the_role_and_upper_tier_fields_need_clearance(site: Site) -> None:
    def decision(who: dict[str, str] | None) -> dict[str, Any]:
        return next(e for e in site.events(who) if e["action"] == "access.decision")

    assert "disclosed" not in decision(None)
    assert "disclosed" not in decision(site.key("alice"))  # cleared for the asset, but no role to read the log
    admin = decision(site.admin)  # the role, but not cleared for frontier (SL4)
    assert set(admin["disclosed"]) == {"internal"}
    assert set(admin["disclosed"]["internal"]["fields"]) == {"actor", "details.origin"}
    assert admin["disclosed"]["internal"]["fields"]["actor"].startswith("alice")
    assert domain.check_disclosed(admin) == []
    desk = decision(site.key("sam"))  # security officer, SL4, in the programme
    assert set(desk["disclosed"]) == {"internal", "upper-tier"}
    resource = desk["disclosed"]["upper-tier"]["fields"]["resource"]
    assert resource == f"asset:model_version:{site.world.sealed.id}"
    assert domain.check_disclosed(desk) == []
    finding = next(e for e in site.events(site.key("sam")) if e["action"] == "risk.finding.attached")
    fields = finding["disclosed"]["upper-tier"]["fields"]
    assert fields["resource"] == f"asset:model_version:{site.world.sealed.id}"  # by opaque id, even here
    assert fields["details.title"] == "uplift found"  # cleared: the upper-tier fields open
    bundle = httpx.get(
        f"{site.url}/api/v1/audit/proofs/inclusion/{finding['leaf_index']}", headers=site.key("sam")
    ).json()
    assert domain.check_bundle(bundle, site.world.services.keys.public_key_pem).ok
    page = httpx.get(f"{site.url}/audit/events/{finding['leaf_index']}").text
    assert "frontier-7b" not in page and "withheld: upper-tier" in page


def test_a_disclosure_that_does_not_open_its_commitment_fails(site: Site) -> None:
    services = site.world.services
    leaf = next(r for r in services.audit.list_records(limit=500) if r.action == "access.decision").leaf_index
    bundle = services.audit.inclusion_proof(leaf).to_json()
    assert domain.check_bundle(bundle, services.keys.public_key_pem).ok
    bundle["event"]["disclosed"]["internal"]["fields"]["actor"] = "mallory (key 00000000)"
    failed = [c.name for c in domain.check_bundle(bundle, services.keys.public_key_pem).checks if not c.ok]
    assert failed == ["disclosed fields match the leaf"]


def test_page_views_leave_nothing_in_the_log(site: Site) -> None:
    services = site.world.services
    before = services.audit.tree_size()
    for path in ("/", "/models", "/models/open-1b", "/registry", "/audit", "/licensing", "/models/frontier-7b"):
        httpx.get(site.url + path)
    assert httpx.get(f"{site.url}/models/frontier-7b/versions/1.0").status_code == 404
    assert httpx.get(f"{site.url}/api/v1/registry").status_code == 200
    assert services.audit.tree_size() == before


def test_an_edited_private_half_is_found_by_verify(site: Site) -> None:
    services = site.world.services
    record = next(r for r in services.audit.list_records(limit=500) if r.action == "access.decision")
    with services.database.read() as connection:
        stored = connection.execute(
            text("SELECT withheld FROM audit_events WHERE leaf_index = :i"), {"i": record.leaf_index}
        ).scalar_one()
    edited = stored.replace("alice", "bobby")
    with services.database.transaction() as connection:
        connection.execute(
            text("UPDATE audit_events SET withheld = :w WHERE leaf_index = :i"), {"w": edited, "i": record.leaf_index}
        )
    report = services.audit.verify()
    assert [(p.kind, p.where) for p in report.problems] == [(domain.ProblemKind.PRIVATE, f"leaf {record.leaf_index}")]
    assert "withheld as internal" in report.problems[0].message


def test_version_1_events_keep_verifying_and_the_public_sees_them_redacted(services: Services) -> None:
    """An event written before withholding holds every field in clear in its leaf: it still
    verifies, the operator still proves it, and the public sees only what is public today."""
    event = domain.AuditEvent(
        services.audit.tree_size(),
        "0190b7c2-8d3e-7000-8000-000000000001",
        isoformat(services.clock.now()),
        "alice (key 1a2b3c4d)",
        "access.key.refused",
        "api-key:1a2b3c4d",
        {"why": "wrong secret", "origin": "192.0.2.7"},
        schema_version=1,
    )
    with services.database.transaction() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_events (leaf_index, event_id, occurred_at, actor, action, resource, details, "
                "leaf_hash, schema_version) VALUES (:i, :e, :at, :a, :act, :r, :d, :h, 1)"
            ),
            {
                "i": event.leaf_index,
                "e": event.event_id,
                "at": event.occurred_at,
                "a": event.actor,
                "act": event.action,
                "r": event.resource,
                "d": domain.details_text(event.details),
                "h": domain.event_leaf_hash(event),
            },
        )
    services.audit.issue_tree_head()
    assert services.audit.verify().ok
    assert services.audit.get_event(event.leaf_index) == event
    pem = services.keys.public_key_pem
    operator = services.audit.inclusion_proof(event.leaf_index).to_json()
    assert operator["event"]["actor"] == "alice (key 1a2b3c4d)" and domain.check_bundle(operator, pem).ok
    public = services.audit.inclusion_proof(event.leaf_index, disclose=domain.disclose_none).to_json()
    assert public["event"]["actor"] == {"withheld": "internal"}
    assert public["event"]["resource"] == {"withheld": "internal"}
    assert public["event"]["details"] == {"why": "wrong secret", "origin": {"withheld": "internal"}}
    result = domain.check_bundle(public, pem)
    assert [c.name for c in result.checks if not c.ok] == ["event hashes to the leaf"]
    assert "version 1" in next(c.detail for c in result.checks if not c.ok)
    assert "192.0.2.7" not in json.dumps(public)


def test_the_upper_tier_flag_withholds_what_names_the_asset(services: Services) -> None:
    caller = Caller(principal="system", roles=(Role.ADMINISTRATOR,))
    with services.database.transaction() as connection:
        lower = services.audit.append(
            connection,
            actor=caller.actor,
            action="release.voted",
            resource="release-proposal:p1",
            details={"approve": True, "reason": "fine"},
        )
        upper = services.audit.append(
            connection,
            actor=caller.actor,
            action="release.voted",
            resource="release-proposal:p2",
            details={"approve": True, "reason": "fine"},
            upper_tier=True,
            asset="model_version:v2",
        )
    shown = {r.leaf_index: services.audit.event_json(r, domain.disclose_none) for r in services.audit.list_records()}
    assert shown[lower.leaf_index]["resource"] == "release-proposal:p1"
    assert shown[lower.leaf_index]["details"] == {"approve": True, "reason": "fine"}
    assert shown[upper.leaf_index]["resource"]["withheld"] == "upper-tier"
    assert shown[upper.leaf_index]["details"]["reason"]["withheld"] == "upper-tier"
    assert shown[upper.leaf_index]["details"]["approve"] is True
    assert services.audit.get_record(upper.leaf_index).asset == "model_version:v2"
    # The same values are committed to differently each time (a salt per event and label):
    # nobody can link two events by their commitments, or guess a value and check it.
    assert shown[lower.leaf_index]["actor"] == shown[upper.leaf_index]["actor"] == {"withheld": "internal"}
    assert shown[lower.leaf_index]["withheld"]["internal"] != shown[upper.leaf_index]["withheld"]["internal"]
