"""Tiers: their order and controls, and the tier a version is released under."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM, SecurityLevel
from aperture.bootstrap import Services
from aperture.release.domain import CONTROLS, TIERS, Tier, controls
from aperture.testing.release import put_tier
from tests.registry.builders import write_safetensors


def test_tiers_are_ordered_most_open_first() -> None:
    assert [t.value for t in TIERS] == ["open", "licensed", "hosted", "secured"]
    assert Tier.OPEN.more_open_than(Tier.LICENSED)
    assert Tier.HOSTED.more_open_than(Tier.SECURED)
    assert not Tier.SECURED.more_open_than(Tier.HOSTED)


def test_controls_follow_the_tier() -> None:
    assert set(CONTROLS) == set(TIERS)
    assert controls(Tier.OPEN).weights_leave_institution and not controls(Tier.OPEN).reversible
    assert not controls(Tier.HOSTED).weights_leave_institution and controls(Tier.HOSTED).gateway_may_serve
    assert not controls(Tier.SECURED).gateway_may_serve
    assert controls(Tier.SECURED).minimum_security_level is SecurityLevel.SL4
    assert controls(Tier.LICENSED).minimum_security_level >= SecurityLevel.SL2


def test_parse_names_the_choices() -> None:
    assert Tier.parse(" Hosted ") is Tier.HOSTED
    with pytest.raises(ValueError, match="open, licensed, hosted, secured"):
        Tier.parse("public")


def test_no_tier_until_a_decision_takes_effect(services: Services, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_safetensors(tmp_path / "m.safetensors"), "small", "1.0")
    assert services.release.tier_of("small", "1.0") is None
    put_tier(services, "small", "1.0", Tier.HOSTED)
    assert services.release.tier_of("small", "1.0") is Tier.HOSTED
    put_tier(services, "small", "1.0", Tier.OPEN)
    assert services.release.tier_of("small", "1.0") is Tier.OPEN
    actions = [event.action for event in services.audit.list_events(limit=10)]
    assert actions.count("release.take_effect") == 2
