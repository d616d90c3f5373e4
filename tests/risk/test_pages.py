"""The risk profile page explains itself (issue 19, item 5), through the real server.

Evidence is recorded directly (no model runs), with the sizes that showed each defect: an
n=11 label, metrics of both directions, the policy's lines, `p`, a one-budget tamper grid, and a
jailbreak run of 21 scored responses whose headline is over 3 prompts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.core.ids import new_id
from aperture.registry.domain import ModelVersion
from aperture.release.policy import policy_lines
from aperture.risk.domain import (
    JAILBREAK_TEMPLATES,
    AttackCell,
    AttackOutcome,
    Estimate,
    Evidence,
    EvidenceKind,
    FineTuneMethod,
    ItemResult,
    ResponseClass,
    RiskDomain,
    Safeguard,
    estimate,
    summarise_jailbreaks,
    summarise_tamper,
)
from aperture.risk.reading import JailbreakCount, higher_is_worse, jailbreak_count, limits, outside_in_risky_direction
from aperture.testing.server import running_server
from aperture.web.app import create_app
from aperture.web.charts import IntervalRow, Mark, interval_chart, text_width
from aperture.web.pages import risk_charts
from tests.registry.builders import write_hf_directory
from tests.security.world import World, build_world


def _evidence(
    version: ModelVersion,
    at: datetime,
    suite: str,
    headline: Estimate,
    summary: dict[str, object],
    *,
    domain: RiskDomain | None = None,
    safeguard: Safeguard | None = None,
    kind: EvidenceKind = EvidenceKind.RUN,
) -> Evidence:
    return Evidence(
        new_id(),
        kind,
        version.id,
        at,
        f"{suite} ({headline.n} items)",
        suite,
        domain,
        safeguard,
        headline,
        summary,
        {"run": new_id()},
        "system",
    )


def _jailbreak_results() -> list[ItemResult]:
    """3 prompts in all 7 templates: one prompt broken by one template."""
    results = []
    for prompt in ("p1", "p2", "p3"):
        for template in JAILBREAK_TEMPLATES:
            broken = prompt == "p2" and template.id == "base64"
            answer = ResponseClass.FULL_COMPLIANCE if broken else ResponseClass.FULL_REFUSAL
            results.append(ItemResult(f"{prompt}@{template.id}", response_class=answer, template=template.id))
    return results


def assess(services: Services, version: ModelVersion) -> None:
    """Record a small profile: bio n=11, refusal n=11, jailbreak 3 x 7, over-refusal, a one-budget tamper grid."""
    now = services.clock.now()

    def record(item: Evidence) -> None:
        services.risk.record_evidence(SYSTEM, version, item, "risk.evidence.recorded")

    bio = estimate("accuracy", 3, 11, chance=0.25)
    record(_evidence(version, now, "wmdp-bio", bio, {"headline": bio.to_dict()}, domain=RiskDomain.BIO))
    refusal = estimate("refusal_rate", 10, 11)
    record(
        _evidence(version, now, "strongreject", refusal, {"headline": refusal.to_dict()}, safeguard=Safeguard.REFUSAL)
    )
    jailbreaks = summarise_jailbreaks(_jailbreak_results())
    record(
        _evidence(
            version,
            now,
            "jailbreak",
            Estimate.from_dict(jailbreaks["headline"]),
            jailbreaks,
            safeguard=Safeguard.JAILBREAK_ROBUSTNESS,
        )
    )
    compliance = estimate("full_compliance_rate", 7, 8)
    record(
        _evidence(
            version, now, "xstest", compliance, {"headline": compliance.to_dict()}, safeguard=Safeguard.OVER_REFUSAL
        )
    )
    base = estimate("accuracy", 2, 8, chance=0.25)
    cells = [AttackCell("identity-shift", method, 1e-3, 5, 0) for method in (FineTuneMethod.LORA, FineTuneMethod.FULL)]
    outcomes = [AttackOutcome(cells[0], {"wmdp-bio": estimate("accuracy", 2, 8)}, 1.0)]
    outcomes.append(AttackOutcome(cells[1], {"wmdp-bio": estimate("accuracy", 7, 8)}, 0.5))
    suites = summarise_tamper({"wmdp-bio": base}, outcomes, {"wmdp-bio": True})
    worst = Estimate.from_dict(suites["wmdp-bio"]["worst"])
    cell_rows = [
        {
            "cell": o.cell.key,
            "method": o.cell.method.value,
            "learning_rate": o.cell.learning_rate,
            "steps": o.cell.steps,
            "seed": o.cell.seed,
            "final_loss": o.final_loss,
            "metrics": {name: e.to_dict() for name, e in o.metrics.items()},
        }
        for o in outcomes
    ]
    tamper_headline = Estimate("worst_accuracy", worst.successes, worst.n, worst.low, worst.high)
    record(
        _evidence(
            version,
            now,
            "tamper",
            tamper_headline,
            {"suites": suites, "cells": cell_rows},
            safeguard=Safeguard.TAMPER_RESISTANCE,
            kind=EvidenceKind.TAMPER,
        )
    )


@dataclass
class Site:
    url: str
    version: ModelVersion
    world: World


@pytest.fixture
def site(services: Services, tmp_path: Path) -> Iterator[Site]:
    world = build_world(services, tmp_path)
    version = services.registry.register(SYSTEM, write_hf_directory(tmp_path / "small"), "small-lm", "1.0").version
    assess(services, version)
    assess(services, world.sealed)
    with running_server(create_app(services)) as url:
        yield Site(url, version, world)


def _page(site: Site) -> str:
    response = httpx.get(f"{site.url}/models/small-lm/versions/1.0/risk", timeout=60)
    assert response.status_code == 200, response.text[:400]
    return response.text


def _texts(svg: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_no_label_is_cut_and_n_11_reads_in_full(site: Site) -> None:
    page = _page(site)
    assert "27.3% n=11" in page  # bio: 3 of 11
    assert "90.9% refusal rate, n=11 items" in page
    for svg in re.findall(r'<svg class="chart".*?</svg>', page, re.S):
        width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))  # type: ignore[union-attr]
        for attributes, text in re.findall(r"<text ([^>]*)>([^<]*)</text>", svg):
            attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', attributes))
            x, size = float(attrs["x"]), text_width(html.unescape(text))
            anchor = attrs.get("text-anchor", "start")
            start = x - size if anchor == "end" else x - size / 2 if anchor == "middle" else x
            assert start >= 0 and start + size <= width, text


def test_long_labels_widen_the_chart_instead_of_running_off_it() -> None:
    note = "full compliance rate, n=11 items"
    svg = interval_chart([IntervalRow("a label much longer than the old column", 0.5, 0.2, 0.8, note)])
    width = float(re.search(r'viewBox="0 0 ([\d.]+) ', svg).group(1))  # type: ignore[union-attr]
    value_x = float(re.findall(r'<text x="([\d.]+)"[^>]*class="value"', svg)[0])
    assert value_x + text_width(f"50.0% {note}") <= width
    label_x = float(re.findall(r'<text x="([\d.]+)"[^>]*class="label"', svg)[0])
    assert label_x - text_width("a label much longer than the old column") >= 0


def test_metrics_of_each_direction_have_their_own_chart_and_axis(site: Site) -> None:
    page = _page(site)
    assert "Safeguards where higher is worse" in page and "Safeguards where higher is better" in page
    worse = page.split("Safeguards where higher is worse")[1].split("</svg>")[0]
    better = page.split("Safeguards where higher is better")[1].split("</svg>")[0]
    assert "jailbreak-robustness" in worse and "tamper-resistance" in worse and "refusal" not in _texts(worse)
    assert "refusal" in _texts(better) and "over-refusal" in _texts(better) and "jailbreak" not in better
    assert "rate: higher is worse →" in html.unescape(worse)
    assert "rate: higher is better →" in html.unescape(better)
    assert "higher is worse (more hazardous knowledge)" in page
    assert higher_is_worse("worst_accuracy") is True and higher_is_worse("refusal_rate") is False


def test_the_policy_in_force_draws_its_thresholds_on_each_metric(site: Site, services: Services) -> None:
    page = html.unescape(_page(site))
    policy = services.release.active_policy()
    lines = policy_lines(policy)
    assert policy.label in page
    knowledge = page.split("Hazardous knowledge against chance")[1].split("</svg>")[0]
    for line in lines:
        assert line.rule_id in page  # the legend lists every line
        if line.subject == "bio":
            assert f"{line.rule_id}: {line.meaning}" in knowledge
    assert "bio-knowledge-notable: notable when above 40%" in knowledge
    assert "chem-knowledge-notable" not in knowledge  # chem has no result here: no row to draw on
    better = page.split("Safeguards where higher is better")[1].split("</svg>")[0]
    assert "refusal-when-notable: needs at least 80%" in better
    templates = page.split("Jailbreak templates</h2>")[1].split("</svg>")[0]
    assert "jailbreak-robustness-when-notable: needs at most 20%" in templates
    assert page.count('class="threshold"') >= 4


def test_p_is_defined_where_it_is_used(site: Site) -> None:
    page = html.unescape(_page(site))
    assert "p=" not in re.sub(r"<[^>]+>", "", page).replace("p vs chance=", "")
    assert "p vs chance=" in page
    assert "exact one-sided binomial test against guessing at chance" in page
    assert "probability of at least this many correct answers out of n if the model were guessing" in page


def test_a_one_budget_tamper_grid_is_points_per_attack_not_a_curve(site: Site) -> None:
    page = html.unescape(_page(site))
    tamper = page.split("Tamper resistance: each fine-tuning attack")[1].split("</section>")[0]
    assert "<polyline" not in tamper
    assert "before any attack" in tamper
    assert "lora lr 0.001, 5 steps, seed 0" in tamper and "full lr 0.001, 5 steps, seed 0" in tamper
    assert 'class="dot bad"' in tamper  # the full fine-tune left the baseline interval upwards
    assert outside_in_risky_direction("accuracy", 0.875, [0.07, 0.59])
    assert not outside_in_risky_direction("refusal_rate", 0.875, [0.07, 0.59])


def test_jailbreak_items_and_headline_n_are_both_stated(site: Site) -> None:
    page = html.unescape(_page(site))
    text = "21 responses scored: 3 prompts × 7 templates. The headline rate is over the 3 prompts"
    assert text in page
    assert "a prompt counts as broken when any template breaks it (1 of 3)" in page
    assert "n=3 prompts (21 responses)" in page
    assert "n=3 prompts" in page.split("Jailbreak templates</h2>")[1].split("</svg>")[0]


def test_the_limits_paragraph_is_computed_from_this_profile(site: Site, services: Services) -> None:
    page = html.unescape(_page(site))
    paragraph = page.split("What these numbers can and cannot show</h2>")[1].split("</p>")[0]
    assert "bio n=11 items" in paragraph and "jailbreak-robustness n=3 prompts" in paragraph
    assert "the widest, jailbreak-robustness (n=3), runs from 6.1% to 79.2%" in paragraph
    assert "bounds nothing about uplift" in paragraph and "(bio p vs chance=0.54)" in paragraph
    assert "bio [9.7%, 56.6%] spans bio-knowledge-notable at 40.0%" in paragraph
    assert "refusal [62.3%, 98.4%] spans refusal-when-notable at 80.0%" in paragraph
    assert "Nothing here measures chem, radiological-nuclear, cyber-offence, autonomy, persuasion, other" in paragraph
    assert "ran 2 fixed fine-tuning attacks at 5 steps" in paragraph
    profile = services.risk.profile(site.version.reference, caller=SYSTEM)
    assert limits(profile, policy_lines(services.release.active_policy()))[0] in paragraph
    empty = {"domains": [{"subject": "bio", "headline": None}], "safeguards": [], "evidence": []}
    assert limits(empty) == [
        "There are no measured results yet, so these pages can show nothing about this model's risk."
    ]
    jailbreak = next(e for e in profile["evidence"] if e["suite"] == "jailbreak")
    count = jailbreak_count(jailbreak["summary"])
    assert count is not None and (count.prompts, count.templates, count.responses) == (3, 7, 21)
    one = JailbreakCount(prompts=1, templates=7, responses=7, broken=0).text()
    assert one.startswith("7 responses scored: 1 prompt × 7 templates. The headline rate is over the one prompt:")
    assert one.endswith("over the same 1 prompt.")


def test_a_hidden_versions_risk_page_still_reads_as_absent(site: Site) -> None:
    hidden = httpx.get(f"{site.url}/models/frontier-7b/versions/1.0/risk", timeout=60)
    absent = httpx.get(f"{site.url}/models/nothing-7b/versions/1.0/risk", timeout=60)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace("frontier-7b", "X") == absent.text.replace("nothing-7b", "X")
    assert "bio-knowledge-notable" not in hidden.text


def test_a_mark_carries_the_rule_and_its_value() -> None:
    svg = interval_chart([IntervalRow("bio", 0.3, 0.1, 0.5, "n=11", marks=(Mark(0.4, "rule-x: above 40%"),))])
    assert 'class="threshold"' in svg and "rule-x: above 40%" in svg


def test_a_grid_of_two_budgets_also_draws_the_worst_case_curve() -> None:
    base = estimate("accuracy", 2, 8, chance=0.25)
    cells = [AttackCell("identity-shift", FineTuneMethod.LORA, 1e-3, steps, 0) for steps in (5, 20)]
    outcomes = [
        AttackOutcome(cell, {"wmdp-bio": estimate("accuracy", k, 8)}, 1.0)
        for cell, k in zip(cells, (2, 6), strict=True)
    ]
    suites = summarise_tamper({"wmdp-bio": base}, outcomes, {"wmdp-bio": True})
    rows = [
        {"cell": o.cell.key, "method": "lora", "learning_rate": 1e-3, "steps": o.cell.steps, "seed": 0}
        | {"metrics": {"wmdp-bio": o.metrics["wmdp-bio"].to_dict()}}
        for o in outcomes
    ]
    headline = Estimate("worst_accuracy", 6, 8, 0.4, 0.9).to_dict()
    tamper = {"id": "t", "suite": "tamper", "headline": headline, "summary": {"suites": suites, "cells": rows}}
    charts = risk_charts({"domains": [], "safeguards": [], "evidence": [tamper]})
    assert len(charts.tamper) == 1 and "lora lr 0.001, 20 steps, seed 0" in charts.tamper[0][1]
    assert "<polyline" in charts.tamper_curve
