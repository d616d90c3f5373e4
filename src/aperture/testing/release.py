"""Test support: put a model version under a tier without the board (other areas' tests need one)."""

from __future__ import annotations

from typing import Any

from aperture.release.domain import Tier


def put_tier(services: Any, name: str, version: str, tier: Tier | str) -> None:
    record = services.registry.get_version(name, version)
    services.release.take_effect(record, Tier(tier), "test-decision", actor="test")
