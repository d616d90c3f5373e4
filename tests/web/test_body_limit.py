"""Every body the app reads is bounded (413 in the usual error shape, nothing stored), declared
or streamed; the gateway's /v1 routes keep their own bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from aperture.bootstrap import Services, build_services, init_instance
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app

LIMIT = 64 * 1024


@pytest.fixture
def site(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Services, str, dict[str, str]]]:
    settings = Settings(home=tmp_path / "home", database_url=database_url, hash_workers=2, api_max_body_bytes=LIMIT)
    services = build_services(settings)
    admin = {"Authorization": f"Bearer {init_instance(services).text}"}
    try:
        with running_server(create_app(services)) as url:
            yield services, url, admin
    finally:
        services.close()


def _principals(url: str, admin: dict[str, str]) -> list[str]:
    return [p["name"] for p in httpx.get(f"{url}/api/v1/principals", headers=admin).json()]


def test_a_declared_body_over_the_bound_is_refused_and_changes_nothing(
    site: tuple[Services, str, dict[str, str]],
) -> None:
    _, url, admin = site
    before = _principals(url, admin)
    big = {"name": "walk-person", "title": "x" * (LIMIT + 1)}
    refused = httpx.post(f"{url}/api/v1/principals", json=big, headers=admin)
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "too_large" and str(LIMIT) in error["message"] and error["hint"]
    assert _principals(url, admin) == before


def test_a_public_report_is_bounded_by_what_its_attachments_may_be(tmp_path: Path, database_url: str | None) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        hash_workers=2,
        raid_max_attachments=1,
        raid_max_attachment_bytes=1024,
    )
    services = build_services(settings)
    init_instance(services)
    try:
        with running_server(create_app(services)) as url:
            # 1 attachment of 1 KiB: about 1 MiB of text and base64 at most, far below the app's bound.
            body = {"title": "t", "description": "y" * (2 * 1024 * 1024)}
            refused = httpx.post(f"{url}/api/v1/raid/reports", json=body)
            assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
            assert str(services.raid.context.config.report_body_bytes) in refused.json()["error"]["message"]
            with services.database.read() as connection:
                assert connection.execute(text("SELECT count(*) FROM raid_incidents")).scalar_one() == 0
            small = httpx.post(f"{url}/api/v1/raid/reports", json={"title": "t", "description": "fits"})
            assert small.status_code == 201, small.text
    finally:
        services.close()


def test_a_streamed_body_is_stopped_at_the_bound(site: tuple[Services, str, dict[str, str]]) -> None:
    _, url, admin = site
    before = _principals(url, admin)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"name": "streamed", "title": "'
        for _ in range(LIMIT // 1024 + 8):
            yield b"x" * 1024
        yield b'"}'

    refused = httpx.post(
        f"{url}/api/v1/principals",
        content=chunks(),
        headers={**admin, "Content-Type": "application/json"},
    )
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
    assert _principals(url, admin) == before
    # Under the bound, the same route works.
    made = httpx.post(f"{url}/api/v1/principals", json={"name": "small-person"}, headers=admin)
    assert made.status_code == 201, made.text


def test_pages_answer_a_too_large_form_with_the_error_page(site: tuple[Services, str, dict[str, str]]) -> None:
    _, url, _ = site
    refused = httpx.post(f"{url}/login", data={"name": "a", "password": "b" * (LIMIT + 1)})
    assert refused.status_code == 413
    assert "larger than" in refused.text
