"""The gateway's management decides through the access service: over the real server a
`view`-scoped administrator key does nothing else; through the use cases (the CLI's and the
demo's path), configuring an upper-tier version needs clearance for it (one above the caller's
reads exactly like one that does not exist), and the log names it by its opaque id and says the
event concerns the upper tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.access.domain import SYSTEM, Role, SecurityLevel, Vetting
from aperture.bootstrap import Services
from aperture.core.errors import NotFound
from aperture.gateway.domain import BackendKind
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.gateway.conftest import add_organisation
from tests.registry.builders import write_hf_directory


@pytest.fixture
def site(services: Services, tmp_path: Path) -> Iterator[str]:
    add_organisation(services, "acme")
    access = services.access
    access.add_programme(SYSTEM, "frontier", "Frontier models")
    for custodian in ("kim", "lou"):
        access.add_principal(SYSTEM, custodian, organisation="acme", roles=(Role.KEY_CUSTODIAN,))
    services.security.init_seal(SYSTEM, ["kim", "lou"], 2)
    source = write_hf_directory(tmp_path / "secret")
    services.registry.register(SYSTEM, source, "secret", "1.0", level=SecurityLevel.SL3, programme="frontier")
    access.add_principal(SYSTEM, "ops", organisation="acme", roles=(Role.ADMINISTRATOR,))  # SL1, no programme
    access.add_principal(
        SYSTEM,
        "chief",
        organisation="acme",
        roles=(Role.ADMINISTRATOR,),
        clearance=SecurityLevel.SL3,
        vetting=Vetting.SECURITY_CHECK,
        programmes=("frontier",),
    )
    with running_server(create_app(services)) as url:
        yield url


def key(services: Services, name: str, scopes: list[str] | None = None) -> dict[str, str]:
    roles = services.access.get_principal(name).roles
    issued = services.access.issue_key(SYSTEM, name=f"{name} key", principal=name, roles=roles, scopes=scopes)
    return {"Authorization": f"Bearer {issued.text}"}


def test_a_view_scoped_administrator_key_manages_nothing(site: str, services: Services) -> None:
    api = f"{site}/api/v1/gateway"
    viewer = key(services, "ops", ["view"])
    for method, path, body in (
        ("GET", "/keys", None),
        ("POST", "/keys", {"organisation": "acme", "name": "x"}),
        ("GET", "/backends", None),
        ("GET", "/alerts", None),
        ("GET", "/usage", None),
    ):
        answer = httpx.request(method, f"{api}{path}", json=body, headers=viewer)
        assert answer.status_code == 403, (path, answer.text)
        assert "scopes" in answer.json()["error"]["message"]
    assert services.gateway.list_keys(SYSTEM) == []
    assert httpx.get(f"{api}/keys", headers=key(services, "ops")).status_code == 200


def test_configuring_an_upper_tier_version_needs_clearance_and_is_logged_by_opaque_id(
    site: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[str, str, bool]] = []
    append = services.audit.append

    def appended(connection: Any, **event: Any) -> Any:
        logged.append((event["action"], event["resource"], event.get("upper_tier", False)))
        return append(connection, **event)

    monkeypatch.setattr(services.audit, "append", appended)
    uncleared = services.access.authenticate(key(services, "ops")["Authorization"].split()[1])
    cleared = services.access.authenticate(key(services, "chief")["Authorization"].split()[1])
    for reference in ("secret:1.0", "nothing:1.0"):
        with pytest.raises(NotFound) as refused:
            services.gateway.set_price(uncleared, reference, 1.0, 2.0)
        assert refused.value.message == f"no version {reference}"
    services.gateway.bind(cleared, "secret:1.0", BackendKind.REMOTE, url="http://127.0.0.1:9/v1")
    services.gateway.set_price(cleared, "secret:1.0", 1.0, 2.0)
    services.gateway.grant(cleared, "acme", "secret:1.0")
    about = [entry for entry in logged if entry[0].startswith("gateway.")]
    assert [action for action, _, _ in about] == ["gateway.backend.bound", "gateway.price.set", "gateway.grant.given"]
    assert all(upper and "secret" not in resource for _, resource, upper in about), about
