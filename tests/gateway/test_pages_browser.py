"""The usage page in a real headless Chromium: a person of the organisation sees its usage, priced,
and downloads it as CSV; a person of another organisation sees none of it."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from aperture.access.domain import SYSTEM, Role
from tests.gateway.conftest import World, add_organisation
from tests.security.test_pages_browser import sign_in
from tests.web.test_pages_browser import browser, page, shoot

__all__ = ["browser", "page"]

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


def test_an_organisations_usage_page(world: World, served: str, page: Any) -> None:
    services = world.services
    services.gateway.set_price(SYSTEM, world.model, 0.5, 1.5)
    api = openai.OpenAI(api_key=world.key, base_url=f"{served}/v1", max_retries=0)
    for _ in range(3):
        api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    add_organisation(services, "rival")
    services.access.add_principal(SYSTEM, "ada", organisation="acme", roles=(Role.API_CUSTOMER,))
    services.access.add_principal(SYSTEM, "eve", organisation="rival", roles=(Role.API_CUSTOMER,))
    for name in ("ada", "eve"):
        services.access.set_password(SYSTEM, name, PASSWORD)
    sign_in(page, served, "ada", PASSWORD, next_page="/gateway/usage")
    assert page.url.endswith("/gateway/usage")
    assert page.locator("h1").inner_text() == "Gateway usage of acme"
    row = page.locator("table.usage tbody tr").first.inner_text()
    assert world.key_id in row and world.model in row and "\t3\t" in row
    assert page.locator("table.usage-totals td").first.inner_text() == "3"
    shoot(page, "gateway-usage")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "usage.csv"
    page.goto(served + "/gateway/usage?organisation=rival")
    assert page.locator(".error").count() == 1  # only one's own organisation
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, "eve", PASSWORD, next_page="/gateway/usage")
    assert page.locator("table.usage").count() == 0 and "No usage" in page.content()
