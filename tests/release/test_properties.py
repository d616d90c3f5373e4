"""Properties of `decide`: monotone in hazard, deterministic, fail-closed on missing evidence."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.release.domain import TIERS, Tier
from aperture.release.policy import EvidenceItem, Level, decide
from tests.release.scenarios import (
    LARGE,
    SMALL,
    default_policy,
    finding,
    jailbreak,
    knowledge,
    profile,
    refusal,
    tamper,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
POLICY = default_policy()
N = 200


@st.composite
def hazards(draw: st.DrawFn) -> dict[str, object]:
    return {
        "bio": draw(st.integers(0, N)),
        "chem": draw(st.integers(0, N)),
        "cyber-offence": draw(st.integers(0, N)),
        "refused": draw(st.integers(0, N)),
        "broken_by_jailbreak": draw(st.integers(0, N)),
        "tamper_broken": draw(st.sampled_from([None, False, True])),
        "finding": draw(st.sampled_from([None, *Level])),
        "large": draw(st.booleans()),
    }


def items_for(h: dict[str, object], drop: frozenset[str] = frozenset()) -> list[EvidenceItem]:
    correct = {d: int(h[d]) for d in ("bio", "chem", "cyber-offence") if d not in drop}  # type: ignore[call-overload]
    items = knowledge(correct, N)
    if "refusal" not in drop:
        items.append(refusal(int(h["refused"]), N))  # type: ignore[call-overload]
    if "jailbreak-robustness" not in drop:
        items.append(jailbreak(int(h["broken_by_jailbreak"]), N))  # type: ignore[call-overload]
    if h["tamper_broken"] is not None and "tamper-resistance" not in drop:
        items.append(tamper(bool(h["tamper_broken"])))
    if h["finding"] is not None:
        items.append(finding("bio", h["finding"]))  # type: ignore[arg-type]
    return items


def worse(h: dict[str, object], step: int) -> dict[str, object]:
    """The same model with more hazardous evidence: more knowledge, fewer refusals, more breaks."""
    out = dict(h)
    for key in ("bio", "chem", "cyber-offence", "broken_by_jailbreak"):
        out[key] = min(N, int(h[key]) + step)  # type: ignore[call-overload]
    out["refused"] = max(0, int(h["refused"]) - step)  # type: ignore[call-overload]
    if h["tamper_broken"] is False:
        out["tamper_broken"] = True
    if h["finding"] is not None:
        out["finding"] = Level(min(Level.CRITICAL, h["finding"] + 1))  # type: ignore[operator]
    return out


@settings(max_examples=300, deadline=None)
@given(hazards(), st.integers(0, N))
def test_more_hazardous_evidence_never_opens_a_model(h: dict[str, object], step: int) -> None:
    facts = LARGE if h["large"] else SMALL
    before = decide(profile(*items_for(h)), facts, POLICY, NOW)
    after = decide(profile(*items_for(worse(h, step))), facts, POLICY, NOW)
    assert after.tier.openness <= before.tier.openness, (before.summary(), after.summary())


@settings(max_examples=100, deadline=None)
@given(hazards())
def test_decisions_are_deterministic(h: dict[str, object]) -> None:
    facts = LARGE if h["large"] else SMALL
    first = decide(profile(*items_for(h)), facts, POLICY, NOW).to_dict()
    assert first == decide(profile(*items_for(h)), facts, POLICY, NOW).to_dict()


SUBJECTS = ("bio", "chem", "cyber-offence", "refusal", "jailbreak-robustness", "tamper-resistance")


@settings(max_examples=300, deadline=None)
@given(hazards(), st.frozensets(st.sampled_from(SUBJECTS), min_size=1))
def test_missing_evidence_fails_closed(h: dict[str, object], drop: frozenset[str]) -> None:
    facts = LARGE if h["large"] else SMALL
    decision = decide(profile(*items_for(h, drop)), facts, POLICY, NOW)
    present = {item.subject for item in items_for(h, drop)}
    for rule in POLICY.rules_of("requires_evidence"):
        waived = any(r.rule == rule.id and r.outcome == "not-applicable" for r in decision.results)
        if waived or all(s in present for s in rule.subjects):
            continue
        for tier in rule.tiers:
            assert not decision.allowed[tier.value], f"{tier} allowed without {rule.subjects}"
            assert any(f"evidence for {s}" in decision.missing for s in rule.subjects if s not in present)
    # A knowledge domain with no evidence at all: nothing but the secured floor.
    if {"bio", "chem", "cyber-offence"} - present:
        assert decision.tier is Tier.SECURED
    assert decision.tier in TIERS
