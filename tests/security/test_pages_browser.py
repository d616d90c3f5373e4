"""/login, /security and /people in a real headless Chromium: sign in through the form, present an
unseal share, approve a grant, see the alerts and the people; screenshots for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aperture.access.domain import SYSTEM, Action
from aperture.bootstrap import Services
from aperture.core.errors import InvalidInput
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.security.world import World, build_world
from tests.web.test_pages_browser import browser, page, shoot

__all__ = ["browser", "page"]  # the shared Chromium fixtures, imported to be used here

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


@pytest.fixture
def world(services: Services, tmp_path: Path) -> World:
    built = build_world(services, tmp_path)
    for name in ("alice", "bob", "carol", "dave", "sam"):
        services.access.set_password(SYSTEM, name, PASSWORD)
    return built


@pytest.fixture
def site(world: World) -> Iterator[str]:
    with running_server(create_app(world.services)) as url:
        yield url


def sign_in(page: Any, site: str, name: str, password: str = PASSWORD, next_page: str = "/security") -> Any:
    page.goto(f"{site}/login?next={next_page}")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    return page


def test_sign_in_shows_the_security_page_and_a_custodian_presents_a_share(site: str, page: Any, world: World) -> None:
    response = page.goto(site + "/security")
    assert page.url.endswith("/login?next=/security") and response.status == 200
    assert page.get_by_role("navigation").get_by_role("link", name="Security").count() == 0
    shoot(page, "login")
    sign_in(page, site, "carol")
    assert page.url.endswith("/security")
    assert page.locator("[data-me]").inner_text() == "carol"
    assert page.locator("[data-seal=sealed]").count() == 1
    assert "0 of 2 shares presented" in page.locator(".cards").inner_text()
    page.get_by_label("Your unseal share").fill(world.shares["carol"])
    with page.expect_navigation():
        page.get_by_role("button", name="Present share").click()
    assert "1 of 2 shares presented" in page.locator(".cards").inner_text()
    shoot(page, "security-custodian")
    # A share that is not carol's: refused on an error page, nothing presented.
    page.goto(site + "/security")
    page.get_by_label("Your unseal share").fill(world.shares["dave"])
    with page.expect_navigation():
        page.get_by_role("button", name="Present share").click()
    assert "not carol's share" in page.locator(".error").inner_text()
    assert world.services.security.seal_status(SYSTEM).presented == 1
    assert page.locator("[data-me]").inner_text() == "carol"  # still signed in on the error page
    assert page.locator(".error code").inner_text() == "aperture seal init"
    shoot(page, "security-wrong-share")
    with page.expect_navigation():
        page.get_by_role("link", name="Back to the page").click()
    assert page.url.endswith("/security")
    page.goto(site + "/security")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert page.locator("[data-me]").count() == 0
    page.goto(site + "/security")
    assert page.url.endswith("/login?next=/security")


def test_a_wrong_password_is_refused_on_the_form(site: str, page: Any) -> None:
    sign_in(page, site, "alice", "not the password at all")
    assert page.locator("[role=alert]").inner_text() == "the name or password is wrong, or the account is locked"
    assert page.locator("[data-me]").count() == 0
    shoot(page, "login-refused")


def test_a_second_person_approves_a_grant_and_the_desk_sees_alerts_and_people(
    site: str, page: Any, browser: Any, world: World
) -> None:
    services = world.services
    grant = services.security.request_grant(
        world.caller("alice"), "frontier-7b:1.0", Action.DOWNLOAD, reason="red-team evaluation", hours=4
    )
    # alice sees her own request with no approve button for herself.
    sign_in(page, site, "alice")
    row = page.locator(f"[data-grant='{grant.id}']")
    assert "pending" in row.inner_text() and row.get_by_role("button", name="Approve").count() == 0
    assert page.get_by_role("navigation").get_by_role("link", name="People").count() == 0
    assert page.goto(site + "/people").status == 403
    # bob, a programme director, approves it through the form.
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        bob = other.new_page()
        sign_in(bob, site, "bob")
        bob_row = bob.locator(f"[data-grant='{grant.id}']")
        assert "frontier-7b:1.0" in bob_row.inner_text()
        with bob.expect_navigation():
            bob_row.get_by_role("button", name="Approve").click()
        assert "approved" in bob.locator(f"[data-grant='{grant.id}']").inner_text()
        shoot(bob, "security-approved")
    finally:
        other.close()
    assert services.security.get_grant(world.caller("alice"), grant.id).state == "approved"
    # sam, the security officer, sees the alert and the people.
    with pytest.raises(InvalidInput):  # a wrong share: refused, and an alert for the desk
        services.security.present_share(world.caller("carol"), world.shares["dave"])
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        sam = desk.new_page()
        sign_in(sam, site, "sam")
        alert = sam.locator("[data-alert=bad_unseal_share]")
        assert alert.count() == 1 and "high" in alert.inner_text() and "192.0.2.7" in alert.inner_text()
        shoot(sam, "security-desk")
        with sam.expect_navigation():
            alert.get_by_role("button", name="Acknowledge").click()
        assert "seen by sam" in sam.locator("[data-alert=bad_unseal_share]").inner_text()
        sam.get_by_role("navigation").get_by_role("link", name="People").click()
        sam.wait_for_url("**/people")
        assert sam.locator("[data-principal=quinn]").count() == 1
        assert "East Co" in sam.locator("body").inner_text()
        shoot(sam, "people")
    finally:
        desk.close()


def test_a_person_issues_their_own_key_on_the_account_page(site: str, page: Any, world: World) -> None:
    sign_in(page, site, "bob", next_page="/account")
    assert page.url.endswith("/account")
    assert page.locator("[data-me]").inner_text() == "bob"
    page.get_by_label("What it is for").fill("laptop")
    page.get_by_label("Limit it to these actions").fill("view")
    with page.expect_navigation():
        page.get_by_role("button", name="Issue a key for myself").click()
    key_id = page.locator("[data-issued]").get_attribute("data-issued")
    text = page.locator("code.secret").inner_text()
    assert text.startswith(f"apk_{key_id}_")
    row = page.locator(f"[data-key='{key_id}']")
    assert "laptop" in row.inner_text() and "view" in row.inner_text() and "you" in row.inner_text()
    shoot(page, "account-key-issued")
    caller = world.services.access.authenticate(text)
    assert caller.principal == "bob" and caller.scopes == ("view",) and caller.issued_by == ()
    page.goto(site + "/account")
    assert page.locator("code.secret").count() == 0  # shown once
