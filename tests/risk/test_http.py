"""Risk routes on the real app served by uvicorn: profile, runs, evidence upload, findings, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from aperture.risk.service import RunOptions
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.risk.test_service import _inspect_log


@pytest.fixture
def api(services: Services) -> Iterator[httpx.Client]:
    with running_server(create_app(services)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _bearer(services: Services, *roles: Role) -> dict[str, str]:
    issued = services.access.issue_key(SYSTEM, name="t", principal="tester", roles=roles)
    return {"Authorization": f"Bearer {issued.text}"}


def test_profile_runs_and_run_details(services: Services, tiny_version: ModelVersion, api: httpx.Client) -> None:
    outcome = services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", RunOptions(limit=8))
    base = f"/api/v1/models/{tiny_version.model_name}/versions/{tiny_version.version}"
    researcher = _bearer(services, Role.RESEARCHER)
    assert api.get(f"{base}/risk-profile").status_code == 401
    profile = api.get(f"{base}/risk-profile", headers=researcher).json()
    assert profile["profile_version"] == 1 and profile["evidence"][0]["suite"] == "wmdp-bio"
    runs = api.get(f"{base}/assessment-runs", headers=researcher).json()
    assert [r["id"] for r in runs] == [outcome.run_id] and "item_keys" not in runs[0]["inputs"]
    details = api.get(f"/api/v1/assessment/runs/{outcome.run_id}", headers=researcher).json()
    assert len(details["results"]) == 8
    licensee = _bearer(services, Role.LICENSEE)
    denied = api.get(f"/api/v1/assessment/runs/{outcome.run_id}", headers=licensee)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert {s["name"] for s in api.get("/api/v1/assessment/suites", headers=researcher).json()} >= {
        "wmdp-bio",
        "xstest",
    }
    missing = api.get(f"{base}/risk-profile", params={"profile_version": 9}, headers=researcher)
    assert missing.status_code == 404 and "hint" in missing.json()["error"]


def test_evidence_upload_and_findings(
    services: Services, tiny_version: ModelVersion, api: httpx.Client, tmp_path: Path
) -> None:
    base = f"/api/v1/models/{tiny_version.model_name}/versions/{tiny_version.version}"
    headers = _bearer(services, Role.CHIEF_SCIENTIST)
    log = _inspect_log(tmp_path / "wmdp.eval", tiny_version.manifest_digest)
    created = api.post(f"{base}/evidence", headers=headers, files={"file": ("wmdp.eval", log.read_bytes())})
    assert created.status_code == 201, created.text
    assert created.json()["evidence"][0]["domain"] == "bio"
    broken = api.post(f"{base}/evidence", headers=headers, files={"file": ("x.eval", b"PK\x03\x04garbage")})
    assert broken.status_code == 422 and "truncated" in broken.json()["error"]["message"]
    finding = api.post(
        f"{base}/findings",
        headers=headers,
        data={"title": "Persuasion uplift", "author": "Panel C", "domain": "persuasion", "summary": "s"},
        files={"attachment": ("../../report.txt", b"findings")},
    )
    assert finding.status_code == 201, finding.text
    assert finding.json()["evidence"]["provenance"]["attachment"] == "report.txt"  # path parts dropped
    bad = api.post(f"{base}/findings", headers=headers, data={"title": "t", "author": "a", "domain": "weather"})
    assert bad.status_code == 422
    profile = api.get(f"{base}/risk-profile", headers=headers).json()
    assert profile["profile_version"] == 2 and len(profile["evidence"]) == 2
