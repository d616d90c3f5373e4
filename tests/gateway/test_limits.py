"""Rate limits, quotas and the most tokens per request: in process, and shared through the real Redis."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM
from aperture.gateway.domain import Bucket, Limits, ScopeKind, take_from_bucket
from aperture.gateway.limits import LocalLimiter, Quota, RedisLimiter
from aperture.settings import Settings
from tests.gateway.conftest import World

REDIS_URL = "redis://127.0.0.1:6379/0"
CHAT = {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0}


def test_the_token_bucket_refills_continuously_and_names_the_wait() -> None:
    assert take_from_bucket(10, 0, 0, 10, 4) == (True, 6, 0)
    taken, level, wait = take_from_bucket(1, 0, 0, 60, 3)  # 1 token a second
    assert not taken and level == 1 and wait == pytest.approx(2.0)
    assert take_from_bucket(0, 0, 30, 60, 30)[0]  # half a minute refills half the bucket
    assert take_from_bucket(60, 0, 0, 60, 61)[2] == math.inf  # never fits


def _post(base: str, key: str, **body: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60)


def test_requests_per_minute_answer_429_with_retry_after(world: World, served: str) -> None:
    world.services.gateway.set_limits(SYSTEM, ScopeKind.KEY, world.key_id, Limits(requests_per_minute=2))
    for _ in range(2):
        assert _post(served, world.key, model=world.model, max_tokens=2, **CHAT).status_code == 200
    refused = _post(served, world.key, model=world.model, max_tokens=2, **CHAT)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    api = openai.OpenAI(api_key=world.key, base_url=f"{served}/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model=world.model, max_tokens=2, **CHAT)  # type: ignore[call-overload]


def test_tokens_per_minute_quotas_and_max_tokens(world: World, served: str) -> None:
    gateway = world.services.gateway
    gateway.set_limits(SYSTEM, ScopeKind.ORGANISATION, "acme", Limits(tokens_per_minute=120, max_tokens=50))
    too_many = _post(served, world.key, model=world.model, max_tokens=51, **CHAT)
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "max_tokens_exceeded"
    assert _post(served, world.key, model=world.model, max_tokens=50, **CHAT).status_code == 200
    # The first request's unused reservation came back; a second large one does not fit the minute.
    statuses = [_post(served, world.key, model=world.model, max_tokens=50, **CHAT).status_code for _ in range(3)]
    assert 429 in statuses
    gateway.set_limits(SYSTEM, ScopeKind.ORGANISATION, "acme", Limits(tokens_per_minute=20))
    never = _post(served, world.key, model=world.model, max_tokens=50, **CHAT)
    assert never.status_code == 429 and "more than" in never.json()["error"]["message"]
    gateway.set_limits(SYSTEM, ScopeKind.ORGANISATION, "acme", Limits())
    fresh = gateway.issue_key(SYSTEM, organisation="acme", name="quota")  # a key with nothing used this month
    gateway.set_limits(SYSTEM, ScopeKind.KEY, fresh.key.key_id, Limits(monthly_tokens=60))
    assert _post(served, fresh.text, model=world.model, max_tokens=10, **CHAT).status_code == 200
    spent = _post(served, fresh.text, model=world.model, max_tokens=40, **CHAT)
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "insufficient_quota"
    assert int(spent.headers["Retry-After"]) > 60


def test_limits_refuse_nonsense(world: World) -> None:
    from aperture.core.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput):
        world.services.gateway.set_limits(SYSTEM, ScopeKind.KEY, world.key_id, Limits(requests_per_minute=0))
    with pytest.raises(NotFound):
        world.services.gateway.set_limits(SYSTEM, ScopeKind.KEY, "ffffffff", Limits(requests_per_minute=1))
    with pytest.raises(NotFound):
        world.services.gateway.set_limits(SYSTEM, ScopeKind.ORGANISATION, "nobody", Limits(requests_per_minute=1))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"aperture-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def test_two_replicas_share_buckets_and_quotas_through_redis(redis_prefix: str) -> None:
    async def scenario() -> None:
        first, second = RedisLimiter(REDIS_URL, redis_prefix), RedisLimiter(REDIS_URL, redis_prefix)
        local = LocalLimiter()
        rpm = Bucket("rpm:key:k1", 3)
        quota = Quota("quota:key:k1:2026-11", 100, lambda: 40, "the monthly token quota of key k1")
        try:
            assert await first.admit([(rpm, 1)], [quota], 20) is None
            assert await second.admit([(rpm, 1)], [quota], 20) is None  # the quota started at 40 from the seed
            refused = await first.admit([(rpm, 1)], [quota], 30)
            assert refused is not None and refused.reason.startswith("the monthly")  # 80 + 30 > 100
            await second.settle([], [quota], -15)  # 15 reserved tokens were not used
            assert await first.admit([(rpm, 1)], [quota], 30) is None  # 65 + 30 <= 100
            refused = await second.admit([(rpm, 1)], [], 0)  # three requests this minute across both
            assert refused is not None and refused.reason == "rpm:key:k1" and 0 < refused.retry_after_s <= 20
            assert await local.admit([(rpm, 1)], [], 0) is None  # in process: its own bucket
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(scenario())


@pytest.fixture
def settings(tmp_path, database_url, redis_prefix: str) -> Settings:  # type: ignore[no-untyped-def]
    """This module's instances share limits through the local Redis."""
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        hash_workers=2,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
    )


def test_the_app_limits_through_redis(world: World, served: str, redis_prefix: str) -> None:
    import redis

    world.services.gateway.set_limits(SYSTEM, ScopeKind.KEY, world.key_id, Limits(requests_per_minute=1))
    assert _post(served, world.key, model=world.model, max_tokens=2, **CHAT).status_code == 200
    assert _post(served, world.key, model=world.model, max_tokens=2, **CHAT).status_code == 429
    client = redis.Redis.from_url(REDIS_URL)
    assert client.exists(f"{redis_prefix}gw:rpm:key:{world.key_id}")
    client.close()
