"""A release instance whose clock the tests move (cooling-off periods, stage dates)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from tests.release.world import Board, build_board


class SteppingClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def board(settings: Settings, clock: SteppingClock, tmp_path: Path) -> Iterator[Board]:
    services = build_services(settings, clock=clock)
    init_instance(services)
    try:
        yield build_board(services, tmp_path)
    finally:
        services.close()
