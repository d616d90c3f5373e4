"""/api/v1/models through the router the web app mounts (a minimal app maps errors the same way)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from aperture.access.domain import SYSTEM, Role
from aperture.bootstrap import Services
from aperture.core.errors import ApertureError
from aperture.registry.http import build_router
from aperture.vault.domain import verify_bundle
from tests.registry.builders import write_hf_directory


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.services = services  # what the Visitor/SignedIn dependencies read (as create_app sets)

    @app.exception_handler(ApertureError)
    async def _mapped(request: Request, error: ApertureError) -> JSONResponse:
        return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)

    app.include_router(build_router(services), prefix="/api/v1")
    with TestClient(app) as test_client:
        yield test_client


def bearer(services: Services, *roles: Role) -> dict[str, str]:
    issued = services.access.issue_key(SYSTEM, name="t", principal="tester", roles=roles)
    return {"Authorization": f"Bearer {issued.text}"}


def test_read_routes(services: Services, client: TestClient, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "tiny", "1.0", licence="MIT")
    headers = bearer(services, Role.RESEARCHER)
    listed = client.get("/api/v1/models", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == [
        {
            "name": "tiny",
            "created_at": listed.json()[0]["created_at"],
            "created_by": "system",
            "versions": ["1.0"],
            "latest_version": "1.0",
        }
    ]
    model = client.get("/api/v1/models/tiny", headers=headers).json()
    assert model["versions"][0]["reference"] == "tiny:1.0"
    version = client.get("/api/v1/models/tiny/versions/1.0", headers=headers).json()
    assert version["parameter_count"] == 100 and version["licence"] == "MIT"
    assert {f["path"] for f in version["files"]} >= {"config.json", "model.safetensors"}
    signature = client.get("/api/v1/models/tiny/versions/1.0/signature", headers=headers)
    assert signature.status_code == 200
    signed = verify_bundle(signature.text, services.vault.artifact_public_key)
    assert signed.root_digest == version["manifest_digest"]
    missing = client.get("/api/v1/models/tiny/versions/9", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_routes_need_a_key_and_verify_needs_a_role(services: Services, client: TestClient, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf"), "tiny", "1.0")
    assert client.get("/api/v1/models").status_code == 401
    assert client.get("/api/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    researcher = bearer(services, Role.RESEARCHER)
    assert client.post("/api/v1/models/tiny/versions/1.0/verify", headers=researcher).status_code == 403
    officer = bearer(services, Role.SECURITY_OFFICER)
    verified = client.post("/api/v1/models/tiny/versions/1.0/verify", headers=officer)
    assert verified.status_code == 200 and verified.json()["ok"] is True
    version = services.registry.get_version("tiny", "1.0")
    blob = services.vault.artifacts.blob_path(version.files[0].sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    failed = client.post("/api/v1/models/tiny/versions/1.0/verify", headers=officer)
    assert failed.status_code == 500
    body = failed.json()["error"]
    assert body["code"] == "integrity_failure" and version.files[0].path in body["message"]
    assert json.dumps(body["details"])


def test_verify_reports_the_signed_facts_and_names_an_edited_one(
    services: Services, client: TestClient, tmp_path: Path
) -> None:
    from sqlalchemy import text

    version = services.registry.register(
        SYSTEM, write_hf_directory(tmp_path / "hf"), "tiny", "1.0", licence="MIT"
    ).version
    officer = bearer(services, Role.SECURITY_OFFICER)
    verified = client.post("/api/v1/models/tiny/versions/1.0/verify", headers=officer).json()
    assert verified["facts"] == "signed" and verified["facts_digest"] == version.facts_digest
    assert verified["facts_event"] == version.facts_event and verified["notes"] == []
    shown = client.get("/api/v1/models/tiny/versions/1.0", headers=officer).json()
    assert shown["facts_digest"] == version.facts_digest
    with services.database.transaction() as connection:
        connection.execute(text("UPDATE registry_versions SET licence = 'Apache-2.0'"))
    failed = client.post("/api/v1/models/tiny/versions/1.0/verify", headers=officer)
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "integrity_failure" and "licence" in error["message"]
    assert error["details"]["fields"] == ["licence"]
