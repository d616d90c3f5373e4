"""/licensing pages in a real headless Chromium: the public catalogue, an applicant applying and
reading the decision, two officers screening and approving, the licence page with its lifecycle,
a marked copy and the licensee's download; screenshots for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.licensing.world import MODEL, REFERENCE, SteppingClock, World, build_world
from tests.web.test_pages_browser import browser, page, shoot

__all__ = ["browser", "page"]

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Iterator[World]:
    clock = SteppingClock()
    services = build_services(settings.model_copy(update={"licensing_null_keys": 20}), clock=clock)
    init_instance(services)
    try:
        built = build_world(services, tmp_path, clock)
        for name in ("alan", "olive", "oscar"):
            services.access.set_password(SYSTEM, name, PASSWORD)
        yield built
    finally:
        services.close()


@pytest.fixture
def site(world: World) -> Iterator[str]:
    with running_server(create_app(world.services)) as url:
        yield url


def sign_in(page: Any, site: str, name: str, next_page: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{site}/login?next={next_page}")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_apply_screen_decide_license_and_download(site: str, page: Any, world: World) -> None:
    response = page.goto(site + "/licensing")  # the public: the SL3 version redacted, never named
    assert response.status == 200
    assert page.locator(f"[data-model='{REFERENCE}']").count() == 0 and page.locator("[data-redacted]").count() == 1
    assert MODEL not in page.content() and "SL3" in page.locator("[data-withheld]").inner_text()
    shoot(page, "licensing-public")

    sign_in(page, site, "alan", f"/licensing/apply?model={REFERENCE}")
    page.get_by_label("Intended use").fill("Clinical summarisation research")
    page.get_by_label("Fields of use (comma-separated)").fill("research, health")
    page.get_by_label("Territories (ISO codes, EU, EEA or WORLD; comma-separated)").fill("FR, DE")
    page.get_by_label("Funding offered per year").fill("120000")
    shoot(page, "licensing-apply")
    with page.expect_navigation():
        page.get_by_role("button", name="Submit application").click()
    assert page.locator("[data-status=submitted]").count() == 1
    application_url = page.url

    sign_in(page, site, "olive", application_url.removeprefix(site))
    for row in page.locator("tr[data-question]").all():
        question = row.get_attribute("data-question")
        with page.expect_navigation():
            page.locator(f"tr[data-question='{question}'] button").click()
    assert page.locator("tr[data-question] .badge.ok").count() == len(world.services.licensing.checklist())
    page.locator("#decide textarea[name=reasons]").fill("all checks passed")
    with page.expect_navigation():
        page.locator("#decide button").click()
    assert page.locator("[data-status=awaiting_second_approver]").count() == 1
    assert page.locator("#second").count() == 0  # the proposer cannot be the second approver
    shoot(page, "licensing-officer-screening")

    sign_in(page, site, "oscar", application_url.removeprefix(site))
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm approval").click()
    assert page.locator("[data-status=approved]").count() == 1
    with page.expect_navigation():
        page.get_by_role("button", name="Draft the licence terms").click()
    assert page.locator("[data-state=draft]").count() == 1
    page.locator("#lifecycle select").select_option("activate")
    with page.expect_navigation():
        page.locator("#lifecycle button").click()
    assert page.locator("[data-state=active]").count() == 1
    world.unseal()
    with page.expect_navigation():
        page.get_by_role("button", name="Issue a marked copy").click()
    assert page.locator("tr[data-copy]").count() == 1
    licence_url = page.url
    shoot(page, "licensing-licence-officer")

    sign_in(page, site, "alan", licence_url.removeprefix(site))
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    saved = Path(info.value.path())
    assert saved.stat().st_size > 100_000 and info.value.suggested_filename.endswith("-acme.tar")
    shoot(page, "licensing-licence-licensee")
    page.goto(site + "/licensing")
    assert page.locator("tr[data-application] .badge").first.inner_text() == "approved"
    shoot(page, "licensing-applicant-home")


def test_a_refused_application_shows_the_problem(site: str, page: Any, world: World) -> None:
    sign_in(page, site, "alan", "/licensing/apply")
    page.get_by_label("Intended use").fill("x")
    page.get_by_label("Fields of use (comma-separated)").fill("research")
    page.get_by_label("Territories (ISO codes, EU, EEA or WORLD; comma-separated)").fill("France")
    with page.expect_navigation():
        page.get_by_role("button", name="Submit application").click()
    assert "territories must be ISO country codes" in page.locator(".error").inner_text()
    assert world.services.licensing.list_applications(SYSTEM) == []
    shoot(page, "licensing-refused")
