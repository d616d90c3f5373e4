"""Release governance keeps the upper tier secret, through the real server: an SL3 version's
proposals, rationale, votes and the policy's reasoning reach only people cleared for it; board
members who are not cleared neither see nor decide its release; every error about it reads exactly
like one about something that does not exist; a `view`-scoped key does nothing else."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.access.domain import SYSTEM
from aperture.registry.domain import ModelVersion
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.release.world import BOARD, CLEARED_BOARD, Board, add_upper_tier

AT_CHANCE = {"bio": 0.25, "chem": 0.25, "cyber": 0.25}
PASSWORD = "correct horse battery staple"
RATIONALE = "the frontier checkpoint stays hosted: its cyber evidence is thin"


@pytest.fixture
def secret(board: Board, tmp_path: Path) -> ModelVersion:
    version = add_upper_tier(board, tmp_path)
    board.import_knowledge(AT_CHANCE, version=version)
    return version


@pytest.fixture
def site(board: Board, secret: ModelVersion) -> Iterator[str]:
    with running_server(create_app(board.services)) as url:
        yield url


def key(board: Board, name: str, *, scopes: list[str] | None = None) -> dict[str, str]:
    roles = board.services.access.get_principal(name).roles
    issued = board.services.access.issue_key(SYSTEM, name=f"{name} key", principal=name, roles=roles, scopes=scopes)
    return {"Authorization": f"Bearer {issued.text}"}


def signed_in(board: Board, site: str, name: str) -> httpx.Client:
    """A browser-like client with a session: the login form, its CSRF token and cookie."""
    board.services.access.set_password(SYSTEM, name, PASSWORD)
    client = httpx.Client(base_url=site, timeout=30)
    form = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    done = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf.group(1), "next": "/"})
    assert done.status_code == 303, done.text
    return client


def error(response: httpx.Response, *secrets: str) -> tuple[int, str, str]:
    """The status and the error's text, with the names of what was asked for blanked out."""
    assert response.status_code >= 400, response.text
    body: dict[str, Any] = response.json()["error"]
    message, hint = body["message"], body["hint"]
    for value in secrets:
        message, hint = message.replace(value, "X"), hint.replace(value, "X")
    return response.status_code, message, hint


def test_uncleared_people_neither_see_nor_decide_an_upper_tier_release(
    site: str, board: Board, secret: ModelVersion
) -> None:
    api = f"{site}/api/v1"
    body = {"model": secret.reference, "tier": "hosted", "rationale": RATIONALE}
    created = httpx.post(f"{api}/release/proposals", json=body, headers=key(board, "dirk"))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.json()["quorum"] == 2

    cleared = key(board, "zoe")
    assert [p["id"] for p in httpx.get(f"{api}/release/proposals", headers=cleared).json()] == [pid]
    assert httpx.get(f"{api}/release/proposals/{pid}", headers=cleared).json()["rationale"] == RATIONALE

    missing = str(uuid.uuid4())
    for name in ("ada", "rita"):  # an uncleared board member, a researcher: the proposal is absent
        headers = key(board, name)
        listed = httpx.get(f"{api}/release/proposals", headers=headers)
        assert listed.status_code == 200 and listed.json() == [] and secret.model_name not in listed.text
        shown = httpx.get(f"{api}/release/proposals/{pid}", headers=headers)
        absent = httpx.get(f"{api}/release/proposals/{missing}", headers=headers)
        assert error(shown, pid) == error(absent, missing) and error(shown)[0] == 404
        assert RATIONALE not in shown.text and secret.model_name not in shown.text

    # An uncleared board member's vote reads like a vote on a proposal that does not exist, and counts for nothing.
    ballot = {"approve": True, "reason": "looks fine to me"}
    voted = httpx.post(f"{api}/release/proposals/{pid}/votes", json=ballot, headers=key(board, BOARD[0]))
    nowhere = httpx.post(f"{api}/release/proposals/{missing}/votes", json=ballot, headers=key(board, BOARD[0]))
    assert error(voted, pid) == error(nowhere, missing) and voted.status_code == 404
    conflict = httpx.post(
        f"{api}/release/proposals/{pid}/conflicts", json={"reason": "x"}, headers=key(board, BOARD[1])
    )
    assert conflict.status_code == 404
    recorded = httpx.get(f"{api}/release/proposals/{pid}", headers=cleared).json()
    assert recorded["votes"] == [] and recorded["conflicts"] == []

    # The members cleared for it decide it (their quorum is reachable without the others).
    for name in CLEARED_BOARD[:2]:
        decided = httpx.post(
            f"{api}/release/proposals/{pid}/votes", json={"approve": True, "reason": "agreed"}, headers=key(board, name)
        )
        assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "effective"

    # An incident on it: the cleared see it due for re-assessment, the others see nothing due.
    incident = httpx.post(
        f"{api}/models/{secret.model_name}/versions/1.0/incidents", json={"reason": "a leak"}, headers=cleared
    )
    assert incident.status_code == 200, incident.text
    assert [d["model"] for d in httpx.get(f"{api}/release/due", headers=cleared).json()] == [secret.reference]
    hidden_due = httpx.get(f"{api}/release/due", headers=key(board, "ada"))
    assert hidden_due.json() == [] and secret.model_name not in hidden_due.text


