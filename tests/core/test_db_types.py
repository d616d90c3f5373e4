"""core.db.UtcDateTime: aware UTC moments back from every backend; naive writes refused."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select

from aperture.core.db import UtcDateTime


def test_utc_roundtrip(tmp_path):
    md = MetaData()
    t = Table("t", md, Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    e = create_engine(f"sqlite:///{tmp_path}/x.db")
    md.create_all(e)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with e.begin() as c:
        c.execute(insert(t).values(id=1, at=moment))
        got = c.execute(select(t.c.at)).scalar_one()
    assert got == moment and got.tzinfo is UTC
    with pytest.raises(Exception), e.begin() as c:
        c.execute(insert(t).values(id=2, at=datetime(2026, 1, 1)))
