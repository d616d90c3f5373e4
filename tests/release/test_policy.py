"""The default policy decides the seeds' scenarios the way the seeds would; bad policies are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aperture.core.errors import InvalidInput
from aperture.release.domain import Tier
from aperture.release.policy import Level, decide, diff_policies, parse_policy
from tests.release.scenarios import (
    DEFAULT_POLICY,
    LARGE,
    SMALL,
    at_chance,
    default_policy,
    finding,
    jailbreak,
    knowledge,
    other_domains,
    profile,
    refusal,
    tamper,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_default_policy_loads_and_every_rule_cites_a_source() -> None:
    policy = default_policy()
    assert policy.name == "aperture-default"
    assert all(rule.source for rule in policy.rules)


def test_small_specialised_model_at_chance_is_open() -> None:
    decision = decide(profile(*at_chance()), SMALL, default_policy(), NOW)
    assert decision.tier is Tier.OPEN
    assert {level.domain: level.to_dict()["level"] for level in decision.levels}["bio"] == "low"
    waived = [r for r in decision.results if r.rule == "other-domains-evidence"]
    assert waived[0].outcome == "not-applicable" and "small_model" in waived[0].reason
    assert not decision.obligations


def test_elevated_bio_evidence_is_not_open() -> None:
    items = [*knowledge({"bio": 320, "chem": 100, "cyber-offence": 100}), refusal(290), jailbreak(10), tamper(False)]
    decision = decide(profile(*items), SMALL, default_policy(), NOW)
    assert decision.tier is Tier.LICENSED
    assert not decision.allowed["open"]
    bio = next(level for level in decision.levels if level.domain == "bio")
    assert bio.level is Level.ELEVATED and "bio-knowledge-elevated" in bio.reason


def test_systemic_risk_compute_lists_the_obligations() -> None:
    items = [*at_chance(), *other_domains(), refusal(290), jailbreak(10), tamper(False)]
    decision = decide(profile(*items), LARGE, default_policy(), NOW)
    assert any("Art. 51(2)" in o for o in decision.obligations)
    assert any("Art. 52(1)" in o and "two weeks" in o for o in decision.obligations)
    assert any("53(2)" in o for o in decision.obligations)


def test_missing_tamper_evidence_is_named() -> None:
    items = [*knowledge({"bio": 260, "chem": 100, "cyber-offence": 100}), refusal(290), jailbreak(10)]
    decision = decide(profile(*items), SMALL, default_policy(), NOW)
    assert decision.tier is Tier.HOSTED
    assert "tamper-resistance results over the declared attack grid" in decision.missing
    assert decision.would_allow["open"] == ("tamper-resistance results over the declared attack grid",)
    assert "to be open, it needs: tamper-resistance results" in decision.summary()


def test_no_evidence_is_secured_with_what_is_missing() -> None:
    decision = decide(profile(), SMALL, default_policy(), NOW)
    assert decision.tier is Tier.SECURED
    assert {"evidence for bio", "evidence for chem", "evidence for cyber-offence"} <= set(decision.missing)


def test_large_models_need_the_other_domains_assessed() -> None:
    # Unassessed autonomy etc. count as notable for a large model (fail closed): safeguards needed too.
    decision = decide(profile(*at_chance()), LARGE, default_policy(), NOW)
    assert decision.tier is Tier.SECURED
    assert "evidence for autonomy" in decision.would_allow["open"]
    assert "refusal results (refusal_rate)" in decision.would_allow["hosted"]


def test_critical_finding_secures_the_model() -> None:
    items = [*at_chance(), finding("bio", Level.CRITICAL), refusal(290), jailbreak(10), tamper(False)]
    assert decide(profile(*items), SMALL, default_policy(), NOW).tier is Tier.SECURED


def test_marginal_risk_against_an_open_reference() -> None:
    # Notable on its own lines, but no more capable than open Zephyr-7B on bio: no marginal risk.
    items = knowledge({"bio": 500, "chem": 100, "cyber-offence": 100}, n=1000)
    decision = decide(profile(*items), SMALL, default_policy(), NOW)
    bio = next(level for level in decision.levels if level.domain == "bio")
    assert bio.level is Level.LOW and "Zephyr-7B-beta" in bio.reason and "bio-knowledge-notable" in bio.reason
    assert decision.tier is Tier.OPEN
    above = decide(
        profile(*knowledge({"bio": 700, "chem": 100, "cyber-offence": 100}, n=1000)), SMALL, default_policy(), NOW
    )
    assert next(level for level in above.levels if level.domain == "bio").level is Level.ELEVATED


def test_failed_safeguard_blocks_and_says_why() -> None:
    items = [*knowledge({"bio": 260, "chem": 100, "cyber-offence": 100}), refusal(100), jailbreak(10), tamper(False)]
    decision = decide(profile(*items), SMALL, default_policy(), NOW)
    assert decision.tier is Tier.SECURED
    failed = next(r for r in decision.results if r.rule == "refusal-when-notable")
    assert failed.outcome == "fail" and "at least 0.8" in failed.reason


def test_decision_is_replayable_json() -> None:
    items = [*at_chance(), refusal(290)]
    first = decide(profile(*items), SMALL, default_policy(), NOW).to_dict()
    assert first == decide(profile(*items), SMALL, default_policy(), NOW).to_dict()
    assert first["policy"]["digest"] == default_policy().digest


BAD = {
    "typo in a rule type": (
        "type: requires_safeguard\n",
        "type: requires_safegaurd\n",
        "did you mean 'requires_safeguard'",
    ),
    "unknown metric": ("metric: refusal_rate\n", "metric: refusal_ratio\n", "unknown metric 'refusal_ratio'"),
    "contradictory thresholds": ("above: 0.65\n", "above: 0.30\n", "contradictory thresholds for bio"),
    "contradictory caps": (
        "elevated: licensed, critical: secured",
        "elevated: licensed, critical: open",
        "contradictory caps",
    ),
    "unknown key": ("    at_least: 0.80\n", "    at_least: 0.80\n    atleast: 0.9\n", "unknown key 'atleast'"),
    "no source": ('    source: "WMDP-chem clearly above chance (25%)"\n', "", "does not say where it comes from"),
    "circular conditions": (
        "any_domain_notable: {any_domain_at_least: notable}",
        "any_domain_notable: {any_of: [loop_b]}\n  loop_b: {not: any_domain_notable}",
        "in a circle",
    ),
    "undefined condition": ("when: any_domain_notable\n", "when: any_domain_notible\n", "undefined condition"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_policies_are_refused_with_the_problem_named(case: str) -> None:
    old, new, message = BAD[case]
    text = DEFAULT_POLICY.read_text()
    assert old in text
    with pytest.raises(InvalidInput) as error:
        parse_policy(text.replace(old, new, 1), "edited.yaml")
    assert message in f"{error.value.message} {error.value.hint}"
    assert error.value.hint


def test_not_yaml_and_wrong_version_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid YAML"):
        parse_policy("rules: [unclosed", "x.yaml")
    with pytest.raises(InvalidInput, match="apiVersion"):
        parse_policy("apiVersion: v0\nname: x\nversion: 1\nrules: []\n", "x.yaml")


def test_diff_explains_what_changed() -> None:
    text = DEFAULT_POLICY.read_text()
    old = parse_policy(text)
    new = parse_policy(
        text.replace("version: 1\n", "version: 2\n", 1)
        .replace("at_least: 0.80", "at_least: 0.90", 1)
        .replace(
            "  - id: marginal-risk\n    type: marginal_risk\n    at_most: low\n",
            "  - id: marginal-risk\n    type: marginal_risk\n    at_most: notable\n",
            1,
        )
    )
    changes = [(c.kind, c.rule, c.detail) for c in diff_policies(old, new)]
    assert ("metadata", "version", "'1' -> '2'") in changes
    assert ("changed", "refusal-when-notable", "line: 0.8 -> 0.9") in changes
    assert ("changed", "marginal-risk", "at_most: low -> notable") in changes
    assert diff_policies(old, old) == []
