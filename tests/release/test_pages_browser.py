"""/registry, /registry/{name}/{version} and /release in a real headless Chromium: the public sees
tiers, reasons and dissent without signing in; a board member votes through the form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aperture.access.domain import SYSTEM
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.release.world import Board
from tests.security.test_pages_browser import sign_in
from tests.web.test_pages_browser import browser, page, shoot

__all__ = ["browser", "page"]

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(board: Board) -> Iterator[str]:
    for name in ("ada", "ben", "dora"):
        board.services.access.set_password(SYSTEM, name, PASSWORD)
    with running_server(create_app(board.services)) as url:
        yield url


def test_board_votes_in_the_browser_and_the_public_sees_the_decision(site: str, page: Any, board: Board) -> None:
    board.import_knowledge({"bio": 0.25, "chem": 0.25, "cyber": 0.25})
    release = board.services.release
    # The programme director proposes through the form: a staged plan, hosted now and open later.
    sign_in(page, site, "dora", next_page="/release")
    form = page.locator("[data-propose]")
    form.locator("select[name=tier]").select_option("hosted")
    form.get_by_label("Rationale").fill("Hosted first; open after review.")
    form.get_by_label("Later stages").fill("open@180:six months without serious incident")
    shoot(page, "release-propose")
    with page.expect_navigation():
        form.get_by_role("button", name="Propose").click()
    [listed] = release.proposals(SYSTEM)
    pid = listed["id"]
    assert release.proposal(SYSTEM, pid)["stages"][0]["tier"] == "open"
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    release.vote(board.caller("cy"), pid, False, "Open it now: the evidence is at chance.")

    sign_in(page, site, "ada", next_page="/release")
    assert page.url.endswith("/release")
    stale = page.context.new_page()  # the same form in a second tab, submitted after the vote below
    stale.goto(site + "/release")
    panel = page.locator(f"[data-proposal='{pid}']")
    assert "voting" in panel.locator("[data-status]").inner_text()
    panel.get_by_label("Reason").fill("Start with hosted access; revisit in six months.")
    with page.expect_navigation():
        panel.get_by_role("button", name="Approve").click()
    shoot(page, "release-board")
    assert "ada: approve" in page.locator(f"[data-proposal='{pid}']").inner_text()
    assert release.proposal(SYSTEM, pid)["votes"][-1]["member"] == "ada"
    assert page.locator(f"[data-proposal='{pid}'] form").count() == 0  # voted: no form any more
    # A second vote by ada through the stale form is refused on the error page; nothing changes.
    stale.locator(f"[data-proposal='{pid}']").get_by_label("Reason").fill("again")
    with stale.expect_navigation():
        stale.locator(f"[data-proposal='{pid}']").get_by_role("button", name="Reject").click()
    assert "already voted" in stale.locator(".error").inner_text()
    stale.close()
    assert len(release.proposal(SYSTEM, pid)["votes"]) == 2

    release.vote(board.caller("ben"), pid, True, "Agree with hosted first.")
    anonymous = page.context.browser.new_page()
    anonymous.goto(site + "/registry")
    row = anonymous.locator("[data-model='small:1.0']")
    assert "hosted" in row.inner_text() and "1" in row.locator("td").nth(4).inner_text()
    shoot(anonymous, "registry")
    anonymous.goto(site + "/registry/small/1.0")
    assert anonymous.locator("[data-tier]").inner_text() == "hosted"
    assert "Open it now" in anonymous.locator("[data-dissent]").inner_text()
    assert anonymous.locator("[data-levels] tr").count() >= 7
    shoot(anonymous, "release-page")
    anonymous.close()
