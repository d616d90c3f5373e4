"""Rate limits and monthly quotas: token buckets per key and organisation, kept in process or in Redis.

`admit` checks every bucket and quota of a request together and takes from all of them or from
none; `settle` gives back what a request reserved but did not use. With Redis the check is one Lua
script (atomic on the server, with the server's clock), so every gateway replica sees the same
buckets; without it, one process keeps them under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aperture.core.errors import Unavailable
from aperture.gateway.domain import Bucket, Refusal, take_from_bucket


@dataclass(frozen=True, slots=True)
class Quota:
    """A monthly token quota: `key` names the scope and month; `seed` reads what the database
    already metered this month (asked once per process and key)."""

    key: str
    limit: int
    seed: Callable[[], int]
    label: str


class Limiter(Protocol):
    async def admit(
        self, charges: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], reserve: int
    ) -> Refusal | None: ...

    async def settle(self, refunds: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], delta: int) -> None: ...

    async def aclose(self) -> None: ...


def _month_left_s() -> float:
    """Seconds until the next calendar month (UTC): when a spent quota comes back."""
    now = time.gmtime()
    year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
    return max(1.0, time.mktime((year, month, 1, 0, 0, 0, 0, 0, 0)) - time.timezone - time.time())


class LocalLimiter:
    """Buckets and quotas in this process (one gateway replica)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (level, updated)
        self._quotas: dict[str, int] = {}

    async def admit(
        self, charges: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], reserve: int
    ) -> Refusal | None:
        for quota in quotas:
            if quota.key not in self._quotas:
                seeded = await asyncio.to_thread(quota.seed)  # once per key and month: the database
                with self._lock:
                    self._quotas.setdefault(quota.key, seeded)
        with self._lock:
            now = time.monotonic()
            levels: list[float] = []
            refusal: Refusal | None = None
            for bucket, cost in charges:
                level, updated = self._buckets.get(bucket.key, (float(bucket.capacity), now))
                taken, level, wait = take_from_bucket(level, updated, now, bucket.capacity, cost)
                levels.append(level)
                if not taken and (refusal is None or wait > refusal.retry_after_s):
                    refusal = Refusal(bucket.key, wait)
            for quota in quotas:
                if self._quotas[quota.key] + reserve > quota.limit and refusal is None:
                    refusal = Refusal(quota.label, _month_left_s())
            if refusal is not None:
                return refusal
            for (bucket, _), level in zip(charges, levels, strict=True):
                self._buckets[bucket.key] = (level, now)
            for quota in quotas:
                self._quotas[quota.key] += reserve
        return None

    async def settle(self, refunds: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], delta: int) -> None:
        with self._lock:
            now = time.monotonic()
            for bucket, amount in refunds:
                level, updated = self._buckets.get(bucket.key, (float(bucket.capacity), now))
                _, level, _ = take_from_bucket(level, updated, now, bucket.capacity, 0.0)
                self._buckets[bucket.key] = (min(float(bucket.capacity), level + amount), now)
            for quota in quotas:
                if quota.key in self._quotas:
                    self._quotas[quota.key] += delta

    async def aclose(self) -> None:
        return None


# KEYS: the buckets, then the quotas. ARGV: bucket count, then capacity and cost per bucket, then
# reserve, then limit and seed per quota (seed -1: do not seed). Returns {0} when admitted, or
# {1, index, wait in ms} (index 0-based over buckets then quotas; wait -1: never fits).
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local levels = {}
local worst, worst_wait = -1, 0
for i = 1, nb do
  local cap = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(v[1]) or cap
  local at = tonumber(v[2]) or now
  level = math.min(cap, level + math.max(0, now - at) * cap / 60000)
  levels[i] = level
  if cost > level then
    local wait = -1
    if cost <= cap then wait = math.ceil((cost - level) * 60000 / cap) end
    if worst < 0 or wait < 0 or (worst_wait >= 0 and wait > worst_wait) then worst, worst_wait = i - 1, wait end
  end
