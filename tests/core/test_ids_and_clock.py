"""Sortable ids and the canonical timestamp text that goes into hashed records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aperture.core.clock import isoformat
from aperture.core.ids import new_id


def test_ids_are_uuid7_with_the_rfc_variant_and_sort_by_time() -> None:
    ids = [new_id(now_ms=ms) for ms in (1, 2, 1_700_000_000_000, 2**48 - 1)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    assert ids == sorted(ids)
    assert int(ids[2].replace("-", "")[:12], 16) == 1_700_000_000_000


def test_ids_are_unique() -> None:
    assert len({new_id(now_ms=5) for _ in range(10_000)}) == 10_000


# Years below 1000: glibc's strftime does not pad %Y; isoformat writes four digits, as ISO 8601 does.
@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_isoformat_matches_strftime(moment: datetime) -> None:
    assert isoformat(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_isoformat_pads_early_years() -> None:
    assert isoformat(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000000Z"


def test_isoformat_converts_to_utc_and_refuses_naive_times() -> None:
    cet = timezone(timedelta(hours=1))
    assert isoformat(datetime(2026, 1, 1, 1, 0, 0, 5, tzinfo=cet)) == "2026-01-01T00:00:00.000005Z"
    with pytest.raises(ValueError, match="naive"):
        isoformat(datetime(2026, 1, 1))
