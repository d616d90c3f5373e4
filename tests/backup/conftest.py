"""What the backup tests share: an instance with something in it, and the CLI on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.cli import app
from aperture.cli_support import CliState
from tests.registry.builders import write_hf_directory


@pytest.fixture
def filled(services: Services, tmp_path: Path) -> Services:
    """An instance with a registered model version, some log events and a signed head."""
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf", sharded=True), "m", "1")
    services.registry.verify_version("m", "1")
    attachments = services.settings.home / "raid" / "attachments"
    attachments.mkdir(parents=True, exist_ok=True)
    (attachments / "note.txt").write_text("an attachment\n")
    services.audit.issue_tree_head()
    return services


@pytest.fixture
def run(filled: Services) -> Iterator[object]:
    states: list[CliState] = []

    def invoke(*args: str) -> Result:
        state = CliState(settings=filled.settings)
        states.append(state)
        return CliRunner().invoke(app, list(args), obj=state)

    yield invoke
    for state in states:
        if state._services is not None:
            state._services.close()
