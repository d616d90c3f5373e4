"""docs/audit.md: its offline-verification snippets run, and it names every command and route."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from aperture.audit.cli import app
from aperture.audit.http import build_router
from aperture.bootstrap import Services

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_offline_verification_snippets_run(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.audit.issue_tree_head()
    (tmp_path / "proof.json").write_text(json.dumps(services.audit.inclusion_proof(1).to_json()))
    shutil.copy(services.settings.keys_dir / "instance-ed25519.pub", tmp_path / "instance-ed25519.pub")
    monkeypatch.chdir(tmp_path)
    snippets = [block for block in python_blocks() if "proof.json" in block]
    assert len(snippets) == 2
    for snippet in snippets:
        exec(compile(snippet, str(DOC), "exec"), {"__name__": "docs_snippet"})


def test_the_snippets_fail_on_a_tampered_bundle(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.audit.issue_tree_head()
    bundle = services.audit.inclusion_proof(1).to_json()
    bundle["event"]["actor"] = "mallory"
    (tmp_path / "proof.json").write_text(json.dumps(bundle))
    shutil.copy(services.settings.keys_dir / "instance-ed25519.pub", tmp_path / "instance-ed25519.pub")
    monkeypatch.chdir(tmp_path)
    snippet = next(block for block in python_blocks() if "verify_signed_note" in block)
    with pytest.raises(AssertionError):
        exec(compile(snippet, str(DOC), "exec"), {"__name__": "docs_snippet"})


def test_every_command_and_route_is_documented(services: Services) -> None:
    text = DOC.read_text(encoding="utf-8")
    for command in app.registered_commands:
        assert f"aperture audit {command.name}" in text, command.name
    for route in build_router(services).routes:
        assert isinstance(route, APIRoute)
        for method in route.methods:
            assert f"{method} {route.path}" in text, f"{method} {route.path}"
