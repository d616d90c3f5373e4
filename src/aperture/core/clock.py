"""Time is UTC and injected: services take a Clock, tests pass a FrozenClock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """Canonical UTC timestamp text used in signed and hashed records: 2026-01-02T03:04:05.000006Z.

    Formatted by hand: strftime costs a third of an audit append's Python time.
    """
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no time zone; use datetime.now(UTC)")
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )
