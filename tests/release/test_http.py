"""The release API against the real app on a loopback port: keys, the board, the public registry,
reports in every format, and refusals as JSON errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.release.world import BOARD, Board

AT_CHANCE = {"bio": 0.25, "chem": 0.25, "cyber": 0.25}


@pytest.fixture
def site(board: Board) -> Iterator[str]:
    with running_server(create_app(board.services)) as url:
        yield url


def key(board: Board, name: str) -> dict[str, str]:
    roles = board.services.access.get_principal(name).roles
    issued = board.services.access.issue_key(SYSTEM, name=f"{name} key", principal=name, roles=roles)
    return {"Authorization": f"Bearer {issued.text}"}


def test_propose_vote_and_publish_over_http(site: str, board: Board) -> None:
    board.import_knowledge(AT_CHANCE)
    api = f"{site}/api/v1"
    hidden = httpx.get(f"{api}/models/small/versions/1.0/release-decision")
    assert hidden.status_code == 404  # SL2: not for the anonymous public
    decision = httpx.get(f"{api}/models/small/versions/1.0/release-decision", headers=key(board, "rita")).json()
    assert decision["tier"] == "open" and decision["policy"]["name"] == "aperture-default"
    body = {"model": "small:1.0", "tier": "hosted", "rationale": "hosted first", "stages": ["open@90:no incident"]}
    anonymous = httpx.post(f"{api}/release/proposals", json=body)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["hint"]
    created = httpx.post(f"{api}/release/proposals", json=body, headers=key(board, "dora"))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    outsider = httpx.post(
        f"{api}/release/proposals/{pid}/votes", json={"approve": True, "reason": "x"}, headers=key(board, "rita")
    )
    assert outsider.status_code == 403 and "not a member" in outsider.json()["error"]["message"]
    for name in BOARD[:2]:
        response = httpx.post(
            f"{api}/release/proposals/{pid}/votes",
            json={"approve": True, "reason": f"{name} agrees"},
            headers=key(board, name),
        )
        assert response.status_code == 200, response.text
    assert response.json()["status"] == "effective"
    empty = httpx.post(
        f"{api}/release/proposals/{pid}/votes", json={"approve": True, "reason": ""}, headers=key(board, "cy")
    )
    assert empty.status_code == 422

    registry = httpx.get(f"{api}/registry").json()
    [entry] = [e for e in registry if e["model"] == "small:1.0"]
    assert entry["tier"] == "hosted" and entry["decision"]["votes"][0]["reason"].endswith("agrees")
    timeline = httpx.get(f"{api}/models/small/versions/1.0/release-timeline", headers=key(board, "rita")).json()
    assert timeline["stages"][0]["tier"] == "open" and timeline["stages"][0]["state"] == "planned"

    markdown = httpx.get(f"{api}/registry/small/1.0/report.md")
    assert markdown.status_code == 200 and markdown.text.startswith("---\nlicense: apache-2.0")
    assert "## 7.3 Documentation of the assessment" in markdown.text
    as_json = httpx.get(f"{api}/registry/small/1.0/report.json").json()
    assert as_json["eu_model_documentation"]["general_information"]["model_authenticity"].startswith("sha256")
    html = httpx.get(f"{api}/registry/small/1.0/report.html")
    assert "text/html" in html.headers["content-type"] and "EU Model Documentation Form" in html.text
    bad = httpx.get(f"{api}/registry/small/1.0/report.docx")
    assert bad.status_code == 422 and "md, html, json, pdf" in bad.json()["error"]["hint"]


def test_policy_endpoints(site: str, board: Board) -> None:
    api = f"{site}/api/v1"
    policy = httpx.get(f"{api}/release/policy").json()
    assert policy["adopted"][0]["signature_valid"]
    broken = policy["text"].replace("type: level_cap", "type: level_capp")
    checked = httpx.post(f"{api}/release/policy/check", content=broken, headers={"Content-Type": "text/plain"})
    assert checked.status_code == 422 and "level_cap" in checked.json()["error"]["hint"]
    admin = board.services.access.issue_key(SYSTEM, name="admin", principal="admin2", roles=(Role.ADMINISTRATOR,))
    newer = policy["text"].replace("version: 1\n", "version: 2\n", 1)
    adopted = httpx.post(
        f"{api}/release/policy",
        json={"text": newer, "reason": "test"},
        headers={"Authorization": f"Bearer {admin.text}"},
    )
    assert adopted.status_code == 201 and adopted.json()["version"] == "2"


def test_pdf_report_is_a_pdf(site: str, board: Board, tmp_path: Path) -> None:
    board.import_knowledge(AT_CHANCE)
    response = httpx.get(f"{site}/api/v1/registry/small/1.0/report.pdf", timeout=90)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(response.content)
