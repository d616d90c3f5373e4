"""Canaries that mean something, and `access explain` that resolves ids only for those cleared,
through the real server (issue 14).

Before: anonymous visits to the public registry or the licensing catalogue raised a high "canary
touched" alert naming nobody, while a cleared member reading every version of the decoy's model
raised none; and `access explain` resolved any opaque id from the public log to its name, level
and programme for any key, without an alert."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aperture.access.domain import SYSTEM, SecurityLevel
from aperture.cli import app as cli_app
from aperture.cli_support import CliState
from aperture.registry.domain import ModelVersion
from tests.registry.builders import write_hf_directory
from tests.security.desk import Desk


@pytest.fixture
def decoy(desk: Desk, tmp_path: Any) -> ModelVersion:
    return desk.services.registry.register(
        SYSTEM,
        write_hf_directory(tmp_path / "decoy"),
        "frontier-13b",
        "0.9",
        level=SecurityLevel.SL4,
        programme="frontier",
        canary=True,
    ).version


def _canary_alerts(desk: Desk) -> list[dict[str, Any]]:
    alerts = desk.api("GET", "/security/alerts", desk.key("sam")).json()
    return [a for a in alerts if a["kind"] == "canary_touched"]


def test_a_listing_is_no_touch_but_reading_the_decoy_is(desk: Desk, decoy: ModelVersion) -> None:
    alice = desk.key("alice")
    with desk.browser() as anonymous:
        for page in ("/", "/models", "/registry", "/licensing", "/audit"):
            assert anonymous.get(page).status_code == 200, page
    for path in ("/registry", "/licensing/catalogue", "/audit/events"):
        assert desk.api("GET", path).status_code == 200, path
    assert "frontier-13b" in str(desk.api("GET", "/models", alice).json())  # listed to those cleared
    assert _canary_alerts(desk) == []
    # Reading its protected metadata is a touch: the model with its versions, one version, its signature.
    for path in (
        "/models/frontier-13b",
        "/models/frontier-13b/versions/0.9",
        "/models/frontier-13b/versions/0.9/signature",
    ):
        before = len(_canary_alerts(desk))
        assert desk.api("GET", path, alice).status_code == 200, path
        touched = _canary_alerts(desk)
        assert len(touched) == before + 1, path
        assert touched[0]["principal"].startswith("alice") and touched[0]["severity"] == "high"


def _explain(desk: Desk, who: dict[str, str], principal: str, resource: str) -> httpx.Response:
    params = {"principal": principal, "action": "view", "resource": resource}
    return desk.api("GET", "/access/explain", who, params=params)


def test_explain_resolves_an_id_only_for_those_cleared_to_see_it(desk: Desk) -> None:
    sealed = f"model_version:{desk.world.sealed.id}"
    unknown = f"model_version:{secrets.token_hex(8)}"
    # Not cleared: outside the programme, below the level, an administrator with no clearance.
    for name, who in (("nora", desk.key("nora")), ("lena", desk.key("lena")), ("admin", desk.admin)):
        hidden, missing = _explain(desk, who, name, sealed), _explain(desk, who, name, unknown)
        assert hidden.status_code == missing.status_code == 404, (name, hidden.text)
        assert hidden.text == missing.text, name
        assert "frontier-7b" not in hidden.text and "SL4" not in hidden.text
    # Cleared: the desk gets the name, level and programme.
    shown = _explain(desk, desk.key("sam"), "quinn", sealed).json()
    assert "frontier-7b:1.0" in " ".join(shown["explanation"]) and "SL4, programme frontier" in shown["explanation"][1]
    own = _explain(desk, desk.key("alice"), "alice", sealed).json()
    assert own["allowed"] is True and "frontier-7b:1.0" in " ".join(own["explanation"])


def test_resolving_a_canarys_id_raises_the_alert_for_anyone(desk: Desk, decoy: ModelVersion) -> None:
    canary = f"model_version:{decoy.id}"
    nora = desk.key("nora")
    refused = _explain(desk, nora, "nora", canary)
    assert refused.status_code == 404 and "frontier-13b" not in refused.text
    (alert,) = _canary_alerts(desk)
    assert alert["principal"].startswith("nora")
    assert _explain(desk, desk.key("sam"), "quinn", canary).status_code == 200
    assert len(_canary_alerts(desk)) == 2


def test_cli_explain_with_a_key_reads_an_uncleared_id_as_unknown(desk: Desk, decoy: ModelVersion) -> None:
    lena = desk.key("lena")["Authorization"].removeprefix("Bearer ")
    states: list[CliState] = []

    def explain(resource: str, *extra: str) -> Any:
        states.append(CliState(desk.services.settings))
        arguments = ["access", "explain", "lena", "view", resource, "--json", *extra]
        return CliRunner().invoke(cli_app, arguments, obj=states[-1])

    try:
        hidden = explain(f"model_version:{desk.world.sealed.id}", "--key", lena)
        missing = explain(f"model_version:{secrets.token_hex(8)}", "--key", lena)
        assert hidden.exit_code == missing.exit_code == 3
        assert hidden.output == missing.output and "frontier-7b" not in hidden.output
        by_name, no_such = explain("frontier-7b:1.0", "--key", lena), explain("frontier-7b:9.9", "--key", lena)
        assert by_name.exit_code == no_such.exit_code == 3
        assert by_name.output.replace("1.0", "V") == no_such.output.replace("9.9", "V")
        assert explain(f"model_version:{decoy.id}", "--key", lena).exit_code == 3
        assert [a["principal"][:4] for a in _canary_alerts(desk)] == ["lena"]
        operator = explain(f"model_version:{desk.world.sealed.id}")  # the local operator sees every asset
        assert operator.exit_code == 6
        assert "frontier-7b:1.0" in " ".join(json.loads(operator.stdout)["explanation"])
    finally:
        for state in states:
            if state._services is not None:
                state._services.close()
