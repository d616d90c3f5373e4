"""Licensing keeps the upper tier secret, through the real server. Licensed versions are stored at
SL3: the public catalogue lists them redacted, as the public registry does; an application for a
version the applicant may not see reads exactly like one for a version that does not exist; a
copy goes only to the licensee's people with the licensee role and the clearance, under a licence
in force; every licensing event about the version says it concerns the upper tier."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role, SecurityLevel, Vetting
from aperture.release.domain import Tier
from aperture.testing.release import put_tier
from tests.licensing.test_http import APPLICATION, Desk, desk
from tests.licensing.world import MODEL, REFERENCE, write_tiny_model

__all__ = ["desk"]


def person(desk: Desk, name: str, role: Role, clearance: SecurityLevel, *, programme: bool) -> dict[str, str]:
    vetting = {SecurityLevel.SL1: Vetting.NONE, SecurityLevel.SL2: Vetting.BASELINE}.get(clearance, Vetting.ENHANCED)
    desk.world.services.access.add_principal(
        SYSTEM,
        name,
        organisation="acme",
        clearance=clearance,
        vetting=vetting,
        roles=(role,),
        programmes=("frontier",) if programme else (),
    )
    return desk.key(name)


def error(response: httpx.Response, *names: str) -> tuple[int, str, str]:
    assert response.status_code >= 400, response.text
    body: dict[str, Any] = response.json()["error"]
    message, hint = body["message"], body["hint"]
    for name in names:
        message, hint = message.replace(name, "X"), hint.replace(name, "X")
    return response.status_code, message, hint


def test_applications_for_versions_one_may_not_see_read_like_missing_ones(desk: Desk, tmp_path: Path) -> None:
    services = desk.world.services
    source = write_tiny_model(tmp_path / "hidden")
    shutil.copy(source / "config.json", source / "notes.json")  # its own digest
    services.registry.register(
        SYSTEM, source, "hidden", "1.0", level=SecurityLevel.SL3, programme="frontier", training_flop="1e20"
    )
    put_tier(services, "hidden", "1.0", Tier.HOSTED)
    ulla = person(desk, "ulla", Role.LICENSEE, SecurityLevel.SL1, programme=False)  # acme, not cleared

    absent = desk.api("POST", "/applications", ulla, json={**APPLICATION, "model": "nothing:1.0"})
    for reference in (REFERENCE, "hidden:1.0"):  # licensed and hosted, both SL3
        answer = desk.api("POST", "/applications", ulla, json={**APPLICATION, "model": reference})
        name = reference.split(":")[0]
        assert error(answer, reference, name) == error(absent, "nothing:1.0", "nothing"), answer.text
        assert answer.status_code == 404 and "tier" not in answer.text
    assert services.licensing.list_applications(SYSTEM) == []
    # Someone cleared for the hosted version is told why it is not offered.
    cleared = desk.api("POST", "/applications", desk.key("alan"), json={**APPLICATION, "model": "hidden:1.0"})
    assert cleared.status_code == 409 and "hosted tier" in cleared.json()["error"]["message"]


def test_the_catalogue_agrees_with_the_registry_on_a_licensed_version(desk: Desk) -> None:
    public = desk.api("GET", "/catalogue")
    registry = httpx.get(f"{desk.url}/api/v1/registry")
    page = httpx.get(f"{desk.url}/licensing")
    for surface in (public, registry, page):
        assert surface.status_code == 200 and MODEL not in surface.text
    label = f"upper-tier model {desk.world.version.id[:8]}"
    assert [e["model"] for e in public.json()] == [label] == [e["model"] for e in registry.json()]
    assert public.json()[0]["active_licences"] is None and public.json()[0]["version"] is None
    assert [e["model"] for e in desk.api("GET", "/catalogue", desk.key("alan")).json()] == [MODEL]


def test_only_the_licensees_cleared_people_with_its_role_download_a_copy(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = desk.world.services
    logged: list[tuple[str, str, bool]] = []
    append, record = services.audit.append, services.audit.record

    def appended(connection: Any, **event: Any) -> Any:
        logged.append((event["action"], event["resource"], event.get("upper_tier", False)))
        return append(connection, **event)

    def recorded(**event: Any) -> Any:
        logged.append((event["action"], event["resource"], event.get("upper_tier", False)))
        return record(**event)

    monkeypatch.setattr(services.audit, "append", appended)
    monkeypatch.setattr(services.audit, "record", recorded)

    alan, olive, oscar = desk.key("alan"), desk.key("olive"), desk.key("oscar")
    application = desk.api("POST", "/applications", alan, json=APPLICATION).json()
    path = f"/applications/{application['id']}"
    for question in desk.api("GET", "/terms").json()["screening_questions"]:
        desk.api("POST", f"{path}/screening", olive, json={"question": question["id"], "answer": "pass"})
    desk.api("POST", f"{path}/decision", olive, json={"outcome": "approve"})
    assert desk.api("POST", f"{path}/second-approval", oscar).json()["status"] == "approved"
    licence = desk.api("POST", "/licences", olive, json={"application_id": application["id"]}).json()
    desk.api("POST", f"/licences/{licence['id']}/events", olive, json={"event": "activate"})
    desk.world.unseal()
    copy = desk.api("POST", f"/licences/{licence['id']}/copies", olive)
    assert copy.status_code == 201, copy.text
    copy_id = copy.json()["id"]

    pete = person(desk, "pete", Role.RESEARCHER, SecurityLevel.SL4, programme=True)  # acme, cleared, no role
    lena = person(desk, "lena", Role.LICENSEE, SecurityLevel.SL2, programme=False)  # acme, the role, not cleared
    no_role = desk.api("POST", f"/copies/{copy_id}/tokens", pete)
    assert no_role.status_code == 403 and "licensee role" in no_role.json()["error"]["message"]
    not_cleared = desk.api("POST", f"/copies/{copy_id}/tokens", lena)
    missing = str(uuid.uuid4())
    nowhere = desk.api("POST", f"/copies/{missing}/tokens", lena)
    assert error(not_cleared, copy_id) == error(nowhere, missing) and not_cleared.status_code == 404

    token = desk.api("POST", f"/copies/{copy_id}/tokens", alan)
    assert token.status_code == 201, token.text
    downgraded = desk.api("POST", f"/copies/{copy_id}/tokens", alan).json()
    got = httpx.get(f"{desk.url}{token.json()['url']}", headers=alan, timeout=60)
    assert got.status_code == 200 and got.headers["content-type"] == "application/x-tar"
    # The clearance is checked again when a token is used: lowered meanwhile, nothing comes.
    services.access.update_principal(SYSTEM, "alan", clearance=SecurityLevel.SL2, vetting=Vetting.BASELINE)
    late = httpx.get(f"{desk.url}{downgraded['url']}", headers=alan, timeout=60)
    assert late.status_code == 404 and late.headers["content-type"].startswith("application/json")

    about = [entry for entry in logged if entry[0].startswith("licensing.") and "master_secret" not in entry[0]]
    assert {action for action, _, _ in about} >= {
        "licensing.application.submitted",
        "licensing.application.approved",
        "licensing.licence.drafted",
        "licensing.licence.activate",
        "licensing.copy.issued",
        "licensing.token.issued",
        "licensing.copy.downloaded",
        "licensing.token.refused",
    }
    assert [entry for entry in about if not entry[2]] == [], "every event about the SL3 version is upper-tier"
    assert not [entry for entry in logged if MODEL in entry[1]], "no resource names the SL3 version"
