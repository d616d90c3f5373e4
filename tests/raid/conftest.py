"""A RAID instance whose clock the tests move (legal clocks, embargoes, leases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from tests.raid.world import SteppingClock, World, build_world


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def world(settings: Settings, clock: SteppingClock, tmp_path: Path) -> Iterator[World]:
    services = build_services(settings, clock=clock)
    init_instance(services)
    try:
        yield build_world(services, clock, tmp_path)
    finally:
        services.close()
