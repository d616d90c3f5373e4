"""The API docs in a real headless Chromium with every request off the loopback refused: Swagger UI
renders the operations from the assets this app serves, under the page's own CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance
from tests.web.test_pages_browser import browser, page, shoot

__all__ = ["browser", "page"]  # the shared Chromium fixtures, imported to be used here

pytestmark = pytest.mark.browser

PREVIEW = Path("/tmp/apidocs.png")


@pytest.fixture
def site(instance: Instance) -> Iterator[str]:
    with running_server(create_app(instance.services)) as url:
        yield url


@pytest.fixture
def offline(page: Any) -> Iterator[list[str]]:
    """The page, cut off from everything but 127.0.0.1; yields the requests it refused."""
    refused: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_loopback)
    yield refused
    assert refused == [], f"the docs tried to leave the instance: {refused}"


def test_swagger_ui_renders_the_operations_offline(site: str, page: Any, offline: list[str]) -> None:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(site + "/api/v1/docs")
    assert response.status == 200
    whoami = page.locator(".opblock.opblock-get", has=page.locator("[data-path='/api/v1/whoami']"))
    whoami.wait_for(state="visible", timeout=15_000)
    assert page.locator(".info .title").inner_text().startswith("Aperture")
    assert page.locator(".opblock").count() > 20
    page.screenshot(path=str(PREVIEW))  # the top of the page, as a person sees it
    whoami.locator(".opblock-summary").click()
    assert "Successful Response" in whoami.locator(".responses-table").inner_text()  # its answers show
    # Call an operation from the page: the request goes to this instance and its answer shows.
    healthz = page.locator(".opblock.opblock-get", has=page.locator("[data-path='/healthz']"))
    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    status = healthz.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=15_000)
    assert status.inner_text().split()[0] == "200"
    assert '"status": "ok"' in healthz.locator(".live-responses-table .microlight").first.inner_text()
    assert violations == []
    shoot(page, "apidocs")
    healthz.scroll_into_view_if_needed()
    page.screenshot(path=str(PREVIEW.with_name("apidocs-call.png")))  # the call and its answer, as seen
