"""Metering: every request counted with the model's tokenizer, daily totals per key, organisation
and model, priced, exported as CSV and JSON; usage survives a crash through the write-ahead log."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM, Role
from aperture.bootstrap import build_services
from aperture.core.errors import Forbidden, InvalidInput
from aperture.gateway.domain import Price, UsageRecord, aggregate
from aperture.settings import Settings
from tests.gateway.conftest import World


def test_daily_totals_are_grouped_and_priced() -> None:
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    records = [
        UsageRecord("1", at, "k1", "acme", "m:1", 10, 5),
        UsageRecord("2", at, "k1", "acme", "m:1", 20, 0, blocked=True),
        UsageRecord("3", at, "k2", "acme", "m:1", 1, 1),
    ]
    rows = {r.key_id: r for r in aggregate(records, {"m:1": Price("m:1", 1.0, 2.0)})}
    assert (rows["k1"].requests, rows["k1"].blocked, rows["k1"].prompt_tokens, rows["k1"].completion_tokens) == (
        2,
        1,
        30,
        5,
    )
    assert rows["k1"].cost_eur == pytest.approx((30 * 1.0 + 5 * 2.0) / 1e6)


def test_usage_matches_what_clients_were_told_and_exports(world: World, served: str, instance_admin: str) -> None:
    gateway = world.services.gateway
    gateway.set_price(SYSTEM, world.model, 2.0, 6.0)
    api = openai.OpenAI(api_key=world.key, base_url=f"{served}/v1", max_retries=0)
    told = []
    for stream in (False, True):
        if stream:
            chunks = list(
                api.chat.completions.create(
                    model=world.model,
                    messages=[{"role": "user", "content": "Hello"}],
                    max_tokens=7,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            told.append(chunks[-1].usage)
        else:
            told.append(
                api.chat.completions.create(
                    model=world.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=9
                ).usage
            )
    rows = gateway.usage(SYSTEM)
    assert len(rows) == 1 and rows[0].requests == 2 and rows[0].organisation == "acme"
    assert rows[0].key_id == world.key_id and rows[0].model == world.model
    assert rows[0].prompt_tokens == sum(u.prompt_tokens for u in told)
    assert rows[0].completion_tokens == sum(u.completion_tokens for u in told)
    assert rows[0].cost_eur == pytest.approx((rows[0].prompt_tokens * 2 + rows[0].completion_tokens * 6) / 1e6)
    headers = {"Authorization": f"Bearer {instance_admin}"}
    as_json = httpx.get(f"{served}/api/v1/gateway/usage", headers=headers).json()
    assert as_json[0]["completion_tokens"] == rows[0].completion_tokens
    as_csv = httpx.get(f"{served}/api/v1/gateway/usage", params={"format": "csv"}, headers=headers)
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert parsed[0]["key_id"] == world.key_id and int(parsed[0]["requests"]) == 2
    bad = httpx.get(f"{served}/api/v1/gateway/usage", params={"since": "yesterday"}, headers=headers)
    assert bad.status_code == 422


def test_people_see_only_their_own_organisations_usage(world: World) -> None:
    from aperture.access.domain import Caller

    stranger = Caller("nobody", (Role.RESEARCHER,), "abcd0002")  # signed in, in no organisation
    with pytest.raises(Forbidden):
        world.services.gateway.usage(stranger)
    with pytest.raises(InvalidInput):
        world.services.gateway.usage(SYSTEM, since="2026-13-01")


def test_a_crashed_replica_loses_no_answered_request(world: World, settings: Settings) -> None:
    """A child process meters 25 requests and dies without flushing; the next start replays its log once."""
    script = textwrap.dedent(
        f"""
        import os, json
        from datetime import UTC, datetime
        from aperture.bootstrap import build_services
        from aperture.gateway.domain import UsageRecord
        from aperture.settings import Settings
        settings = Settings.model_validate_json({settings.model_dump_json()!r})
        services = build_services(settings)
        meter = services.gateway.meter
        meter.interval_s = 3600  # never flushes by itself
        meter.start()
        for i in range(25):
            meter.record(UsageRecord(str(i), datetime.now(UTC), "{world.key_id}", "acme", "{world.model}", 3, 2))
        meter.flush()  # the first 25 reach the database and the mark moves
        for i in range(25, 40):
            meter.record(UsageRecord(str(i), datetime.now(UTC), "{world.key_id}", "acme", "{world.model}", 3, 2))
        os._exit(1)  # a crash: 15 answered requests are only in the log
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    logs = list((settings.gateway_dir / "usage-log").glob("*.log"))
    assert len(logs) == 1
    assert world.services.gateway.meter.recover() == 15  # only what the mark says is not applied
    rows = world.services.gateway.usage(SYSTEM)
    assert rows[0].requests == 40 and rows[0].prompt_tokens == 120 and rows[0].completion_tokens == 80
    assert not list((settings.gateway_dir / "usage-log").glob("*.log"))
    again = build_services(settings)
    try:
        assert again.gateway.meter.recover() == 0  # replayed once only
    finally:
        again.close()


def test_a_torn_last_line_is_ignored(world: World, settings: Settings) -> None:
    directory = settings.gateway_dir / "usage-log"
    directory.mkdir(parents=True, exist_ok=True)
    record = UsageRecord("a", datetime.now(UTC), world.key_id, "acme", world.model, 4, 4)
    (directory / "dead.log").write_bytes((json.dumps(record.to_json()) + "\n").encode() + b'{"id": "b", "at": "2026-')
    assert world.services.gateway.meter.recover() == 1
    assert world.services.gateway.usage(SYSTEM)[0].requests == 1