def test_the_board_page_shows_an_upper_tier_proposal_only_to_the_cleared(
    site: str, board: Board, secret: ModelVersion
) -> None:
    proposal = board.services.release.propose(board.caller("dirk"), secret.reference, _hosted(), RATIONALE)
    uncleared = signed_in(board, site, BOARD[0])
    page = uncleared.get("/release")
    assert page.status_code == 200
    for withheld in (secret.model_name, RATIONALE, proposal["id"], "dirk"):
        assert withheld not in page.text
    assert "No proposals." in page.text
    cleared = signed_in(board, site, CLEARED_BOARD[0])
    page = cleared.get("/release")
    assert RATIONALE in page.text and f'action="/release/proposals/{proposal["id"]}/vote"' in page.text


def test_reports_of_an_upper_tier_version_read_like_a_missing_one(
    site: str, board: Board, secret: ModelVersion
) -> None:
    for fmt in ("md", "json", "html"):
        hidden = httpx.get(f"{site}/api/v1/registry/{secret.model_name}/1.0/report.{fmt}")
        absent = httpx.get(f"{site}/api/v1/registry/nothing-here/1.0/report.{fmt}")
        assert hidden.status_code == 404
        assert error(hidden, secret.reference) == error(absent, "nothing-here:1.0")
        assert "upper-tier" not in hidden.text and "upper tier" not in hidden.text
    page = httpx.get(f"{site}/registry/{secret.model_name}/1.0")
    assert page.status_code == 404 and "upper" not in page.text
    registry = httpx.get(f"{site}/api/v1/registry")
    assert secret.model_name not in registry.text and secret.manifest_digest not in registry.text
    assert [e["redacted"] for e in registry.json()].count(True) == 1


def test_a_view_scoped_key_does_nothing_else(site: str, board: Board, secret: ModelVersion) -> None:
    board.import_knowledge(AT_CHANCE)
    api = f"{site}/api/v1"
    proposal = board.services.release.propose(board.director, board.version.reference, _hosted(), "hosted")
    viewer = key(board, BOARD[0], scopes=["view"])
    refused = httpx.post(
        f"{api}/release/proposals/{proposal['id']}/votes", json={"approve": True, "reason": "x"}, headers=viewer
    )
    assert refused.status_code == 403 and "scopes" in refused.json()["error"]["message"]
    assert httpx.get(f"{api}/release/proposals", headers=viewer).json() == []
    director = key(board, "dora", scopes=["view"])
    body = {"model": board.version.reference, "tier": "hosted", "rationale": "again"}
    assert httpx.post(f"{api}/release/proposals", json=body, headers=director).status_code == 403
    recorded = httpx.get(f"{api}/release/proposals/{proposal['id']}", headers=key(board, "dora")).json()
    assert recorded["votes"] == []


def _hosted() -> Any:
    from aperture.release.domain import Tier

    return Tier.HOSTED
