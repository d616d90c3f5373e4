"""The risk profile page in real headless Chromium: charts render, numbers and gaps show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from aperture.risk.scoring import GenerationSettings
from aperture.risk.service import RunOptions
from aperture.risk.tamper import TamperRunner
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.risk.test_pages import Site
from tests.risk.test_pages import site as explained_site  # noqa: F401 (fixture)
from tests.web.test_pages_browser import browser, page, shoot  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


@pytest.fixture
def assessed_site(services: Services, tiny_version: ModelVersion) -> Iterator[str]:
    quick = GenerationSettings(max_new_tokens=4, time_limit_s=30)
    for suite, limit in (("wmdp-bio", 12), ("strongreject", 3), ("jailbreak", 1), ("xstest", 4)):
        services.risk.run_suite(SYSTEM, tiny_version.reference, suite, RunOptions(limit=limit, generation=quick))
    TamperRunner(services.risk).run(SYSTEM, tiny_version.reference, "quick", ["wmdp-bio"], limit=4, max_new_tokens=4)
    with running_server(create_app(services)) as url:
        yield url


def test_risk_profile_page_shows_charts_table_and_evidence(
    assessed_site: str,
    page: Any,  # noqa: F811
    tiny_version: ModelVersion,
) -> None:
    page.goto(f"{assessed_site}/models/{tiny_version.model_name}/versions/{tiny_version.version}")
    page.click("text=Risk profile →")
    assert page.url.endswith("/risk")
    assert page.locator("h1").inner_text() == f"Risk profile of {tiny_version.reference}"
    charts = page.locator("svg.chart")
    # knowledge vs chance, safeguards higher-is-worse and higher-is-better, jailbreak templates, tamper attacks
    assert charts.count() == 5
    assert page.locator("svg.chart").first.locator("text=chance 25%").count() == 1
    assert page.locator("text=any template (best attack)").count() == 1
    assert page.locator("table.policy-lines tbody tr").count() == 8  # the shipped policy's numeric lines
    rows = page.locator("table.subjects tbody tr")
    assert rows.count() == 11  # seven domains and four safeguards
    assert page.locator("text=no bundled suite: import an evaluation or attach an expert finding").count() >= 1
    assert page.locator("table.events tbody tr").count() == 5
    shoot(page, "risk-profile")
    page.click("text=v1")
    assert "profile_version=1" in page.url
    assert page.locator("table.events tbody tr").count() == 1


def test_the_explained_risk_page_reads_in_full_in_a_browser(
    explained_site: Site,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    """Every text of every chart lies inside its chart as Chromium lays it out; a screenshot to look at."""
    response = page.goto(f"{explained_site.url}/models/small-lm/versions/1.0/risk")
    assert response.status == 200
    assert page.locator("svg.chart").count() == 5
    assert page.locator("svg.chart text", has_text="n=11").count() >= 2
    outside = page.evaluate(
        """() => [...document.querySelectorAll("svg.chart")].flatMap(svg => {
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll("text")].filter(t => {
                const r = t.getBoundingClientRect();
                return r.left < box.left - 0.5 || r.right > box.right + 0.5;
            }).map(t => t.textContent);
        })"""
    )
    assert outside == []
    assert page.locator("svg.chart line.threshold").count() >= 4
    assert page.locator("text=What these numbers can and cannot show").count() == 1
    assert page.locator("p.jailbreak-count").inner_text().startswith("21 responses scored: 3 prompts × 7 templates")
    shoot(page, "risk-explained")
    page.screenshot(path="/tmp/riskpage.png", full_page=True)
