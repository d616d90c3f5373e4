"""The real app on a loopback port: health, metrics, errors, authentication."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role
from aperture.core.db import SCHEMA_HEAD
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance


@pytest.fixture
def base_url(instance: Instance) -> Iterator[str]:
    with running_server(create_app(instance.services)) as url:
        yield url


def test_healthz_reports_the_schema(base_url: str) -> None:
    body = httpx.get(f"{base_url}/healthz").json()
    assert body["status"] == "ok"
    assert body["schema"] == SCHEMA_HEAD


def test_metrics_count_requests_by_route(base_url: str) -> None:
    httpx.get(f"{base_url}/healthz")
    text = httpx.get(f"{base_url}/metrics").text
    assert 'aperture_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_openapi_lists_the_api(base_url: str) -> None:
    spec = httpx.get(f"{base_url}/api/v1/openapi.json").json()
    assert "/api/v1/whoami" in spec["paths"]
    assert "/api/v1/models" in spec["paths"]


def test_whoami_with_the_admin_key(base_url: str, instance: Instance) -> None:
    response = httpx.get(f"{base_url}/api/v1/whoami", headers={"Authorization": f"Bearer {instance.admin_key}"})
    assert response.status_code == 200
    assert response.json()["roles"] == ["administrator"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer apk_00000000_" + "A" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz"],
)
def test_missing_or_unknown_keys_get_401_with_a_json_error(base_url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{base_url}/api/v1/whoami", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unauthenticated"
    assert "Bearer" in error["hint"]


def test_a_key_for_someone_else_takes_two_administrators(base_url: str, instance: Instance) -> None:
    admin = {"Authorization": f"Bearer {instance.admin_key}"}
    body = {"name": "n", "principal": "p", "roles": ["researcher"]}
    alone = httpx.post(f"{base_url}/api/v1/keys", headers=admin, json=body)
    assert alone.status_code == 403 and "key-requests" in alone.json()["error"]["hint"]
    asked = httpx.post(f"{base_url}/api/v1/key-requests", headers=admin, json=body)
    assert asked.status_code == 201 and asked.json()["status"] == "pending"
    approve = f"{base_url}/api/v1/key-requests/{asked.json()['id']}/approve"
    own = httpx.post(approve, headers=admin)
    assert own.status_code == 403 and "second administrator" in own.json()["error"]["message"]
    second = instance.services.access.issue_key(SYSTEM, name="second", principal="admin2", roles=(Role.ADMINISTRATOR,))
    approved = httpx.post(approve, headers={"Authorization": f"Bearer {second.text}"})
    assert approved.status_code == 201 and approved.json()["issued_by"] == ["admin", "system", "admin2"]
    researcher = {"Authorization": f"Bearer {approved.json()['key']}"}
    assert httpx.get(f"{base_url}/api/v1/whoami", headers=researcher).json()["issued_by"] == [
        "admin",
        "system",
        "admin2",
    ]
    refused = httpx.post(f"{base_url}/api/v1/keys", headers=researcher, json={"name": "x", "principal": "y"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    refused = httpx.post(f"{base_url}/api/v1/key-requests", headers=researcher, json={"name": "x", "principal": "y"})
    assert refused.status_code == 403
    for_self = httpx.post(f"{base_url}/api/v1/keys", headers=researcher, json={"name": "mine"})
    assert for_self.status_code == 201 and for_self.json()["principal"] == "p"
    assert for_self.json()["issued_by"] == ["admin", "system", "admin2"]  # the chain is kept


def test_malformed_json_gets_422_and_changes_nothing(base_url: str, instance: Instance) -> None:
    admin = {"Authorization": f"Bearer {instance.admin_key}", "Content-Type": "application/json"}
    before = len(instance.services.access.list_keys(SYSTEM))
    response = httpx.post(f"{base_url}/api/v1/keys", headers=admin, content=b'{"name": "x", ')
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    bad_role = httpx.post(
        f"{base_url}/api/v1/keys", headers=admin, json={"name": "x", "principal": "y", "roles": ["king"]}
    )
    assert bad_role.status_code == 422
    assert "roles" in bad_role.json()["error"]["message"]
    assert len(instance.services.access.list_keys(SYSTEM)) == before


def test_unknown_api_route_is_a_json_404_and_unknown_page_is_html(base_url: str) -> None:
    api = httpx.get(f"{base_url}/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    page = httpx.get(f"{base_url}/no-such-page")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
