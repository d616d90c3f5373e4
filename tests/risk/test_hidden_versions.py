"""Risk's part of defect 3 of issue 14, through the real server: assessment-run errors named the
model (an existence oracle). A run of a version the caller may not see now reads exactly like a
run that does not exist, and risk events on upper-tier versions name them by opaque id only."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.core.errors import NotFound
from aperture.risk import store
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.security.world import World, build_world


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    return build_world(services, tmp_path)


@pytest.fixture
def api(services: Services, world: World) -> Iterator[httpx.Client]:
    with running_server(create_app(services)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _key(services: Services, name: str) -> dict[str, str]:
    roles = services.access.get_principal(name).roles
    return {"Authorization": f"Bearer {services.access.issue_key(SYSTEM, name='k', principal=name, roles=roles).text}"}


def _run_on(services: Services, world: World) -> str:
    """An interrupted run on the SL4 version (as a remote-engine run would leave one)."""
    run_id = secrets.token_hex(8)
    inputs = {"suite": "wmdp-bio", "model": world.sealed.reference, "model_digest": world.sealed.manifest_digest}
    with services.database.transaction() as connection:
        store.insert_run(connection, run_id, world.sealed.id, "wmdp-bio", services.clock.now(), "alice", inputs, 8)
    return run_id


def test_a_run_on_a_version_the_caller_may_not_see_reads_as_no_run(
    services: Services, world: World, api: httpx.Client
) -> None:
    run_id, absent = _run_on(services, world), secrets.token_hex(8)
    lena = _key(services, "lena")  # a researcher (an assessor role), SL2: not cleared for the SL4 version
    hidden = api.get(f"/api/v1/assessment/runs/{run_id}", headers=lena)
    missing = api.get(f"/api/v1/assessment/runs/{absent}", headers=lena)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace(run_id, "RUN") == missing.text.replace(absent, "RUN")
    assert "frontier-7b" not in hidden.text
    for caller in (world.caller("lena"), world.caller("nora")):
        with pytest.raises(NotFound) as hidden_error:
            services.risk.resume(caller, run_id)
        with pytest.raises(NotFound) as missing_error:
            services.risk.resume(caller, absent)
        assert hidden_error.value.message.replace(run_id, "RUN") == missing_error.value.message.replace(absent, "RUN")
        assert hidden_error.value.hint == missing_error.value.hint
        with pytest.raises(NotFound) as details_error:
            services.risk.run_details(caller, run_id)
        assert "frontier-7b" not in str(details_error.value.to_dict())
    assert services.risk.runs(world.caller("lena")) == []
    assert [run["id"] for run in services.risk.runs(world.caller("alice"))] == [run_id]
    cleared = api.get(f"/api/v1/assessment/runs/{run_id}", headers=_key(services, "alice"))
    assert cleared.status_code == 200 and cleared.json()["inputs"]["model"] == "frontier-7b:1.0"


def test_risk_events_on_an_upper_tier_version_name_it_by_opaque_id_only(
    services: Services, world: World, api: httpx.Client
) -> None:
    alice = _key(services, "alice")
    form = {"title": "uplift study TITLE-4417", "author": "red team", "domain": "bio", "summary": "notable"}
    made = api.post("/api/v1/models/frontier-7b/versions/1.0/findings", headers=alice, data=form)
    assert made.status_code == 201, made.text
    public = api.get("/api/v1/audit/events", params={"limit": 500}).text
    assert "frontier-7b" not in public and "TITLE-4417" not in public
    (event,) = [e for e in services.audit.list_events(limit=500) if e.action == "risk.finding.attached"]
    assert event.resource == f"asset:model_version:{world.sealed.id}"
    # The stored event keeps the title for the private view (cleared readers); the public view
    # above withholds it behind the event's upper-tier commitment.
    assert event.details["title"] == "uplift study TITLE-4417"
