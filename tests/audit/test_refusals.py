"""Refusals anyone can cause (wrong keys, failed sign-ins, an outsider's denied requests) are
counted per window into a bounded table and summed into one event per kind and window, with no
address and no text the sender chose; through the real server where it is a route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from aperture.access.domain import ANONYMOUS, SYSTEM, Action, PrincipalKind, Role
from aperture.audit import domain
from aperture.bootstrap import Services, build_services, init_instance
from aperture.core.errors import Unauthenticated
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app

ATTACKER_TEXT = "<img src=x onerror=alert(1)>"


class SteppingClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Instance:
    services: Services
    clock: SteppingClock
    url: str

    def next_window(self) -> None:
        self.clock.offset += timedelta(seconds=self.services.audit.refusal_window_s)

    def summaries(self) -> list[domain.AuditEvent]:
        return [e for e in self.services.audit.list_events(limit=500) if e.action == "audit.refusals"]

    def everything_stored(self) -> str:
        with self.services.database.read() as connection:
            rows = connection.execute(text("SELECT * FROM audit_events")).all()
            rows += connection.execute(text("SELECT * FROM audit_refusals")).all()
        return json.dumps([[str(value) for value in row] for row in rows])


@pytest.fixture
def site(settings: Settings) -> Iterator[Instance]:
    clock = SteppingClock()
    services = build_services(settings, clock=clock)
    init_instance(services)
    services.audit.issue_tree_head()
    try:
        with running_server(create_app(services)) as url:
            yield Instance(services, clock, url)
    finally:
        services.close()


def test_wrong_keys_are_counted_not_logged(site: Instance) -> None:
    services = site.services
    before = services.audit.tree_size()
    issued = services.access.issue_key(SYSTEM, name="soon revoked", principal="rita", roles=(Role.RESEARCHER,))
    services.access.revoke_key(SYSTEM, issued.key.key_id)
    before = services.audit.tree_size()
    for i in range(60):
        guess = f"apk_{i:08x}_{'x' * 43}" if i % 3 else f"{ATTACKER_TEXT}{i}"
        response = httpx.get(f"{site.url}/api/v1/whoami", headers={"Authorization": f"Bearer {guess}"})
        assert response.status_code == 401
    for _ in range(5):
        httpx.get(f"{site.url}/api/v1/whoami", headers={"Authorization": f"Bearer {issued.text}"})
    assert services.audit.tree_size() == before  # nothing logged while the window is open
    site.next_window()
    services.audit.issue_tree_head_if_grown()  # the server's periodic task sums closed windows
    (summary,) = site.summaries()
    assert summary.resource == "refusals:access.key.refused"
    assert summary.details["total"] == 65
    assert summary.details["by_reason"] == {"malformed": 20, "unknown key": 40, "revoked": 5}
    assert summary.details["by_subject"] == {f"api-key:{issued.key.key_id}": 5}  # a key of ours, named
    assert summary.details["origins"] == 1 and summary.details["capped"] == 0
    assert services.audit.tree_size() == before + 1
    public = services.audit.event_json(services.audit.get_record(summary.leaf_index), domain.disclose_none)
    assert public["details"]["total"] == 65 and public["details"]["by_origin"]["withheld"] == "internal"
    assert ATTACKER_TEXT not in site.everything_stored() and "127.0.0.1" not in site.everything_stored()
    with services.database.read() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM audit_refusals")).scalar_one() == 0


def test_failed_sign_ins_never_keep_the_name_typed(site: Instance) -> None:
    services = site.services
    services.access.add_principal(SYSTEM, "maria", kind=PrincipalKind.PERSON)
    services.access.set_password(SYSTEM, "maria", "a long enough password")
    before = services.audit.tree_size()
    with httpx.Client(base_url=site.url) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        for i in range(30):
            refused = browser.post(
                "/login", data={"name": f"{ATTACKER_TEXT}-{i}", "password": "whatever it is", "csrf": csrf.group(1)}
            )
            assert refused.status_code == 401
    for _ in range(4):  # a real account, wrong password: counted too, until it locks
        with pytest.raises(Unauthenticated):
            services.access.login("maria", "not her password", origin="198.51.100.9")
    assert services.audit.tree_size() == before
    with pytest.raises(Unauthenticated):
        services.access.login("maria", "not her password", origin="198.51.100.9")  # the fifth locks it
    (locked,) = [e for e in services.audit.list_events(limit=20) if e.action == "access.login.locked_out"]
    assert locked.resource == "principal:maria"  # a change of state of a real account: its own event
    public = services.audit.event_json(services.audit.get_record(locked.leaf_index), domain.disclose_none)
    assert public["actor"]["withheld"] == public["resource"]["withheld"] == "internal"
    site.next_window()
    services.audit.issue_tree_head()
    (summary,) = site.summaries()
    assert summary.resource == "refusals:access.login.failed"
    assert summary.details["by_reason"] == {"unknown principal": 30, "wrong password": 4}
    assert summary.details["origins"] == 2
    assert ATTACKER_TEXT not in site.everything_stored()


def test_the_counters_are_bounded_per_window(site: Instance) -> None:
    services = site.services
    services.audit.refusal_cap = 5
    for i in range(50):
        with pytest.raises(Unauthenticated):
            services.access.authenticate(f"apk_{i:08x}_{'y' * 43}", origin=f"203.0.113.{i}")
    with services.database.read() as connection:
        rows = connection.execute(text("SELECT COUNT(*) FROM audit_refusals")).scalar_one()
    assert rows == 6  # the cap, plus one overflow counter for the one reason
    site.next_window()
    services.audit.sum_refusals()
    (summary,) = site.summaries()
    assert summary.details["total"] == 50 and summary.details["capped"] == 45 and summary.details["origins"] == 5


def test_an_outsiders_denied_requests_are_counted(site: Instance) -> None:
    services = site.services
    before = services.audit.tree_size()
    outsider = replace(ANONYMOUS, origin="192.0.2.99")
    for _ in range(10):
        with pytest.raises(Unauthenticated):
            services.access.require_instance(outsider, Action.MANAGE_PRINCIPALS)
    assert services.audit.tree_size() == before
    site.next_window()
    services.audit.sum_refusals()
    (summary,) = site.summaries()
    assert summary.resource == "refusals:access.instance.denied"
    assert summary.details["by_reason"] == {"manage_principals": 10}


def test_a_window_is_summed_once_whoever_sums_it(site: Instance, tmp_path: Path) -> None:
    """Summing claims the counters (deleted as they are read), so two processes summing the same
    closed window write one event, not two."""
    services = site.services
    for i in range(3):
        with pytest.raises(Unauthenticated):
            services.access.authenticate(f"apk_{i:08x}_{'z' * 43}", origin="192.0.2.1")
    other = build_services(services.settings, clock=site.clock)
    try:
        site.next_window()
        first = other.audit.sum_refusals()
        second = services.audit.sum_refusals()
    finally:
        other.close()
    assert len(first) == 1 and second == []
    assert [e.details["total"] for e in site.summaries()] == [3]
