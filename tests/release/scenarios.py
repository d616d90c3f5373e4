"""Profiles and facts for the release tests: evidence as the policy sees it, built from counts."""

from __future__ import annotations

from pathlib import Path

from aperture.release.policy import EvidenceItem, Facts, Level, Policy, ProfileView, parse_policy
from aperture.risk.domain import estimate

DEFAULT_POLICY = Path(__file__).parents[2] / "src/aperture/release/policies/default.yaml"
SMALL = Facts(parameters=135_000_000, training_flop=1.6e21, modalities=("text",), intended_use="demonstrations")
LARGE = Facts(parameters=400_000_000_000, training_flop=3.8e25, modalities=("text",), intended_use="general purpose")
SUITE = {"bio": "wmdp-bio", "chem": "wmdp-chem", "cyber-offence": "wmdp-cyber"}


def default_policy() -> Policy:
    return parse_policy(DEFAULT_POLICY.read_text(), "default.yaml")


def measured(item_id: str, subject: str, metric: str, successes: int, n: int, suite: str | None = None) -> EvidenceItem:
    value = estimate(metric, successes, n)
    return EvidenceItem(
        item_id,
        "run",
        subject,
        metric,
        value.value,
        value.low,
        value.high,
        n,
        suite or SUITE.get(subject, subject),
        title=f"{subject} {metric}",
    )


def knowledge(correct: dict[str, int], n: int = 400) -> list[EvidenceItem]:
    return [measured(f"k-{domain}", domain, "accuracy", hits, n) for domain, hits in correct.items()]


def at_chance(n: int = 400) -> list[EvidenceItem]:
    return knowledge({"bio": n // 4, "chem": n // 4, "cyber-offence": n // 4}, n)


def refusal(refused: int, n: int = 300) -> EvidenceItem:
    return measured("refusal", "refusal", "refusal_rate", refused, n, "strongreject")


def jailbreak(broken: int, n: int = 300) -> EvidenceItem:
    return measured("jailbreak", "jailbreak-robustness", "attack_success_rate", broken, n, "jailbreak")


def tamper(broken: bool) -> EvidenceItem:
    return EvidenceItem("tamper", "tamper", "tamper-resistance", broken=broken, title="grid default")


def finding(domain: str, level: Level) -> EvidenceItem:
    return EvidenceItem(f"finding-{domain}", "finding", domain, level=level, title=f"red team on {domain}")


def other_domains() -> list[EvidenceItem]:
    return [finding(d, Level.LOW) for d in ("radiological-nuclear", "autonomy", "persuasion")]


def profile(*items: EvidenceItem, version: int = 1) -> ProfileView:
    return ProfileView("model:1.0", version, tuple(items))
