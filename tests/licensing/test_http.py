"""Licensing over HTTP on a real server: the public catalogue, an application through screening and
two officers, a licence, a marked copy, a single-use download, a trace upload with a signed report,
revocation cutting the download, and bad input answered with a 4xx JSON error that changes nothing."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role, SecurityLevel, Vetting
from aperture.bootstrap import build_services, init_instance
from aperture.release.domain import Tier
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.licensing.world import REFERENCE, SteppingClock, World, board_decides, build_world, seat_the_board
from tests.release.world import Board


@dataclass
class Desk:
    world: World
    url: str

    def key(self, name: str) -> dict[str, str]:
        principal = self.world.services.access.get_principal(name)
        issued = self.world.services.access.issue_key(SYSTEM, name=f"{name}-key", principal=name, roles=principal.roles)
        return {"Authorization": f"Bearer {issued.text}"}

    def api(self, method: str, path: str, who: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1/licensing{path}", headers=who or {}, timeout=60, **kw)


@pytest.fixture
def desk(settings: Settings, tmp_path: Path) -> Iterator[Desk]:
    clock = SteppingClock()
    services = build_services(settings.model_copy(update={"licensing_null_keys": 20}), clock=clock)
    try:
        init_instance(services)
        world = build_world(services, tmp_path, clock)
        with running_server(create_app(services)) as url:
            yield Desk(world, url)
    finally:
        services.close()


def refused(response: httpx.Response, status: int, *words: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["message"] and error["hint"], error
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


APPLICATION = {
    "model": REFERENCE,
    "intended_use": "Evaluation of clinical summarisation",
    "fields_of_use": ["health"],
    "territories": ["FR"],
    "security_level": 3,
    "fee": "50000.00",
    "currency": "EUR",
    "schedule": "once",
    "term_months": 12,
}


def test_the_whole_licensing_flow_over_http(desk: Desk, tmp_path: Path) -> None:
    alan, olive, oscar = desk.key("alan"), desk.key("olive"), desk.key("oscar")
    catalogue = desk.api("GET", "/catalogue")  # public, no key: the SL3 version listed redacted
    [public] = catalogue.json()
    assert catalogue.status_code == 200 and public["redacted"] and "tiny-licensed" not in catalogue.text
    assert public["model"] == f"upper-tier model {desk.world.version.id[:8]}" and "SL3" in public["withheld"]
    [named] = desk.api("GET", "/catalogue", alan).json()  # a vetted applicant cleared for it sees its name
    assert named["model"] == "tiny-licensed" and not named["redacted"]
    assert "individually marked" in desk.api("GET", "/terms").json()["text"]

    refused(desk.api("POST", "/applications", json=APPLICATION), 401)
    refused(desk.api("POST", "/applications", alan, json={**APPLICATION, "fee": "12,5"}), 422, "not an amount")
    refused(desk.api("POST", "/applications", alan, json={**APPLICATION, "model": "nope:1"}), 404)
    response = desk.api("POST", "/applications", alan, json=APPLICATION)
    assert response.status_code == 201, response.text
    application = response.json()
    assert application["status"] == "submitted" and application["fee"] == "50,000.00 EUR"
    assert [a["id"] for a in desk.api("GET", "/applications?queue=true", olive).json()] == [application["id"]]
    assert desk.api("GET", "/applications", desk.key("bea")).json() == []

    path = f"/applications/{application['id']}"
    refused(desk.api("POST", f"{path}/screening", alan, json={"question": "identity", "answer": "pass"}), 403)
    for question in desk.api("GET", "/terms").json()["screening_questions"]:
        ok = desk.api("POST", f"{path}/screening", olive, json={"question": question["id"], "answer": "pass"})
        assert ok.status_code == 200, ok.text
    refused(desk.api("POST", f"{path}/decision", olive, json={"outcome": "maybe"}), 422, "unknown decision")
    assert desk.api("POST", f"{path}/decision", olive, json={"outcome": "approve"}).json()["status"] == (
        "awaiting_second_approver"
    )
    refused(desk.api("POST", f"{path}/second-approval", olive), 403, "another person")
    assert desk.api("POST", f"{path}/second-approval", oscar).json()["status"] == "approved"
    assert desk.api("GET", path, alan).json()["decided_by"] == ["olive", "oscar"]

    licence = desk.api("POST", "/licences", olive, json={"application_id": application["id"]}).json()
    assert licence["state"] == "draft" and licence["terms"]["minimum_security_level"] == "SL3"
    events = f"/licences/{licence['id']}/events"
    refused(desk.api("POST", events, olive, json={"event": "explode"}), 422, "unknown licence event")
    assert desk.api("POST", events, olive, json={"event": "activate"}).json()["state"] == "active"
    receivables = desk.api("GET", f"/licences/{licence['id']}/receivables", alan).json()
    assert [r["amount"] for r in receivables] == ["50,000.00 EUR"]

    desk.world.unseal()
    copy = desk.api("POST", f"/licences/{licence['id']}/copies", olive)
    assert copy.status_code == 201, copy.text
    copy_id = copy.json()["id"]
    token = desk.api("POST", f"/copies/{copy_id}/tokens", alan).json()
    got = httpx.get(f"{desk.url}{token['url']}", headers=alan, timeout=60)
    assert got.status_code == 200 and got.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(got.content)) as archive:
        weights = archive.extractfile("model.safetensors").read()  # type: ignore[union-attr]
    refused(httpx.get(f"{desk.url}{token['url']}", headers=alan, timeout=60), 404, "no usable download token")

    traced = desk.api("POST", "/traces", olive, files={"file": ("leak.safetensors", weights)})
    assert traced.status_code == 201, traced.text
    body = traced.json()
    assert [a["organisation"] for a in body["report"]["accused"]] == ["acme"] and len(body["signature"]) == 128
    assert desk.api("GET", f"/traces/{body['id']}", olive).json()["signature"] == body["signature"]
    refused(desk.api("POST", "/traces", alan, files={"file": ("leak.safetensors", weights)}), 403)
    refused(desk.api("POST", "/traces", olive, files={"file": ("notes.txt", b"hello")}), 422, "not a model")

    pending = desk.api("POST", f"/copies/{copy_id}/tokens", alan).json()
    revoked = desk.api("POST", events, olive, json={"event": "revoke", "reason": "leak traced to acme"})
    assert revoked.json()["state"] == "revoked"
    refused(httpx.get(f"{desk.url}{pending['url']}", headers=alan, timeout=60), 403, "revoked")
    refused(desk.api("POST", f"/copies/{copy_id}/tokens", alan), 403, "revoked")


def test_diffusion_over_http_needs_the_boards_decision_and_the_acknowledgement(desk: Desk) -> None:
    world = desk.world
    olive = desk.key("olive")
    body = {"model": REFERENCE, "target": "open", "decision_id": "board-9"}
    refused(desk.api("POST", "/diffusions", olive, json=body), 409, "ENDS TRACEABILITY")
    acknowledged = {**body, "acknowledge_end_of_traceability": True}
    refused(desk.api("POST", "/diffusions", olive, json=acknowledged), 404, "no release board decision board-9")

    seat_the_board(world)
    Board(world.services, world.version).import_knowledge({"bio": 0.25, "chem": 0.25, "cyber": 0.25})
    licensing_decision = str(board_decides(world, Tier.LICENSED, votes=2)["id"])
    partners = {"model": REFERENCE, "target": "partners", "decision_id": licensing_decision}
    assert desk.api("POST", "/diffusions", olive, json=partners).status_code == 201

    opening = {**acknowledged, "decision_id": str(board_decides(world, Tier.OPEN, votes=3)["id"])}
    refused(desk.api("POST", "/diffusions", olive, json=opening), 403, "carrying out a release decision")
    world.services.access.add_principal(  # an administrator cleared for the model (SL3, its programme)
        SYSTEM,
        "root",
        organisation="institute",
        roles=(Role.ADMINISTRATOR,),
        clearance=SecurityLevel.SL3,
        vetting=Vetting.SECURITY_CHECK,
        programmes=("frontier",),
    )
    root = desk.key("root")
    refused(desk.api("POST", "/diffusions", root, json=opening), 409, "cooling-off period runs until")
    world.clock.advance(timedelta(days=15))
    done = desk.api("POST", "/diffusions", root, json=opening)
    assert done.status_code == 201 and done.json()["target"] == "open", done.text
    assert desk.api("GET", "/catalogue").json() == []
