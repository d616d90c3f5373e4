"""The `desk` fixture: a running instance over the security tests' world (see tests/security/desk.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.security.desk import Desk, SteppingClock
from tests.security.world import build_world


@pytest.fixture
def desk(settings: Settings, tmp_path: Path) -> Iterator[Desk]:
    clock = SteppingClock()
    services = build_services(settings, clock=clock)
    try:
        admin = init_instance(services)
        world = build_world(services, tmp_path)
        with running_server(create_app(services)) as url:
            yield Desk(world, clock, url, {"Authorization": f"Bearer {admin.text}"})
    finally:
        services.close()
