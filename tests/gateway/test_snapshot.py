"""No request is admitted on state older than `APERTURE_GATEWAY_CACHE_S`, through the real server.

Changes are made by a second replica on the same database (as `aperture gateway ...` from another
process would), so this process is not told about them; the server then idles past the age, and
a burst of concurrent requests follows. Before, the burst was served from the snapshot of before
the idle period while a background refresh ran (requests served after a grant's revocation, a
burst under the old rate limit)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services, build_services
from aperture.gateway.domain import BackendKind, Limits, ScopeKind
from aperture.release.domain import Tier
from aperture.settings import Settings
from aperture.testing.release import put_tier
from tests.gateway.conftest import World, register

CACHE_S = 0.5
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        hash_workers=2,
        gateway_cache_s=CACHE_S,
        gateway_refresh_wait_s=3.0,
    )


@pytest.fixture
def replica(settings: Settings, world: World) -> Iterator[Services]:
    """Another process's services on the same database."""
    other = build_services(settings)
    try:
        yield other
    finally:
        other.close()


def _burst(served: str, key: str, body: dict[str, object], n: int = 8) -> list[int]:
    def one(_: int) -> int:
        response = httpx.post(
            f"{served}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60
        )
        return response.status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _idle_past_the_age() -> None:
    time.sleep(CACHE_S * 1.5)


def _settle(services: Services) -> None:
    """Let everything the last requests started finish (the meter's write reads the prices, which
    may refresh the snapshot); afterwards nothing reads the snapshot until the next request."""
    services.gateway.meter.flush()
    _idle_past_the_age()


def test_a_grant_revoked_elsewhere_serves_nothing_after_an_idle_period(
    world: World, served: str, replica: Services, tiny_model_dir: Path, tmp_path: Path
) -> None:
    services = world.services
    secured = register(services, tiny_model_dir, tmp_path, "tiny-llama", "2.0.0")
    put_tier(services, "tiny-llama", "2.0.0", Tier.SECURED)
    services.gateway.bind(SYSTEM, secured, BackendKind.EMBEDDED)
    services.gateway.grant(SYSTEM, "acme", secured)
    body = {"model": secured, **CHAT}
    assert _burst(served, world.key, body, 2) == [200, 200]  # the snapshot now holds the grant
    _settle(services)
    replica.gateway.grant(SYSTEM, "acme", secured, revoke=True)
    _idle_past_the_age()
    assert _burst(served, world.key, body) == [404] * 8
    listed = httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {world.key}"}).json()
    assert secured not in {m["id"] for m in listed["data"]}


def test_a_limit_set_elsewhere_holds_for_the_first_burst_after_an_idle_period(
    world: World, served: str, replica: Services
) -> None:
    body = {"model": world.model, **CHAT}
    assert _burst(served, world.key, body, 2) == [200, 200]  # no limits in the snapshot
    _settle(world.services)
    replica.gateway.set_limits(SYSTEM, ScopeKind.KEY, world.key_id, Limits(requests_per_minute=2))
    _idle_past_the_age()
    statuses = _burst(served, world.key, body)
    assert sorted(statuses) == [200, 200] + [429] * 6


def test_a_database_that_cannot_be_read_fails_closed(world: World, served: str) -> None:
    services = world.services
    body = {"model": world.model, **CHAT}
    assert _burst(served, world.key, body, 1) == [200]
    _settle(services)
    with services.database.transaction() as connection:  # the state's tables are not there to be read
        connection.execute(text("ALTER TABLE gateway_grants RENAME TO gateway_grants_away"))
    try:
        _idle_past_the_age()
        refused = httpx.post(
            f"{served}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, json=body, timeout=60
        )
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "gateway_unavailable" and error["type"] == "api_error"
        models = httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {world.key}"})
        assert models.status_code == 503
    finally:
        with services.database.transaction() as connection:
            connection.execute(text("ALTER TABLE gateway_grants_away RENAME TO gateway_grants"))
    assert _burst(served, world.key, body, 1) == [200]  # readable again: served again
