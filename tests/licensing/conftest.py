from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from tests.licensing.world import SteppingClock, World, build_world


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Iterator[World]:
    clock = SteppingClock()
    services = build_services(settings.model_copy(update={"licensing_null_keys": 50}), clock=clock)
    init_instance(services)
    try:
        yield build_world(services, tmp_path, clock)
    finally:
        services.close()
