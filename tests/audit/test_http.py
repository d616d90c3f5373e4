"""/api/v1/audit/... through the real router, on an app that maps errors the way web/app.py does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from aperture.access.domain import SYSTEM, Role
from aperture.audit import domain
from aperture.audit.http import build_router
from aperture.bootstrap import Services
from aperture.core.errors import ApertureError
from tests.conftest import Instance


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.services = services  # what the Visitor/SignedIn dependencies read (as create_app sets)
    app.include_router(build_router(services), prefix="/api/v1")

    @app.exception_handler(ApertureError)
    async def _error(_: Request, error: ApertureError) -> JSONResponse:
        return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)

    with TestClient(app) as test_client:
        yield test_client


def add_events(services: Services, n: int) -> None:
    with services.database.transaction() as connection:
        for i in range(n):
            services.audit.append(connection, actor="tester", action="test.event", resource=f"r:{i}", details={"i": i})


def test_events_are_public_and_paginated_newest_first(client: TestClient, services: Services) -> None:
    add_events(services, 5)
    size = services.audit.tree_size()
    page = client.get("/api/v1/audit/events", params={"limit": 3}).json()
    assert [e["leaf_index"] for e in page["events"]] == [size - 1, size - 2, size - 3]
    assert page["tree_size"] == size and page["next_before"] == size - 3
    older = client.get("/api/v1/audit/events", params={"limit": 50, "before": page["next_before"]}).json()
    assert [e["leaf_index"] for e in older["events"]] == list(range(size - 4, -1, -1))
    assert older["next_before"] is None
    one = client.get(f"/api/v1/audit/events/{size - 1}").json()
    assert one["details"]["i"]["withheld"] == "internal"  # a field the classification does not know
    assert "disclosed" not in one
    assert one["leaf_hash"] == domain.leaf_hash(domain.event_leaf_data(one)).hex()
    assert one["leaf_hash"] == services.audit.get_record(size - 1).leaf_hash.hex()
    missing = client.get(f"/api/v1/audit/events/{size}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/audit/events", params={"limit": 0}).status_code == 422


def test_issuing_a_tree_head_needs_an_administrator(client: TestClient, instance: Instance) -> None:
    services = instance.services
    assert client.get("/api/v1/audit/tree-head").status_code == 404
    assert client.post("/api/v1/audit/tree-head").status_code == 401
    researcher = services.access.issue_key(SYSTEM, name="r", principal="rita", roles=(Role.RESEARCHER,))
    forbidden = client.post("/api/v1/audit/tree-head", headers={"Authorization": f"Bearer {researcher.text}"})
    assert forbidden.status_code == 403
    issued = client.post("/api/v1/audit/tree-head", headers={"Authorization": f"Bearer {instance.admin_key}"})
    assert issued.status_code == 200
    head = issued.json()
    assert head["tree_size"] == services.audit.tree_size()
    assert client.get("/api/v1/audit/tree-head").json() == head
    checkpoint = client.get("/api/v1/audit/checkpoint")
    assert checkpoint.headers["content-type"].startswith("text/plain")
    assert checkpoint.text == head["checkpoint"]
    verified = domain.verify_signed_note(checkpoint.text, services.keys.public_key_pem)
    assert verified.root_hash.hex() == head["root_hash"]


def test_proofs_from_the_api_check_offline(client: TestClient, services: Services) -> None:
    add_events(services, 10)
    first = services.audit.issue_tree_head()
    add_events(services, 10)
    second = services.audit.issue_tree_head()
    pem = services.keys.public_key_pem
    inclusion = client.get("/api/v1/audit/proofs/inclusion/3")
    assert inclusion.status_code == 200
    body = inclusion.json()
    assert body["tree_size"] == second.tree_size
    assert domain.check_bundle(body, pem).ok
    # The API's JSON is the bundle the CLI prints, in the public view.
    public = services.audit.inclusion_proof(3, disclose=domain.disclose_none).to_json()
    assert body == json.loads(json.dumps(public))
    at_first = client.get("/api/v1/audit/proofs/inclusion/3", params={"tree_size": first.tree_size}).json()
    assert at_first["tree_head"]["tree_size"] == first.tree_size and domain.check_bundle(at_first, pem).ok
    consistency = client.get(
        "/api/v1/audit/proofs/consistency", params={"first": first.tree_size, "second": second.tree_size}
    ).json()
    assert domain.check_bundle(consistency, pem).ok
    too_far = client.get(f"/api/v1/audit/proofs/inclusion/{second.tree_size}")
    assert too_far.status_code == 404
    assert "aperture audit head" in too_far.json()["error"]["hint"]
