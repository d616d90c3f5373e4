"""The pages in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aperture.access.domain import SYSTEM
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance
from tests.registry.builders import write_hf_directory

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, and this network refuses it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".pytest_cache" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian chromium is needed for the browser tests: `make browser` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def site(instance: Instance, tmp_path: Path) -> Iterator[str]:
    registry = instance.services.registry
    registry.register(SYSTEM, write_hf_directory(tmp_path / "base"), "tiny-base", "1.0", licence="Apache-2.0")
    registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "tuned", sharded=True),
        "tiny-chat",
        "2.0",
        licence="Apache-2.0",
        base_model="tiny-base:1.0",
        training_flop="2e25",
        modalities=["text"],
        description="A fine-tuned tiny model <b>with markup that must stay text</b>.",
    )
    instance.services.audit.issue_tree_head()
    with running_server(create_app(instance.services)) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of" not in m.text else None)

    def failed_resource(response: Any) -> None:
        # The document's own status is asserted by each test; its stylesheet, icon and scripts must load.
        if response.status >= 400 and response.request.resource_type != "document":
            errors.append(f"{response.status} {response.url}")

    page.on("response", failed_resource)
    yield page
    context.close()
    assert errors == [], f"the page logged errors: {errors}"


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_home_shows_counts_models_and_latest_events(site: str, page: Any) -> None:
    response = page.goto(site + "/")
    assert response.status == 200
    assert page.locator("[data-figure=models]").inner_text() == "2"
    assert page.locator("[data-figure=versions]").inner_text() == "2"
    assert int(page.locator("[data-figure=tree-head]").inner_text()) >= 4
    assert page.get_by_role("link", name="tiny-chat").count() == 1
    assert page.locator("table.events code", has_text="registry.version.registered").count() == 2
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 248, 250)"
    shoot(page, "home")


def test_navigation_from_models_to_a_version_and_its_base(site: str, page: Any) -> None:
    page.goto(site + "/")
    page.get_by_role("navigation").get_by_role("link", name="Models").click()
    page.wait_for_url("**/models")
    page.get_by_role("link", name="tiny-chat").click()
    page.wait_for_url("**/models/tiny-chat")
    assert page.locator("h1").inner_text() == "tiny-chat"
    page.get_by_role("link", name="2.0", exact=True).click()
    page.wait_for_url("**/models/tiny-chat/versions/2.0")
    facts = page.locator("dl.facts").first.inner_text()
    assert "LlamaForCausalLM" in facts
    assert "presumed systemic risk" in facts
    # Declared text is escaped, never interpreted as markup.
    assert page.locator("p.lead").inner_text().endswith("<b>with markup that must stay text</b>.")
    assert page.locator("p.lead b").count() == 0
    assert page.locator("td.mono", has_text="model-00002-of-00002.safetensors").count() == 1
    shoot(page, "version")
    page.get_by_role("link", name="tiny-base:1.0").click()
    page.wait_for_url("**/models/tiny-base/versions/1.0")


def test_audit_log_links_each_event_to_a_verified_inclusion_proof(site: str, page: Any) -> None:
    page.goto(site + "/audit")
    assert page.locator("h1").inner_text() == "Transparency log"
    page.locator("table.events a", has_text="inclusion proof").first.click()
    page.wait_for_url("**/audit/events/*")
    assert page.locator("[data-proof=signed]").count() == 1
    shoot(page, "event")
    bundle = page.request.get(site + page.get_by_role("link", name="JSON").get_attribute("href")).json()
    assert bundle["type"].startswith("aperture")
    assert bundle["tree_head"] is not None


def test_an_event_after_the_latest_tree_head_is_proved_against_the_current_tree(
    site: str, page: Any, instance: Instance
) -> None:
    issued = instance.services.access.issue_key(SYSTEM, name="late", principal="late", roles=())
    newest = instance.services.audit.tree_size() - 1
    page.goto(f"{site}/audit/events/{newest}")
    assert page.locator("[data-proof=unsigned]").count() == 1
    assert issued.key.key_id in page.locator("dl.facts").first.inner_text()


def test_unknown_pages_render_a_helpful_error(site: str, page: Any) -> None:
    response = page.goto(site + "/models/no-such-model")
    assert response.status == 404
    assert "no model named 'no-such-model'" in page.locator(".error").inner_text()
    assert "aperture models list" in page.locator(".error").inner_text()
