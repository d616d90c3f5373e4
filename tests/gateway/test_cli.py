"""`aperture gateway ...`: keys, backends, grants, limits, prices, policies, usage and alerts from
the command line; bad input exits non-zero naming the problem and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.testing.openai_backend import create_backend
from aperture.testing.server import running_server
from tests.conftest import cli_runner
from tests.gateway.conftest import World

Run = Callable[..., Result]


@pytest.fixture
def run(services: Services) -> Iterator[Run]:
    yield from cli_runner(services.settings)


def test_keys_limits_prices_and_grants(world: World, run: Run) -> None:
    issued = run("gateway", "keys", "issue", "--organisation", "acme", "--name", "cli", "--json")
    assert issued.exit_code == 0, issued.output
    key = json.loads(issued.output)
    assert key["key"].startswith("gwk_") and key["state"] == "active"
    listed = json.loads(run("gateway", "keys", "list", "--json").output)
    assert {k["key_id"] for k in listed} == {world.key_id, key["key_id"]}
    assert all("key" not in k for k in listed)  # never the secret
    assert run("gateway", "keys", "revoke", key["key_id"]).exit_code == 0
    assert world.services.gateway.list_keys(SYSTEM)[-1].revoked_at is not None
    assert (
        run("gateway", "limits", "set", "--organisation", "acme", "--rpm", "60", "--monthly-tokens", "1000").exit_code
        == 0
    )
    limits = json.loads(run("gateway", "limits", "list").output)
    assert limits == [
        {
            "scope_kind": "organisation",
            "scope": "acme",
            "requests_per_minute": 60,
            "tokens_per_minute": None,
            "monthly_tokens": 1000,
            "max_tokens": None,
        }
    ]
    assert run("gateway", "prices", "set", world.model, "--input", "0.2", "--output", "0.6").exit_code == 0
    assert json.loads(run("gateway", "prices", "list").output)[0]["output_eur_per_mtok"] == 0.6
    assert run("gateway", "grant", "acme", world.model).exit_code == 0
    assert ("acme", world.model) in world.services.gateway.grants()
    assert run("gateway", "grant", "acme", world.model, "--revoke").exit_code == 0
    assert world.services.gateway.grants() == []


def test_backends_policies_usage_and_alerts(world: World, run: Run, tmp_path: Path) -> None:
    listed = json.loads(run("gateway", "backends", "list", "--json").output)
    assert listed == [
        {
            "model": world.model,
            "kind": "embedded",
            "url": None,
            "remote_model": None,
            "timeout_s": 60.0,
            "tier": "hosted",
        }
    ]
    with running_server(create_backend()) as backend:
        key_file = tmp_path / "backend.key"
        key_file.write_text("secret-of-the-backend\n")
        added = run(
            "gateway",
            "backends",
            "add",
            world.model,
            "--url",
            f"{backend}/v1",
            "--remote-model",
            "backend-model",
            "--api-key-file",
            str(key_file),
        )
        assert added.exit_code == 0, added.output
        checked = run("gateway", "backends", "check", "--json")
        assert checked.exit_code == 0 and json.loads(checked.output)[0]["healthy"] is True
    assert run("gateway", "backends", "check").exit_code == 9  # the server is gone
    assert world.services.gateway.backends()[0].api_key == "secret-of-the-backend"
    assert "secret" not in run("gateway", "backends", "list", "--json").output
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"input": {"keywords": ["sarin"]}}))
    assert run("gateway", "policy", "set", world.model, str(policy)).exit_code == 0
    shown = json.loads(run("gateway", "policy", "show", world.model).output)
    assert shown["input"]["keywords"] == ["sarin"]
    usage = run("gateway", "usage", "--format", "csv")
    assert usage.exit_code == 0 and usage.output.startswith("day,organisation,key_id,model")
    assert run("gateway", "alerts", "--json").output.strip() == "[]"
    assert run("gateway", "backends", "remove", world.model).exit_code == 0
    assert world.services.gateway.backends() == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("keys", "issue", "--organisation", "nobody", "--name", "x"), 3, "no organisation"),
        (("keys", "issue", "--organisation", "acme", "--name", "x", "--expires", "2020-01-01T00:00:00Z"), 2, "past"),
        (("keys", "revoke", "ffffffff"), 3, "no gateway key"),
        (("backends", "add", "tiny-llama:1.0.0"), 2, "exactly one"),
        (("backends", "add", "tiny-llama:1.0.0", "--url", "ftp://x"), 2, "not an http"),
        (("backends", "add", "nope:1", "--embedded"), 3, "no version"),
        (("limits", "set", "--rpm", "5"), 2, "exactly one"),
        (("limits", "set", "--organisation", "acme", "--rpm", "0"), 2, "at least 1"),
        (("prices", "set", "tiny-llama:1.0.0", "--input", "-1", "--output", "1"), 2, "negative"),
        (("policy", "set", "tiny-llama:1.0.0", "/nonexistent.json"), 2, "not a readable file"),
        (("usage", "--format", "xml"), 2, "unknown format"),
        (("usage", "--since", "last week"), 2, "not a day"),
    ],
)
def test_bad_input_exits_non_zero_and_changes_nothing(
    world: World, run: Run, args: tuple[str, ...], code: int, words: str
) -> None:
    before = world.services.audit.list_events(limit=1)[0].leaf_index
    result = run("gateway", *args)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert world.services.audit.list_events(limit=1)[0].leaf_index == before