end
local base = 2 * nb + 2
local reserve = tonumber(ARGV[base])
local nq = #KEYS - nb
for j = 1, nq do
  local limit = tonumber(ARGV[base + 2 * j - 1])
  local seed = tonumber(ARGV[base + 2 * j])
  local key = KEYS[nb + j]
  if seed >= 0 then redis.call('SET', key, seed, 'NX', 'EX', 3024000) end
  local used = tonumber(redis.call('GET', key) or '0')
  if used + reserve > limit and worst < 0 then worst, worst_wait = nb + j - 1, -2 end
end
if worst >= 0 then return {1, worst, worst_wait} end
for i = 1, nb do
  local cost = tonumber(ARGV[2 * i + 1])
  redis.call('HSET', KEYS[i], 'l', tostring(levels[i] - cost), 't', now)
  redis.call('PEXPIRE', KEYS[i], 120000)
end
for j = 1, nq do redis.call('INCRBY', KEYS[nb + j], reserve) end
return {0}
"""

# KEYS: buckets then quotas. ARGV: bucket count, capacity and refund per bucket, quota delta.
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
for i = 1, nb do
  local cap = tonumber(ARGV[2 * i])
  local amount = tonumber(ARGV[2 * i + 1])
  local v = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = tonumber(v[1]) or cap
  local at = tonumber(v[2]) or now
  level = math.min(cap, level + math.max(0, now - at) * cap / 60000 + amount)
  redis.call('HSET', KEYS[i], 'l', tostring(level), 't', now)
  redis.call('PEXPIRE', KEYS[i], 120000)
end
local delta = tonumber(ARGV[2 * nb + 2])
for j = nb + 1, #KEYS do
  if redis.call('EXISTS', KEYS[j]) == 1 then redis.call('INCRBY', KEYS[j], delta) end
end
return 0
"""


class RedisLimiter:
    """Buckets and quotas shared by every replica through Redis (`APERTURE_REDIS_URL`)."""

    def __init__(self, url: str, prefix: str = "aperture:gw:") -> None:
        self.url = url
        self.prefix = prefix
        self._clients: dict[int, Any] = {}
        self._seeded: set[str] = set()

    def _client(self) -> Any:
        import redis.asyncio as redis

        loop = id(asyncio.get_running_loop())  # a client belongs to the event loop it was made in
        found = self._clients.get(loop)
        if found is None:
            client = redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)
            found = self._clients[loop] = (client, client.register_script(ADMIT), client.register_script(SETTLE))
        return found

    async def _call(self, which: int, keys: list[str], args: list[Any]) -> Any:
        import redis.exceptions

        try:
            return await self._client()[which](keys=keys, args=args)
        except redis.exceptions.RedisError as error:
            raise Unavailable(
                f"the rate-limit store (Redis) cannot be used: {error}",
                hint="check APERTURE_REDIS_URL and that Redis is running",
            ) from None

    async def admit(
        self, charges: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], reserve: int
    ) -> Refusal | None:
        keys = [self.prefix + bucket.key for bucket, _ in charges] + [self.prefix + q.key for q in quotas]
        args: list[Any] = [len(charges)]
        for bucket, cost in charges:
            args += [bucket.capacity, cost]
        args.append(reserve)
        for quota in quotas:
            seed = -1
            if quota.key not in self._seeded:
                seed = await asyncio.to_thread(quota.seed)
                self._seeded.add(quota.key)
            args += [quota.limit, seed]
        result = await self._call(1, keys, args)
        if int(result[0]) == 0:
            return None
        index, wait = int(result[1]), int(result[2])
        if index >= len(charges):
            return Refusal(quotas[index - len(charges)].label, _month_left_s())
        return Refusal(charges[index][0].key, math.inf if wait < 0 else wait / 1000.0)

    async def settle(self, refunds: Sequence[tuple[Bucket, float]], quotas: Sequence[Quota], delta: int) -> None:
        if not refunds and not quotas:
            return
        keys = [self.prefix + bucket.key for bucket, _ in refunds] + [self.prefix + q.key for q in quotas]
        args: list[Any] = [len(refunds)]
        for bucket, amount in refunds:
            args += [bucket.capacity, amount]
        args.append(delta)
        await self._call(2, keys, args)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client, _, _ in clients.values():
            with contextlib.suppress(Exception):  # a client of a loop that has ended
                await client.aclose()
